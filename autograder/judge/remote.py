"""The judge's side of the call server: stand-ins for the objects that live in the student's kernel.

A :class:`Remote` is a handle to something in the kernel: a graded function or class by name, or an
object the kernel keeps (a layer the student's class built, a model their function returned).
Calling it, reading an attribute, indexing or iterating it is one request to the kernel's
:mod:`autograder.kernel.server`. What comes back is plain data (:mod:`autograder.wire`: numbers,
strings, containers, arrays and tensors as fresh copies) or another :class:`Remote`. Nothing the
kernel sends is unpickled, imported or evaluated here.

Arguments go the other way pickled (cloudpickle, so a test's own small ``nn.Module`` classes travel
too; the tensors inside as wire data): the kernel receives copies, and nothing it does to them can
move the judge's own values. A grader function is *lent* instead (:meth:`Channel.lend`): the kernel
gets a number to call back with, the judge runs the function on the plain data the call sends and
answers with plain data, and the number is forgotten when the test ends.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any

import cloudpickle

from autograder import wire

__all__ = ["Channel", "Remote", "RemoteError"]

# The transport: ``send(request, hook)`` delivers one request (JSON text) to the kernel's call
# server and hands ``hook`` each message that came back for it, parsed from JSON but not yet trusted
# (the ``token`` says whether it answers this request); nothing reaches ``hook`` when no answer came.
# When ``hook`` returns text (the reply to a callback), the transport sends it back and hands ``hook``
# the next message; None ends the request.
Execute = Callable[[str, Callable[[dict], str | None]], None]

# Exceptions a student's code may raise that the instructor's tests can catch by type. Anything
# else (AssertionError included: it would pose as the test's own verdict) arrives as RuntimeError.
_EXCEPTIONS = {
    e.__name__: e
    for e in (
        ArithmeticError,
        AttributeError,
        FloatingPointError,
        ImportError,
        IndexError,
        KeyError,
        LookupError,
        MemoryError,
        ModuleNotFoundError,
        NameError,
        NotImplementedError,
        OverflowError,
        RecursionError,
        RuntimeError,
        TypeError,
        UnboundLocalError,
        ValueError,
        ZeroDivisionError,
    )
}


class RemoteError(RuntimeError):
    """The kernel gave no usable answer."""


class Lent:
    """A grader function lent to the student's code for the rest of one test (see :meth:`Channel.lend`)."""

    __slots__ = ("name", "number")

    def __init__(self, number: int, name: str) -> None:
        self.number, self.name = number, name


_lent_numbers = itertools.count(1)  # never reused: a number kept from an earlier test names nothing


class Channel:
    """Requests to one student's kernel, through ``execute(code, hook)``."""

    def __init__(self, execute: Execute, unimportable: tuple[str, ...] = ()) -> None:
        self.execute = execute
        self.unimportable = tuple(unimportable)  # modules the kernel hides while it answers (kernel.server)
        self._remotes: dict[int, Remote] = {}
        self._lent: dict[int, Callable[..., Any]] = {}
        self._calling_back = False

    def lend(self, fn: Callable[..., Any], name: str) -> Lent:
        """``fn`` for the kernel to call back until the test ends: its code stays here, and what the
        student's code learns from it is only the answers to the calls it makes meanwhile."""
        lent = Lent(next(_lent_numbers), name)
        self._lent[lent.number] = fn
        return lent

    def request(self, op: str, target: dict, what: str, payload: str | None = None, **fields: Any) -> Any:
        """Send one request; its answer as plain data and :class:`Remote` handles."""
        if self._calling_back:
            raise RemoteError("a function the grader lends cannot itself call into the student's kernel")
        token = secrets.token_hex(16)
        message = {"token": token, "op": op, **target, **fields}
        if self.unimportable:
            message["unimportable"] = list(self.unimportable)
        if payload is not None:
            message["payload"] = payload
        answers: list[dict] = []

        def hook(answer: dict) -> str | None:
            if type(answer) is not dict or answer.get("token") != token or answers:
                return None
            if "callback" in answer:
                return json.dumps({"token": token, **self._call_back(answer)})
            answers.append(answer)
            return None

        self.execute(json.dumps(message), hook)
        if not answers:
            raise RemoteError(f"{what} gave the grader no answer (it did not return in time, or the kernel stopped)")
        answer = answers[0]
        if "raised" in answer:
            raised, message_text = str(answer.get("raised"))[:80], str(answer.get("message", ""))[:500]
            exc_type = _EXCEPTIONS.get(raised)
            if exc_type is None:
                raise RemoteError(f"{what} raised {raised}: {message_text}")
            raise exc_type(message_text)
        try:
            return wire.loads(answer.get("value"), ref=self._remote)
        except wire.WireError as exc:
            raise RemoteError(f"{what} returned something that is not plain data ({exc})") from None

    def _call_back(self, message: dict) -> dict:
        """The reply to a lent function's call from the kernel: ``{"value"}`` or ``{"raised", "message"}``."""
        number = message.get("callback")
        fn = self._lent.get(number) if type(number) is int else None
        if fn is None:
            return {"raised": "RuntimeError", "message": "the grader lent that function for one test only"}
        try:
            call = wire.loads(message.get("value"), ref=self._remote)
        except wire.WireError as exc:
            return {"raised": "TypeError", "message": f"the arguments are not plain data ({exc})"[:500]}
        if not (type(call) is list and len(call) == 2 and type(call[0]) is list and type(call[1]) is dict):
            return {"raised": "TypeError", "message": "a call back is [args, kwargs]"}
        self._calling_back = True
        try:
            return {"value": wire.dumps(fn(*call[0], **call[1]))}
        except wire.WireError as exc:
            return {"raised": "RuntimeError", "message": f"the grader's answer cannot be sent ({exc})"[:500]}
        except Exception as exc:
            return {
                "raised": type(exc).__name__ if type(exc) in _EXCEPTIONS.values() else "RuntimeError",
                "message": str(exc)[:500],
            }
        finally:
            self._calling_back = False

    def _remote(self, tag: dict) -> Remote:
        # One stand-in per kernel object, so that `returned is model` means what it says.
        handle = tag["id"]
        if handle not in self._remotes:
            kind = tag.get("class")
            self._remotes[handle] = Remote(
                self, {"handle": handle}, str(tag.get("type", "?"))[:200], None if kind is None else str(kind)[:200]
            )
        return self._remotes[handle]

    def pickle(self, args: tuple, kwargs: dict) -> str:
        """The arguments as the kernel will receive them: fresh copies, handles by number."""
        buffer = io.BytesIO()
        _Pickler(buffer).dump((tuple(args), dict(kwargs)))
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    def release(self) -> None:
        """Forget every handle (after each test cell): the kernel frees what it kept for the judge."""
        self._remotes.clear()
        self._lent.clear()
        try:
            self.request("release", {}, "the kernel")
        except RemoteError:
            pass

    def send(self, value: Any) -> Remote | Any:
        """A copy of ``value`` made in the kernel: a handle when it is not plain data."""
        return self.request("take", {}, "a copy", self.pickle((value,), {}))


