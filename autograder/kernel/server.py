"""The call server: the only grader code that runs in the student's kernel during judging.

For each test cell the grader executes :func:`serve`, which connects to a Unix socket the grader
opened and answers the judge's requests on it, one frame each way (:data:`autograder.wire.FRAME`):
call this, read that attribute, list this iterable. Each answer is plain data
(:mod:`autograder.wire`), tagged with the request's token. A request costs a socket round trip, not
an executed cell or a Jupyter message. What cannot be reduced to plain data (a module, a model's
output object) stays here and crosses as a *handle*: a number the judge can name in later requests.

Arguments travel the other way, from the judge into this kernel, pickled (handles and objects the
kernel must build itself, such as the pretrained MiniLM, as persistent ids). The kernel may unpickle
what the grader sent; the grader never unpickles what the kernel sends.

A grader function that a test lends the student's code (a known-good helper put in place of the
student's own, :func:`autograder.objects.with_globals`) never comes here: the kernel gets a
:class:`_Lent` stand-in, and each call of it is a *callback*, one frame to the judge with the
arguments as plain data and one frame back with the result. Both sides forget it when the test
ends: kept and called later, it raises.

The server decides nothing: a student can patch it, and then it answers whatever they like, which
is only more data for the judge to check.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import copy
import importlib.abc
import io
import json
import pickle
import socket
import sys
from collections.abc import Callable
from typing import Any

from autograder import wire

MAX_ITEMS = 100_000  # the longest iterable the server lists in one answer

_objects: dict[int, Any] = {}  # handle -> object, kept alive so that ids stay unique
_handles: dict[int, int] = {}  # id(object) -> handle: the same object always gets the same handle

# The way back to the judge while one request is answered: ``call_back(message) -> reply``.
_call_back: Callable[[dict], dict] | None = None
_token: str | None = None  # the request being answered
_generation = 0  # one per test: a lent function from an earlier test is refused


class _Lent:
    """A grader function lent for one test: calling it asks the judge, which runs it and answers
    with plain data."""

    def __init__(self, number: int, name: str) -> None:
        self.number, self.name, self.generation = number, name, _generation

    def __repr__(self) -> str:
        return f"<the grader's {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.generation != _generation or _call_back is None:
            raise RuntimeError(f"the grader's {self.name} was lent for one test only")
        message = {"token": _token, "callback": self.number, "value": wire.dumps([list(args), kwargs], ref=_handle)}
        reply = _call_back(message)
        if "raised" in reply:
            kind = getattr(builtins, str(reply["raised"]), None)
            kind = kind if isinstance(kind, type) and issubclass(kind, Exception) else RuntimeError
            raise kind(str(reply.get("message", "")))
        return wire.loads(reply.get("value"))


def _handle(value: Any) -> dict:
    key = id(value)
    if key not in _handles:
        _handles[key] = len(_objects) + 1
        _objects[_handles[key]] = value
    kind = type(value)
    tag = {"$": "ref", "id": _handles[key], "type": f"{kind.__module__}.{kind.__qualname__}"}
    if isinstance(value, type):
        tag["class"] = f"{value.__module__}.{value.__qualname__}"
    return tag


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, namespace: dict) -> None:
        super().__init__(file)
        self.namespace = namespace
        self.tensors: dict[int, Any] = {}

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "tensor":  # ("tensor", number, wire data, or None when sent before)
            _, number, data = pid
            if data is not None:
                self.tensors[number] = wire.decode(data)
            return self.tensors[number]
        kind, key = pid
        if kind == "ref":
            return _objects[key]
        if kind == "name":
            return self.namespace[key]
        if kind == "build":
            from autograder.objects import build

            return build(key)
        if kind == "lent":  # ("lent", (number, name))
            number, name = key
            return _Lent(int(number), str(name))
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")


def _arguments(payload: str | None, namespace: dict) -> tuple[tuple, dict]:
    if not payload:
        return (), {}
    return _Unpickler(io.BytesIO(base64.b64decode(payload)), namespace).load()


def _target(req: dict, namespace: dict) -> Any:
    if "handle" in req:
        return _objects[req["handle"]]
    name = req["name"]
    if name not in namespace:
        raise NameError(f"name {name!r} is not defined", name=name)
    return namespace[name]


def _data(value: Any) -> Any:
    """A tensor or array subclass reduced to the plain tensor or array it holds."""
    import numpy as np

    torch = __import__("sys").modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return torch.Tensor.as_subclass(torch.Tensor.detach(value), torch.Tensor).cpu().clone()
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True, subok=False)
    raise TypeError(f"a {type(value).__name__} holds no array")


def _perform(req: dict, namespace: dict) -> Any:
    global _generation
    op = req["op"]
    if op == "release":
        _objects.clear()
        _handles.clear()
        _generation += 1
        return None
    if op == "take":
        (value,), _ = _arguments(req.get("payload"), namespace)
        return value
    if op == "helper":
        from autograder import objects

        (name, *args), kwargs = _arguments(req.get("payload"), namespace)
        if name not in objects.KERNEL_HELPERS:
            raise ValueError(f"no helper {name!r}")
        return getattr(objects, name)(*args, **kwargs)
    target = _target(req, namespace)
    if op == "call":
        args, kwargs = _arguments(req.get("payload"), namespace)
        return target(*args, **kwargs)
    if op == "getattr":
        return getattr(target, req["attr"])
    if op == "getitem":
        (key,), _ = _arguments(req.get("payload"), namespace)
        return target[key]
    if op == "list":
        items = []
        for item in target:
            items.append(item)
            if len(items) > MAX_ITEMS:
                raise ValueError(f"more than {MAX_ITEMS} items")
        return items
    if op == "deepcopy":
        return copy.deepcopy(target)
    if op == "data":
        return _data(target)
    if op == "describe":
        return f"{target.__module__}.{target.__qualname__}" if isinstance(target, type) else None
    raise ValueError(f"unknown operation {op!r}")


def _within(name: str, modules: list[str]) -> bool:
    """Whether module ``name`` is one of ``modules`` or inside one of them."""
    return any(name == m or name.startswith(m + ".") for m in modules)


class _Unimportable(importlib.abc.MetaPathFinder):
    """Refuses to import the modules the judge named, while the student's code answers it."""

    def __init__(self, modules: list[str]) -> None:
        self.modules = modules

    def find_spec(self, name, path=None, target=None):
        if _within(name, self.modules):
            raise ModuleNotFoundError(
                f"{name} cannot be imported while your code is graded: this assignment asks you to write it yourself",
                name=name,
            )
        return None


