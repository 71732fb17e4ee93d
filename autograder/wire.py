"""Plain data across the boundary between the student's kernel and the judge.

One format, owned here, for the calls the judge sends and the answers the kernel returns: JSON
with a fixed table of tags for what JSON lacks (tuples, sets, dicts with other keys, special
floats, NumPy scalars, arrays and tensors). An array travels as its raw bytes (base64) beside its
dtype, read from a fixed table, and its shape, and is rebuilt with ``np.frombuffer``: no header is
parsed, nothing is unpickled, imported or evaluated, and a tag outside the table is an error, never
a lookup. What the student's objects cannot be reduced to arrives as an
:class:`Opaque` that names the type and nothing more.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "FRAME",
    "MAX_BYTES",
    "MAX_FRAME",
    "TORCH_DTYPES",
    "Opaque",
    "WireError",
    "decode",
    "dumps",
    "encode",
    "frame",
    "loads",
    "parse_json",
]

MAX_BYTES = 64 * 2**20  # one message, as JSON text
MAX_DEPTH = 64
# The grader's memory and CPU are not the student's to spend: a text may open at most this many
# lists and objects (64 MiB of "[[],[],..." would be 16 million lists, gigabytes once parsed), and
# a set or dict may hold at most MAX_HASHED members (colliding hashes make building one quadratic).
MAX_CONTAINERS = 1_000_000
MAX_HASHED = 4_096

# Between the judge and the call server, each request and each answer is one frame: its length
# (4 bytes, big-endian), then that many bytes of UTF-8 JSON. An empty frame ends the conversation.
FRAME = struct.Struct(">I")
MAX_FRAME = MAX_BYTES + 2**20  # an answer's envelope (token, error message) around one value

# NumPy scalar and array dtypes that may cross: numbers, booleans and strings only.
_NP_SCALARS = {
    name: getattr(np, name)
    for name in (
        "bool_",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "str_",
    )
}
_ARRAY_KINDS = "biufU"
# An array's dtype as NumPy spells it in native byte order ("<f4", "|b1"): numbers and booleans from
# this table, strings as "<U" and a length; nothing else is ever handed to np.dtype.
_ARRAY_DTYPES = frozenset(np.dtype(_NP_SCALARS[name]).str for name in _NP_SCALARS if name != "str_")
_STRING_DTYPE = re.compile(re.escape(np.dtype("U1").str[0]) + r"U[1-9][0-9]{0,5}")
MAX_NDIM = 32
# The torch dtypes a tensor may say it had: a name outside this table is never looked up.
TORCH_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")


class WireError(ValueError):
    """A message that is not plain data in this format, or too large."""


class Opaque:
    """Something the kernel returned that is not plain data: only its type's name crosses."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = str(type_name)[:200]

    def __repr__(self) -> str:
        return f"<a {self.type_name} object>"


def _raw(array: np.ndarray) -> dict:
    """An array's fields on the wire: native-order dtype, shape and C-order bytes."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return {
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "raw": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def _type_name(value: object) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def encode(value: Any, depth: int = 0, ref: Callable[[Any], dict] | None = None) -> Any:
    """``value`` as JSON-ready data. What cannot be reduced becomes ``ref(value)`` (the kernel's
    handle to an object it keeps) when ``ref`` is given, else an opaque tag."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
    if t is list:
        return [encode(v, depth + 1, ref) for v in value]
    if t is tuple:
        return {"$": "tuple", "v": [encode(v, depth + 1, ref) for v in value]}
    if t is set or t is frozenset:
        return {"$": t.__name__, "v": [encode(v, depth + 1, ref) for v in value]}
    if t is dict:
        return {"$": "dict", "v": [[encode(k, depth + 1, ref), encode(v, depth + 1, ref)] for k, v in value.items()]}
    if t is np.ndarray:
        if value.dtype.kind not in _ARRAY_KINDS:
            return {"$": "opaque", "type": f"numpy array of {value.dtype}"}
        return {"$": "ndarray", **_raw(value)}
    for name, scalar in _NP_SCALARS.items():
        if t is scalar:
            return {"$": "np", "dtype": name, "v": encode(value.item(), depth + 1)}
    torch = _torch()
    if torch is not None and t in (torch.Tensor, torch.nn.Parameter):
        array = value.detach().cpu()
        dtype = str(array.dtype).removeprefix("torch.")
        if array.dtype == torch.bfloat16:
            array = array.float()
        return {
            "$": "tensor",
            "torch_dtype": dtype,
            "requires_grad": bool(value.requires_grad),
            "parameter": t is torch.nn.Parameter,
            **_raw(array.numpy()),
        }
    if ref is not None:
        return ref(value)
    return {"$": "opaque", "type": _type_name(value)}


def _torch():
    import sys

    return sys.modules.get("torch")


