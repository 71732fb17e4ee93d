"""The judge's stand-ins for a student's objects (autograder.judge.remote) against the call server
(autograder.kernel.server), in one process: the kernel's side is a namespace dict, so every rule of
the protocol is checked in milliseconds without starting a kernel."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from autograder import objects
from autograder.judge.remote import Channel, Remote
from autograder.kernel import server as kernel_server


def _channel(namespace: dict) -> Channel:
    """A channel whose 'kernel' answers from ``namespace`` in this process."""

    def execute(request: str, hook) -> None:
        def call_back(message: dict) -> dict:  # a lent function's call, and the judge's reply
            return json.loads(hook(json.loads(json.dumps(message))))

        hook(kernel_server.answer(request, namespace, call_back))

    return Channel(execute)


class Layer(nn.Module):  # the student's class, as it lives in their kernel
    def __init__(self, base: nn.Linear, r: int = 2):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.ones(r, base.in_features))

    def forward(self, x):
        return self.base(x) + x @ self.lora_A.T.sum(1, keepdim=True)


def _zeroes_its_input(t):
    t.zero_()
    return "done"


@pytest.fixture
def kernel():
    namespace = {"Layer": Layer, "zeroes": _zeroes_its_input, "helper_user": lambda: secret_helper()}  # noqa: F821
    channel = _channel(namespace)
    yield namespace, channel
    channel.release()
    objects._channel = None


def test_objects_stay_in_the_kernel_and_answer_with_plain_data(kernel):
    _, channel = kernel
    layer = Remote(channel, {"name": "Layer"})(nn.Linear(3, 2))
    assert type(layer) is Remote and layer._type.endswith("Layer")
    weight = layer.base.weight  # a Parameter crosses as a fresh copy
    assert type(weight) is nn.Parameter and tuple(weight.shape) == (2, 3)
    assert layer.base is layer.base  # one stand-in per kernel object: `is` means the same object
    names = [name for name, _ in layer.named_parameters()]
    assert names == ["lora_A", "base.weight", "base.bias"]
    out = layer(torch.ones(4, 3))
    assert type(out) is torch.Tensor and tuple(out.shape) == (4, 2)
    copy = __import__("copy").deepcopy(layer)
    assert type(copy) is Remote and copy is not layer


def test_the_kernel_only_ever_holds_copies_of_the_judges_values(kernel):
    _, channel = kernel
    mine = torch.ones(5)
    assert Remote(channel, {"name": "zeroes"})(mine) == "done"
    assert torch.equal(mine, torch.ones(5)), "the kernel changed the judge's own tensor"
    result, (after,) = objects.called_with(Remote(channel, {"name": "zeroes"}), mine)
    assert result == "done" and torch.equal(after, torch.zeros(5))  # seen where it ran


def test_helpers_write_parameters_and_take_one_backward_pass_in_the_kernel(kernel):
    _, channel = kernel
    layer = Remote(channel, {"name": "Layer"})(nn.Linear(3, 2))
    objects.set_tensor(layer, "lora_A", torch.full((2, 3), 0.5))
    assert torch.equal(layer.lora_A.detach(), torch.full((2, 3), 0.5))
    layer.base.weight.requires_grad_(False)  # a copy: the kernel's layer still trains its base
    grads = objects.grads_after(layer, torch.ones(4, 3))
    assert set(grads) == {"lora_A", "base.weight", "base.bias"} and all(g is not None for g in grads.values())
    assert objects.module_types(layer)["base"] == "torch.nn.modules.linear.Linear"
    assert objects.is_exactly(layer.base, nn.Linear) and not objects.is_exactly(layer, nn.Linear)
    assert objects.is_exactly(layer, Remote(channel, {"name": "Layer"}))
    assert objects.trainable_numel(layer) == 6 + 6 + 2


def test_stand_ins_replace_a_students_helper_only_while_their_function_runs(kernel):
    namespace, channel = kernel
    namespace["secret_helper"] = lambda: "the student's"
    wrapped = objects.with_globals(Remote(channel, {"name": "helper_user"}), secret_helper=lambda: "the grader's")
    # The lambda above looks the helper up in this module's globals, which stand for the kernel's here.
    globals()["secret_helper"] = namespace["secret_helper"]
    try:
        assert wrapped() == "the grader's"
        assert globals()["secret_helper"]() == "the student's"  # restored after the call
    finally:
        del globals()["secret_helper"]


def test_a_stand_in_is_lent_for_one_test_and_its_code_never_reaches_the_kernel(kernel):
    namespace, channel = kernel
    # The student's function, defined in the kernel's namespace: it keeps whatever it finds under
    # the helper's name, then uses it.
    exec(
        "kept = []\ndef uses_helper(dtype):\n    kept.append(bytes_per_param)\n    return 2 * bytes_per_param(dtype)",
        namespace,
    )
    kept = namespace["kept"]
    table = {"fp16": 2.0}

    def known_good(dtype):
        if dtype not in table:
            raise ValueError(f"no such format: {dtype}")
        return table[dtype]

    wrapped = objects.with_globals(Remote(channel, {"name": "uses_helper"}), bytes_per_param=known_good)
    assert wrapped("fp16") == 4.0
    with pytest.raises(ValueError, match="no such format"):  # the grader's exception, by type
        wrapped("int3")
    stand_in = kept[0]
    assert not hasattr(stand_in, "__code__") and not hasattr(stand_in, "__globals__"), "the grader's code was sent"
    assert "known_good" not in repr(vars(stand_in)) and "fp16" not in repr(vars(stand_in))
    channel.release()  # the test ends
    with pytest.raises(RuntimeError, match="lent for one test only"):
        stand_in("fp16")
    forged = {"token": "t", "callback": stand_in.number, "value": json.dumps([["fp16"], {}])}
    assert channel._call_back(forged)["raised"] == "RuntimeError", "the judge still answers for a finished test"


def test_a_lent_function_cannot_call_into_the_kernel(kernel):
    namespace, channel = kernel
    namespace["Layer"], namespace["nn"] = Layer, nn
    exec("def passes_a_layer():\n    return helper(Layer(nn.Linear(2, 2)))", namespace)
    wrapped = objects.with_globals(Remote(channel, {"name": "passes_a_layer"}), helper=lambda layer: layer.base)
    with pytest.raises(RuntimeError, match="cannot itself call into the student's kernel"):
        wrapped()


def test_what_the_server_refuses(kernel):
    _, channel = kernel
    with pytest.raises(ValueError, match="no helper"):
        channel.request("helper", {}, "a helper", channel.pickle(("__import__", "os"), {}))
    with pytest.raises(KeyError):
        channel.request("getattr", {"handle": 12345}, "a forged handle", attr="x")
    with pytest.raises(ValueError, match="unknown operation"):
        channel.request("exec", {"name": "Layer"}, "an unknown operation")
    with pytest.raises(KeyError, match="nothing to build"):
        objects.build("the gradebook")
    with pytest.raises(NameError):
        Remote(channel, {"name": "missing"})()


def test_a_tensor_subclass_crosses_as_a_handle_and_reduces_to_its_values(kernel):
    namespace, channel = kernel

    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    namespace["liar"] = lambda: torch.zeros(3).as_subclass(Liar)
    value = Remote(channel, {"name": "liar"})()
    assert type(value) is Remote  # never a Liar in the judge
    assert torch.equal(value._autograder_data(), torch.zeros(3))
    from autograder.compare import as_array

    assert as_array(value).tolist() == [0.0, 0.0, 0.0]


def test_tensors_reach_the_kernel_as_wire_data_whole_and_tied(kernel):
    namespace, channel = kernel
    received = {}

    def keep(*args, **kwargs):
        received["args"], received["kwargs"] = args, kwargs
        return None

    namespace["keep"] = keep
    shared, other = nn.Linear(3, 3), nn.Linear(3, 3)
    other.weight = shared.weight  # a tied weight: one parameter in two layers
    model = nn.Sequential(shared, nn.ReLU(), other)
    model.register_buffer("steps", torch.tensor([7]))
    grad_leaf = torch.randn(2, 2, requires_grad=True)
    frozen = nn.Parameter(torch.randn(4), requires_grad=False)
    half = torch.randn(3).to(torch.bfloat16)
    view = torch.arange(10.0)[2:8:2]  # not contiguous, offset into its storage
    payload = channel.pickle((model, grad_leaf, frozen, half, view), {"k": torch.zeros(0, 3, dtype=torch.int64)})
    assert b"_rebuild" not in __import__("base64").b64decode(payload)  # never torch's own pickling
    Remote(channel, {"name": "keep"})(model, grad_leaf, frozen, half, view, k=torch.zeros(0, 3, dtype=torch.int64))
    (m, g, f, h, v), kwargs = received["args"], received["kwargs"]
    assert m[0] is not m[2] and m[0].weight is m[2].weight and type(m[0].weight) is nn.Parameter
    assert torch.equal(m[2].bias, other.bias)
    assert torch.equal(m[0].weight, shared.weight) and m[0].weight.requires_grad and m.steps.tolist() == [7]
    assert type(g) is torch.Tensor and g.requires_grad and g.is_leaf and torch.equal(g, grad_leaf)
    assert type(f) is nn.Parameter and not f.requires_grad and torch.equal(f, frozen)
    assert h.dtype == torch.bfloat16 and torch.equal(h, half)
    assert v.tolist() == [2.0, 4.0, 6.0] and v.is_contiguous()
    assert kwargs["k"].dtype == torch.int64 and tuple(kwargs["k"].shape) == (0, 3)
    v.add_(1)
    assert view.tolist() == [2.0, 4.0, 6.0]  # the kernel holds copies
    m[0].weight.data.zero_()
    assert shared.weight.abs().sum() > 0
    # What wire data cannot carry whole still travels, by torch's own pickling.
    nonleaf = torch.randn(2, requires_grad=True) * 2
    odd = torch.ones(2, dtype=torch.complex64)
    tagged = torch.ones(2)
    tagged.note = "kept"
    Remote(channel, {"name": "keep"})(nonleaf.detach(), odd, tagged)
    got = received["args"]
    assert got[1].dtype == torch.complex64 and got[2].note == "kept"