@contextlib.contextmanager
def _hiding(modules: list[str]):
    """``modules`` out of reach meanwhile: out of ``sys.modules``, off their parent package, and not
    importable again; all back afterwards. (The student's kernel can undo this; the judge's reading
    of the cells, :mod:`autograder.judge.shortcuts`, does not rest on it.)"""
    if not modules:
        yield
        return
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if _within(k, modules)}
    detached = []
    for module in modules:
        parent, _, child = module.rpartition(".")
        package = sys.modules.get(parent) if parent else None
        if package is not None and child in vars(package):
            detached.append((package, child, vars(package)[child]))
            delattr(package, child)
    finder = _Unimportable(modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        sys.modules.update(hidden)
        for package, child, value in detached:
            setattr(package, child, value)


def answer(request: str, namespace: dict, call_back: Callable[[dict], dict] | None = None) -> dict:
    """The answer to one request (``{"token", "op", "name"|"handle", ...}``), with ``namespace``
    standing for the student's globals: ``{"token", "value"}`` or ``{"token", "raised", "message"}``.
    ``call_back(message) -> reply`` carries a lent function's calls to the judge meanwhile."""
    global _call_back, _token
    req = json.loads(request)
    reply: dict = {"token": req["token"]}
    _call_back, _token = call_back, req["token"]
    hide = [str(m) for m in req.get("unimportable", [])]
    try:
        with _hiding(hide):
            reply["value"] = wire.dumps(_perform(req, namespace), ref=_handle)
    except BaseException as exc:  # the student's code failed: say how, as data
        reply["raised"] = type(exc).__name__
        reply["message"] = str(exc)[:500]
    finally:
        _call_back = _token = None
    return reply


def _receive(conn: socket.socket) -> bytes | None:
    """One frame's bytes; None when the grader hung up."""
    header = _exactly(conn, wire.FRAME.size)
    if header is None:
        return None
    return _exactly(conn, wire.FRAME.unpack(header)[0])


def _exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        try:
            chunk = conn.recv(min(left, 2**20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve(path: str) -> None:
    """Answer the judge's requests on the Unix socket at ``path``, one answer frame per request,
    until the grader sends an empty frame or hangs up."""
    from IPython import get_ipython

    namespace = get_ipython().user_ns
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)

        def call_back(message: dict) -> dict:
            conn.sendall(wire.frame(json.dumps(message).encode()))
            reply = _receive(conn)
            if reply is None:
                raise RuntimeError("the grader did not answer a call of the function it lent")
            return json.loads(reply)

        while request := _receive(conn):
            try:
                conn.sendall(wire.frame(json.dumps(answer(request.decode(), namespace, call_back)).encode()))
            except OSError:  # the grader gave up on this call (its time ran out)
                return
