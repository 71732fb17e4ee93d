"""autograder.wire: plain data crosses exactly; anything else crosses as a name or not at all."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from autograder import wire


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        2**80,
        -1.5,
        "ünïcode",
        [1, [2.0, "x"]],
        (1, (2, 3)),
        {"a": 1, 2: "b", (1, 2): [3]},
        {1, 2, 3},
        frozenset({"a"}),
        [],
        {},
    ],
)
def test_plain_values_round_trip_with_their_exact_types(value):
    back = wire.loads(wire.dumps(value))
    assert back == value and type(back) is type(value)


def test_special_floats_numpy_scalars_arrays_and_tensors_round_trip():
    back = wire.loads(wire.dumps([math.nan, math.inf, -math.inf]))
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf]
    for scalar in (np.int64(3), np.float32(0.5), np.bool_(True), np.str_("s")):
        got = wire.loads(wire.dumps(scalar))
        assert type(got) is type(scalar) and got == scalar
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = wire.loads(wire.dumps(array))
    assert type(got) is np.ndarray and got.dtype == np.float32 and (got == array).all()
    tensor = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    got = wire.loads(wire.dumps(tensor))
    assert type(got) is torch.Tensor and got.dtype == torch.float64 and got.requires_grad
    assert torch.equal(got.detach(), tensor.detach())
    param = wire.loads(wire.dumps(torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16), requires_grad=False)))
    assert type(param) is torch.nn.Parameter and param.dtype == torch.bfloat16 and not param.requires_grad


class LyingFloat(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


class LyingList(list):
    pass


def test_subclasses_and_objects_cross_only_as_their_type_name():
    for value, name in [(LyingFloat(1.0), "LyingFloat"), (LyingList([1]), "LyingList"), (object(), "object")]:
        got = wire.loads(wire.dumps(value))
        assert type(got) is wire.Opaque and name in got.type_name
        assert got != 1.0
    assert type(wire.loads(wire.dumps(np.array([object()], dtype=object)))) is wire.Opaque


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"$": "numpy.core.multiarray._reconstruct"}),  # no tag is ever looked up by name
        json.dumps({"$": "np", "dtype": "object_", "v": 1}),
        json.dumps({"$": "np", "dtype": "int64", "v": [1]}),
        json.dumps({"$": "ndarray", "dtype": "<f4", "shape": [1], "raw": "not base64!"}),
        json.dumps({"$": "ndarray", "dtype": "<f4", "shape": [2], "raw": "AAAAAA=="}),  # 4 bytes, not 8
        json.dumps({"$": "ndarray", "dtype": "<f4", "shape": [-1, -1], "raw": "AAAAAA=="}),  # 1 element?
        json.dumps({"$": "ndarray", "dtype": "<f4", "shape": "1", "raw": "AAAAAA=="}),
        json.dumps({"$": "ndarray", "dtype": "<f4", "shape": [1] * 33, "raw": "AAAAAA=="}),
        json.dumps({"$": "ndarray", "dtype": "<V4", "shape": [1], "raw": "AAAAAA=="}),
        json.dumps({"$": "ndarray", "dtype": "<U0", "shape": [1], "raw": ""}),
        json.dumps({"$": "ndarray", "dtype": "numpy.float32", "shape": [1], "raw": "AAAAAA=="}),
        json.dumps({"$": "tensor", "dtype": "float32", "shape": [1], "raw": "AAAAAA=="}),  # no array dtype
        json.dumps({"$": "tensor", "dtype": "<U1", "shape": [1], "raw": "AAAAAA=="}),
        json.dumps({"$": "set", "v": [[1]]}),
        json.dumps({"$": "dict", "v": [[1, 2, 3]]}),
        json.dumps({"plain": "dicts are tagged"}),
        "[" * 5000 + "]" * 5000,
        "{not json",
    ],
)
def test_malformed_or_unknown_messages_are_refused(text):
    with pytest.raises(wire.WireError):
        wire.loads(text)


def test_an_object_array_is_refused_whatever_its_bytes():
    import base64
    import pickle

    raw = base64.b64encode(pickle.dumps([{"a": 1}])).decode()
    for dtype in ("|O", "<O", "O", "object"):
        with pytest.raises(wire.WireError, match="not numbers or strings"):
            wire.loads(json.dumps({"$": "ndarray", "dtype": dtype, "shape": [1], "raw": raw}))


def test_arrays_cross_as_raw_bytes_in_every_shape_order_and_dtype():
    cases = [
        np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not contiguous
        np.arange(6, dtype=">i4").reshape(2, 3),  # big-endian: arrives in native order
        np.zeros((0, 5), dtype=np.float64),
        np.array(3.5),
        np.array(["a", "bcd", ""]),
        np.array([[True, False]]),
        np.arange(5, dtype=np.uint16),
    ]
    for array in cases:
        got = wire.loads(wire.dumps(array))
        assert type(got) is np.ndarray and got.shape == array.shape and got.dtype.isnative
        assert got.dtype == array.dtype.newbyteorder("=") and (got == array).all()
        assert got.flags.writeable and got.flags.c_contiguous
    sent = json.loads(wire.dumps(np.ones((2, 3), dtype=np.float32)))
    assert set(sent) == {"$", "dtype", "shape", "raw"} and sent["dtype"] == np.dtype(np.float32).str


def test_size_is_capped(monkeypatch):
    monkeypatch.setattr(wire, "MAX_BYTES", 100)
    with pytest.raises(wire.WireError):
        wire.dumps("x" * 200)
    with pytest.raises(wire.WireError):
        wire.loads(json.dumps("x" * 200))


def test_a_handle_crosses_only_where_the_reader_expects_one():
    class Kept:  # something the kernel keeps instead of sending
        pass

    kept = Kept()
    text = wire.dumps([1, kept], ref=lambda value: {"$": "ref", "id": 3, "type": "Kept"})
    assert json.loads(text)[1] == {"$": "ref", "id": 3, "type": "Kept"}
    assert wire.loads(text, ref=lambda tag: ("handle", tag["id"])) == [1, ("handle", 3)]
    with pytest.raises(wire.WireError, match="unknown tag"):
        wire.loads(text)  # a reader that expects no handles refuses one
    with pytest.raises(wire.WireError):
        wire.loads('{"$": "ref", "id": "3"}', ref=lambda tag: tag)  # a handle is a number, nothing else


def test_a_tensor_dtype_is_read_from_a_fixed_table_never_looked_up(monkeypatch):
    """The kernel names a tensor's dtype; only names in the table are resolved, so a name such as
    a torch submodule's never reaches ``getattr(torch, ...)`` (which would import it)."""
    looked_up = []
    monkeypatch.setattr(torch, "__getattr__", lambda name: looked_up.append(name), raising=False)
    sent = json.loads(wire.dumps(torch.ones(2)))
    for name in ("no_such_dtype", "_dynamo", "nn"):
        tensor = wire.loads(json.dumps({**sent, "torch_dtype": name, "requires_grad": False}))
        assert type(tensor) is torch.Tensor and tensor.dtype == torch.float32
    assert looked_up == []
    back = wire.loads(wire.dumps(torch.ones(2, dtype=torch.bfloat16)))
    assert back.dtype == torch.bfloat16


def test_what_would_spend_the_graders_memory_or_cpu_is_refused_at_once():
    """A kernel's answer may not make the judge build millions of containers, nor a set or dict whose
    members all hash alike (building it is quadratic): each is refused in well under a second."""
    import time

    many_lists = "[" + ",".join(["[]"] * (wire.MAX_CONTAINERS + 1)) + "]"
    colliding = {"$": "set", "v": [n * (2**61 - 1) for n in range(150_000)]}  # all hash to 0
    big_dict = {"$": "dict", "v": [[n, n] for n in range(wire.MAX_HASHED + 1)]}
    for text in (many_lists, json.dumps(colliding), json.dumps(big_dict)):
        start = time.perf_counter()
        with pytest.raises(wire.WireError):
            wire.loads(text)
        assert time.perf_counter() - start < 1.0
    with pytest.raises(wire.WireError):  # the envelope the call server frames, read the same way
        wire.parse_json(many_lists.encode())
    # At the caps, plain data still crosses.
    assert wire.loads(json.dumps({"$": "set", "v": list(range(wire.MAX_HASHED))})) == set(range(wire.MAX_HASHED))