def _array(data: dict) -> np.ndarray:
    """The array in an ``ndarray`` or ``tensor`` tag, checked field by field (``WireError`` otherwise)."""
    dtype, shape, raw = data.get("dtype"), data.get("shape"), data.get("raw")
    if type(dtype) is not str or not (dtype in _ARRAY_DTYPES or _STRING_DTYPE.fullmatch(dtype)):
        raise WireError(f"an array of dtype {str(dtype)[:20]!r}, not numbers or strings")
    if type(shape) is not list or len(shape) > MAX_NDIM or any(type(n) is not int or n < 0 for n in shape):
        raise WireError("an array shape that is not a short list of sizes")
    if type(raw) is not str:
        raise WireError("an array without its bytes")
    try:
        buffer = base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        raise WireError("an array whose bytes are not base64") from None
    kind = np.dtype(dtype)
    if len(buffer) != math.prod(shape) * kind.itemsize:
        raise WireError("an array whose bytes do not match its shape")
    return np.frombuffer(buffer, dtype=kind).reshape(shape).copy()


def decode(data: Any, depth: int = 0, ref: Callable[[dict], Any] | None = None) -> Any:
    """Data from :func:`encode` back as exact built-in, NumPy or torch values (``WireError`` otherwise).

    A handle tag becomes ``ref(tag)`` when ``ref`` is given (the judge's stand-in for the kernel's
    object); without it, a handle is an error."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    t = type(data)
    if data is None or t is bool or t is int or t is str or t is float:
        return data
    if t is list:
        return [decode(v, depth + 1, ref) for v in data]
    if t is not dict:
        raise WireError(f"unexpected {t.__name__}")
    tag = data.get("$")
    items = data.get("v")
    if tag == "float" and items in ("nan", "inf", "-inf"):
        return float(items)
    if tag == "tuple" and type(items) is list:
        return tuple(decode(v, depth + 1, ref) for v in items)
    if tag in ("set", "frozenset", "dict") and type(items) is list and len(items) > MAX_HASHED:
        raise WireError(f"a {tag} of more than {MAX_HASHED} members")
    if tag in ("set", "frozenset") and type(items) is list:
        members = [decode(v, depth + 1, ref) for v in items]
        try:
            return set(members) if tag == "set" else frozenset(members)
        except TypeError:
            raise WireError("a set of unhashable values") from None
    if tag == "dict" and type(items) is list:
        out = {}
        for pair in items:
            if type(pair) is not list or len(pair) != 2:
                raise WireError("a dict item that is not a pair")
            key = decode(pair[0], depth + 1, ref)
            try:
                out[key] = decode(pair[1], depth + 1, ref)
            except TypeError:
                raise WireError("an unhashable dict key") from None
        return out
    if tag == "np" and data.get("dtype") in _NP_SCALARS:
        value = decode(items, depth + 1)
        if type(value) not in (bool, int, float, str):
            raise WireError("a NumPy scalar that holds no plain value")
        return _NP_SCALARS[data["dtype"]](value)
    if tag == "ndarray":
        return _array(data)
    if tag == "tensor":
        array = _array(data)
        if array.dtype.kind not in "biuf":
            raise WireError("a tensor of strings")
        import torch

        tensor = torch.from_numpy(array)
        if data.get("torch_dtype") in TORCH_DTYPES:
            tensor = tensor.to(getattr(torch, data["torch_dtype"]))
        if data.get("parameter") is True:
            return torch.nn.Parameter(tensor, requires_grad=data.get("requires_grad") is True)
        return tensor.requires_grad_(data.get("requires_grad") is True and tensor.is_floating_point())
    if tag == "opaque":
        return Opaque(data.get("type", "unknown"))
    if tag == "ref" and ref is not None and type(data.get("id")) is int:
        return ref(data)
    raise WireError(f"unknown tag {str(tag)[:40]!r}")


def dumps(value: Any, ref: Callable[[Any], dict] | None = None) -> str:
    """``value`` encoded as one JSON text (``WireError`` beyond :data:`MAX_BYTES`)."""
    text = json.dumps(encode(value, ref=ref), allow_nan=False)
    if len(text) > MAX_BYTES:
        raise WireError(f"more than {MAX_BYTES // 2**20} MiB")
    return text


def loads(text: str, ref: Callable[[dict], Any] | None = None) -> Any:
    """The value in a JSON text from :func:`dumps`; anything else raises ``WireError``."""
    return decode(parse_json(text), ref=ref)


def parse_json(text: str | bytes, limit: int | None = None) -> Any:
    """``json.loads`` of a text from the kernel, refused (``WireError``) when longer than ``limit``
    (:data:`MAX_BYTES`), opening more than :data:`MAX_CONTAINERS` lists and objects, nested too deep
    or not JSON."""
    if type(text) not in (str, bytes) or len(text) > (MAX_BYTES if limit is None else limit):
        raise WireError("not a text, or too large")
    opens = ("[", "{") if type(text) is str else (b"[", b"{")
    if text.count(opens[0]) + text.count(opens[1]) > MAX_CONTAINERS:
        raise WireError(f"more than {MAX_CONTAINERS} lists and objects")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise WireError("not valid JSON") from None


def frame(data: bytes) -> bytes:
    """``data`` as one frame on the judge's socket."""
    return FRAME.pack(len(data)) + data