class _Pickler(cloudpickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self._tensors: dict[int, int] = {}  # id(tensor) -> its number in this pickle

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is Lent:
            return ("lent", (obj.number, obj.name))
        if kind is Remote:
            return ("ref", obj._target["handle"]) if "handle" in obj._target else ("name", obj._target["name"])
        if _plain_tensor(obj):
            # A tensor or parameter (a module's, too) as wire data: about a tenth of the cost of
            # torch's own pickling on both sides. Sent once per pickle, so a tied weight stays tied.
            key = id(obj)
            if key in self._tensors:
                return ("tensor", self._tensors[key], None)
            self._tensors[key] = len(self._tensors)
            return ("tensor", self._tensors[key], wire.encode(obj))
        build = getattr(obj, "_autograder_build", None) if hasattr(obj, "__dict__") else None
        if type(build) is str:
            return ("build", build)
        return None


def _plain_tensor(obj: Any) -> bool:
    """An exact CPU ``Tensor`` or ``Parameter`` that wire data rebuilds whole: a dense leaf of a
    dtype in the wire's table, with no attributes of its own."""
    torch = sys.modules.get("torch")
    if torch is None or type(obj) not in (torch.Tensor, torch.nn.Parameter):
        return False
    return (
        obj.layout == torch.strided
        and obj.device.type == "cpu"
        and str(obj.dtype).removeprefix("torch.") in wire.TORCH_DTYPES
        and (obj.is_leaf or not obj.requires_grad)
        and not obj.__dict__
    )


class Remote:
    """The judge's stand-in for an object in the student's kernel."""

    __slots__ = ("_channel", "_class", "_target", "_type")

    def __init__(self, channel: Channel, target: dict, type_name: str = "?", class_name: str | None = None) -> None:
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_class", class_name)

    def _what(self) -> str:
        return f"your {self._target['name']}" if "name" in self._target else f"your {self._type.rsplit('.', 1)[-1]}"

    def __repr__(self) -> str:
        return f"<{self._what()}>"

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._channel.request("getattr", self._target, f"{self._what()}.{attr}", attr=attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("the judge does not set attributes on the student's objects directly; use set_tensor")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.request("call", self._target, f"{self._what()}(...)", self._channel.pickle(args, kwargs))

    def __getitem__(self, key: Any) -> Any:
        return self._channel.request("getitem", self._target, f"{self._what()}[...]", self._channel.pickle((key,), {}))

    def __iter__(self):
        items = self._channel.request("list", self._target, f"iterating {self._what()}")
        if type(items) is not list:
            raise RemoteError(f"iterating {self._what()} gave no list")
        return iter(items)

    def __deepcopy__(self, memo: dict) -> Any:
        return self._channel.request("deepcopy", self._target, f"copying {self._what()}")

    def _autograder_data(self) -> Any:
        """The tensor or array this object holds, as a plain copy."""
        return self._channel.request("data", self._target, f"the values of {self._what()}")
