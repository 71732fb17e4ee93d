"""Comparisons for hidden tests that a student's objects cannot fool.

A student's value reaches a comparison only after it has been turned into an exact built-in value
(``bool``, ``int``, ``float``, ``str``, ``None``, or lists/tuples/dicts of them) or a fresh NumPy
``float64`` array. A ``str`` subclass whose ``__eq__`` always says yes, an ``int`` that lies about
itself, an object with a custom ``__eq__`` or ``__float__``: each is refused with a message saying
what to return instead.

Every reference the helpers rely on (``type``, ``math.isclose``, ``numpy.allclose``...) is taken
when this module is imported. The grader imports it before any student code runs and checks,
around every test cell, that nothing in this module has been replaced since.
"""

from __future__ import annotations

import builtins as _builtins
import math as _math

import numpy as _np

# The judge's stand-ins for the student's objects live there; only the judge imports it, so it is
# looked up, never imported (tests/test_remote.py checks the name against the module).
REMOTE_MODULE = f"{__package__}.judge.remote"

_type = _builtins.type
_len = _builtins.len
_repr = _builtins.repr
_float = _builtins.float
_int = _builtins.int
_str = _builtins.str
_bool = _builtins.bool
_list = _builtins.list
_tuple = _builtins.tuple
_dict = _builtins.dict
_zip = _builtins.zip
_print = _builtins.print
_isclose = _math.isclose
_isnan = _math.isnan
_AssertionError = _builtins.AssertionError
_np_array = _np.array
_np_allclose = _np.allclose
_np_isfinite = _np.isfinite
_np_all = _np.all
_np_abs = _np.abs
_np_max = _np.max
_inf = _float("inf")
_ndarray = _np.ndarray
_np_float_types = (_np.float16, _np.float32, _np.float64, _np.longdouble)
_np_int_types = (
    _np.int8,
    _np.int16,
    _np.int32,
    _np.int64,
    _np.uint8,
    _np.uint16,
    _np.uint32,
    _np.uint64,
)
_np_bool = _np.bool_
_np_str = _np.str_

__all__ = [
    "as_array",
    "as_bool",
    "as_float",
    "as_int",
    "as_str",
    "expect",
    "expect_all_close",
    "expect_choice",
    "expect_close",
    "expect_equal",
    "nearest_mistake",
    "plain",
    "relative_distance",
]


def _fail(message: str) -> None:
    raise _AssertionError(message)


def _kind(value: object) -> str:
    t = _type(value)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def _torch_tensor_types() -> tuple:
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return ()
    return (torch.Tensor, torch.nn.Parameter)


def _remote_type() -> type | None:
    import sys

    module = sys.modules.get(REMOTE_MODULE)
    return None if module is None else module.Remote


def _refuse(value: object, what: str, wanted: str) -> None:
    _fail(
        f"{what} is a {_kind(value)}; it must be {wanted}. Return plain Python or NumPy values "
        "(a subclass of str, int or float, or an object with its own __eq__, cannot be graded)."
    )


def as_bool(value: object, what: str = "the value") -> bool:
    """``value`` as an exact ``bool`` (a Python or NumPy boolean, nothing else)."""
    t = _type(value)
    if t is _bool:
        return value  # type: ignore[return-value]
    if t is _np_bool:
        return _bool(value)
    _refuse(value, what, "True or False")


def as_int(value: object, what: str = "the value") -> int:
    """``value`` as an exact ``int`` (Python or NumPy integer; a bool is refused)."""
    t = _type(value)
    if t is _int:
        return value  # type: ignore[return-value]
    if t in _np_int_types:
        return _int(value)
    if t in _torch_tensor_types() and value.ndim == 0 and not value.dtype.is_floating_point:  # type: ignore[attr-defined]
        return _int(value.item())  # type: ignore[attr-defined]
    _refuse(value, what, "a whole number (int)")


def as_float(value: object, what: str = "the value") -> float:
    """``value`` as an exact ``float``: Python/NumPy numbers, 0-d arrays and 0-d tensors."""
    t = _type(value)
    if t is _float:
        return value  # type: ignore[return-value]
    if t is _int or t in _np_int_types:
        return _float(_int(value))
    if t in _np_float_types:
        return _float(value)
    if t is _ndarray and value.ndim == 0:  # type: ignore[attr-defined]
        return as_float(value[()], what)  # type: ignore[index]
    if t in _torch_tensor_types() and value.ndim == 0:  # type: ignore[attr-defined]
        return _float(value.detach().cpu().item())  # type: ignore[attr-defined]
    _refuse(value, what, "a number")


def as_str(value: object, what: str = "the value") -> str:
    """``value`` as an exact ``str`` (a Python or NumPy string)."""
    t = _type(value)
    if t is _str:
        return value  # type: ignore[return-value]
    if t is _np_str:
        return _str.__str__(value)  # type: ignore[arg-type]
    _refuse(value, what, "a string (str)")


def plain(value: object, what: str = "the value"):
    """``value`` rebuilt from exact built-in types, recursively through lists, tuples and dicts."""
    t = _type(value)
    if value is None or t is _bool or t is _str or t is _int or t is _float:
        return value
    if t is _np_bool:
        return _bool(value)
    if t is _np_str:
        return as_str(value, what)
    if t in _np_int_types:
        return _int(value)
    if t in _np_float_types:
        return _float(value)
    if t is _list or t is _tuple:
        items = [plain(v, f"{what}[{i}]") for i, v in enumerate(value)]  # type: ignore[arg-type]
        return items if t is _list else _tuple(items)
    if t is _dict:
        return {plain(k, f"a key of {what}"): plain(v, f"{what}[{k!r}]") for k, v in value.items()}  # type: ignore[attr-defined]
    if (t is _ndarray or t in _torch_tensor_types()) and value.ndim == 0:  # type: ignore[attr-defined]
        return as_float(value, what)
    _refuse(value, what, "a plain value (bool, int, float, str, None, or a list/tuple/dict of them)")


def as_array(value: object, what: str = "the array") -> _np.ndarray:
    """A fresh ``float64`` NumPy array from an exact ndarray, tensor, or (nested) list/tuple of numbers."""
    t = _type(value)
    if t is _ndarray:
        if value.dtype.kind not in "biuf":  # type: ignore[attr-defined]
            _fail(f"{what} holds {value.dtype} values; it must hold numbers")  # type: ignore[attr-defined]
        return _np_array(value, dtype=_np.float64, copy=True)
    if t in _torch_tensor_types():
        return _np_array(value.detach().cpu().double().numpy(), dtype=_np.float64, copy=True)  # type: ignore[attr-defined]
    if t is _list or t is _tuple:
        return _np_array(plain(value, what), dtype=_np.float64)
    if t in (_int, _float) or t in _np_float_types or t in _np_int_types:
        return _np_array(as_float(value, what), dtype=_np.float64)
    if t is _remote_type():  # in the judge: a tensor subclass kept in the kernel, reduced to its values there
        data = value._autograder_data()  # type: ignore[attr-defined]
        if _type(data) is t:
            _refuse(data, what, "a NumPy array, a torch tensor or a list of numbers")
        return as_array(data, what)
    _refuse(value, what, "a NumPy array, a torch tensor or a list of numbers")


def expect(condition: object, message: str) -> None:
    """Fail with ``message`` unless ``condition`` is exactly True."""
    if as_bool(condition, "the condition") is not True:
        _fail(message)


def expect_equal(actual: object, expected: object, message: str, what: str = "your answer") -> None:
    """``actual`` equals ``expected`` once both are rebuilt from exact built-in types."""
    if plain(actual, what) != plain(expected, "the expected value"):
        _fail(message)


def expect_close(
    actual: object, expected: float, message: str, rel: float = 1e-9, abs: float = 0.0, what: str = "your answer"
) -> None:
    """``actual`` is a number within ``rel``/``abs`` of ``expected`` (NaN never matches)."""
    a = as_float(actual, what)
    e = _float(expected)
    if _isnan(a) or not _isclose(a, e, rel_tol=rel, abs_tol=abs):
        _fail(message)


def expect_all_close(
    actual: object, expected: object, message: str, rtol: float = 1e-6, atol: float = 1e-8, what: str = "your array"
) -> None:
    """Same shape, finite, and element-wise close (``numpy.allclose`` on fresh float64 copies)."""
    a = as_array(actual, what)
    e = as_array(expected, "the expected array")
    if a.shape != e.shape:
        _fail(f"{message} (shape {_tuple(a.shape)}, expected {_tuple(e.shape)})")
    if not _bool(_np_all(_np_isfinite(a))) or not _bool(_np_allclose(a, e, rtol=rtol, atol=atol)):
        _fail(message)


def expect_choice(answer: object, correct: str, mistakes: dict, what: str = "your answer", right: str = "") -> None:
    """A multiple-choice answer: exactly the letter ``correct``; a wrong letter fails with its mistake, and
    the right one prints ``right``: feedback reaches right answers too (what the choice rests on)."""
    letter = as_str(answer, what)
    if letter != correct:
        _fail(mistakes.get(letter, f"{what} {letter!r} is not one of the offered letters"))
    if right:
        _print(right)


def relative_distance(actual: object, expected: object, scale: float | None = None) -> float:
    """Largest element-wise difference over the size of ``expected`` (its largest magnitude), in float64.

    Infinite when the shapes differ or ``actual`` is not finite. ``scale`` fixes the denominator, so
    that several candidates are measured with one ruler.
    """
    a = as_array(actual, "your array")
    e = as_array(expected, "the expected array")
    if a.shape != e.shape or not _bool(_np_all(_np_isfinite(a))):
        return _inf
    if a.size == 0:
        return 0.0
    size = _float(_np_max(_np_abs(e))) if scale is None else _float(scale)
    return _float(_np_max(_np_abs(a - e))) / (size if size > 1e-300 else 1.0)


def nearest_mistake(
    actual: object, right: object, mistakes: dict, within: float = 1e-3, margin: float = 10.0
) -> str | None:
    """The name of the mistake in ``mistakes`` (name -> value it would produce) that ``actual`` matches.

    Judged by relative distance in float64, on one scale (the right value's largest magnitude), not by
    one absolute tolerance, so that float32 rounding, thread counts and BLAS kernels cannot change
    which mistake is named. A mistake is named only when ``actual`` lies within ``within`` of it and at
    least ``margin`` times nearer to it than to the right value and to every other candidate;
    candidates that coincide with the right value for these inputs are never named. ``None``
    otherwise: the answer is wrong in a way no candidate explains (or it is right).
    """
    e = as_array(right, "the expected array")
    size = _float(_np_max(_np_abs(e))) if e.size else 1.0
    distinct = {}
    for name, value in mistakes.items():
        c = as_array(value, f"candidate {name}")
        if relative_distance(c, e, size) > within * margin:
            distinct[name] = relative_distance(actual, c, size)
    to_right = relative_distance(actual, e, size)
    best = None
    for name, d in distinct.items():
        if best is None or d < distinct[best]:
            best = name
    if best is None or distinct[best] > within or distinct[best] * margin > to_right:
        return None
    for name, d in distinct.items():
        if name != best and distinct[best] * margin > d:
            return None
    return best
