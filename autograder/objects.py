"""What a test cell does to a student's objects, wherever they live.

A test cell runs in two places: in the student's own kernel, where ``LoRALinear`` is their class
(the visible checks, while they work), and in the grader's judge, where it is a
:class:`autograder.judge.remote.Remote` into their kernel. The few things a test needs beyond calling and
reading (a copy made where the student's code runs, an exact type, writing a parameter, the
gradients of one backward pass) go through these helpers, which do the local thing locally and send
one request otherwise. In the kernel, the call server runs the same helpers on the real objects.
"""

from __future__ import annotations

import copy
import operator
import sys
from typing import Any

__all__ = [
    "build",
    "called_with",
    "class_name",
    "grads_after",
    "is_exactly",
    "kernel_copy",
    "minilm_encoder",
    "module_types",
    "set_tensor",
    "stored_tensor",
    "stored_tensors",
    "trainable_numel",
    "type_name",
    "with_globals",
]

# The judge's channel to the kernel while it grades a notebook; None everywhere else.
_channel = None

# What the kernel runs for the judge (the call server's "helper" requests), by name.
# The judge's stand-ins for the student's objects live there; only the judge imports it, so it is
# looked up, never imported (tests/test_remote.py checks the name against the module).
REMOTE_MODULE = f"{__package__}.judge.remote"

KERNEL_HELPERS = (
    "called_with",
    "grads_after",
    "module_types",
    "set_tensor",
    "stored_tensor",
    "stored_tensors",
    "trainable_numel",
    "with_globals",
)


def _remote_type() -> type | None:
    module = sys.modules.get(REMOTE_MODULE)
    return None if module is None else module.Remote


def _is_remote(obj: Any) -> bool:
    kind = _remote_type()
    return kind is not None and type(obj) is kind


def _helper(obj: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    channel = obj._channel
    return channel.request("helper", {}, f"{name}(...)", channel.pickle((name, *args), kwargs))


def _load_minilm_encoder():
    from course.models import load_classifier, quiet

    with quiet():
        return load_classifier(num_labels=3, device="cpu").bert


BUILDERS = {"minilm_encoder": _load_minilm_encoder}


def build(key: str) -> Any:
    """A fresh object from the fixed table of things the kernel builds itself (never sent whole)."""
    if key not in BUILDERS:
        raise KeyError(f"nothing to build called {key!r}")
    made = BUILDERS[key]()
    made._autograder_build = key
    return made


def minilm_encoder():
    """The pretrained MiniLM body (a ``BertModel``), freshly loaded. Sent to the kernel, it is
    rebuilt there from the same files instead of travelling whole (about 90 MB)."""
    return build("minilm_encoder")


def kernel_copy(obj: Any) -> Any:
    """A copy of ``obj`` made where the student's code runs: their kernel when judged, else here."""
    if _channel is not None:
        return _channel.send(obj)
    return copy.deepcopy(obj)


def type_name(obj: Any) -> str:
    """``module.QualifiedName`` of the object's exact type."""
    if _is_remote(obj):
        return obj._type
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def class_name(cls: Any) -> str:
    """``module.QualifiedName`` of the class ``cls`` (in the kernel, for a graded class there)."""
    if _is_remote(cls):
        if cls._class is None and "name" in cls._target:
            # A graded name: ask the kernel what it is (a class answers with its own name).
            described = cls._channel.request("describe", cls._target, f"your {cls._target['name']}")
            object.__setattr__(cls, "_class", described if type(described) is str else "")
        return cls._class or ""
    return f"{cls.__module__}.{cls.__qualname__}"


def is_exactly(obj: Any, cls: Any) -> bool:
    """True when ``obj``'s type is exactly ``cls`` (not a subclass)."""
    name = class_name(cls)
    return bool(name) and type_name(obj) == name


def set_tensor(obj: Any, path: str, value: Any) -> None:
    """Write ``value`` into the tensor at attribute ``path`` of ``obj`` (``"lora_B"``,
    ``"encoder.layer.0.attention.self.query.lora_A"``), in place and outside autograd."""
    if _is_remote(obj):
        _helper(obj, "set_tensor", obj, path, value)
        return
    import torch

    with torch.no_grad():
        operator.attrgetter(path)(obj).copy_(torch.as_tensor(value))


def grads_after(
    model: Any, *args: Any, output: str | None = None, reduce: str = "sum", summary: bool = False, **kwargs: Any
) -> dict:
    """One backward pass of ``model(*args, **kwargs)`` (its ``output`` attribute, squared, summed or
    averaged): each named parameter's gradient as a tensor, or None where none arrived. With
    ``summary``, the gradient's largest magnitude instead of the tensor (a large model's gradients
    would not fit in one answer)."""
    if _is_remote(model):
        return _helper(model, "grads_after", model, *args, output=output, reduce=reduce, summary=summary, **kwargs)
    model.zero_grad(set_to_none=True)
    out = model(*args, **kwargs)
    if output is not None:
        out = getattr(out, output)
    loss = out.pow(2).sum() if reduce == "sum" else out.pow(2).mean()
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            grads[name] = None
        else:
            grads[name] = float(p.grad.detach().abs().max()) if summary else p.grad.detach().clone()
    model.zero_grad(set_to_none=True)
    return grads


def trainable_numel(model: Any) -> int:
    """How many numbers in ``model``'s parameters require gradients (each shared parameter once)."""
    if _is_remote(model):
        return _helper(model, "trainable_numel", model)
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def stored_tensors(module: Any) -> dict[str, tuple[str, int, int]]:
    """What ``module`` keeps: ``{name: (dtype, numel, bytes)}`` for its parameters, its buffers and
    every other tensor held by it or its submodules, as an attribute (``_``-prefixed ones included) or
    inside a list, tuple or dict there (a packed 4-bit weight may be any of them)."""
    if _is_remote(module):
        return _helper(module, "stored_tensors", module)
    return {
        name: (str(t.dtype).removeprefix("torch."), int(t.numel()), int(t.numel() * t.element_size()))
        for name, t in _tensors_kept(module).items()
    }


def stored_tensor(module: Any, name: str) -> Any:
    """A copy of the tensor that :func:`stored_tensors` lists under ``name`` (what a layer really
    keeps there, to be checked against what it computes)."""
    if _is_remote(module):
        return _helper(module, "stored_tensor", module, name)
    kept = _tensors_kept(module)
    if name not in kept:
        raise KeyError(f"the layer keeps no tensor named {name!r}")
    return kept[name].detach().clone()


def _tensors_kept(module: Any) -> dict[str, Any]:
    import torch

    found: dict[str, Any] = dict(module.named_parameters())
    found.update(dict(module.named_buffers()))
    seen = {id(t) for t in found.values()}

    def keep(name: str, value: Any, depth: int) -> None:
        # Every attribute, ``_codes`` as much as ``codes``, and tensors inside lists, tuples and dicts:
        # a layer cannot keep its full-precision weight where the count does not look.
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                found[name] = value
        elif depth < 3 and isinstance(value, list | tuple):
            for i, item in enumerate(value[:10_000]):
                keep(f"{name}[{i}]", item, depth + 1)
        elif depth < 3 and isinstance(value, dict):
            for key, item in list(value.items())[:10_000]:
                keep(f"{name}[{key!r}]", item, depth + 1)

    for prefix, sub in module.named_modules():
        for key, value in vars(sub).items():
            if key not in ("_modules", "_parameters", "_buffers"):  # counted above, by their own names
                keep(f"{prefix}.{key}" if prefix else key, value, 0)
    return found


def module_types(model: Any) -> dict[str, str]:
    """Each submodule's path and exact type name (``""`` is the model itself)."""
    if _is_remote(model):
        return _helper(model, "module_types", model)
    return {name: type_name(module) for name, module in model.named_modules(remove_duplicate=False)}


def with_globals(fn: Any, **stand_ins: Any) -> Any:
    """``fn``, but while it runs the globals it looks up by these names are the grader's
    ``stand_ins`` (a known-good ``bytes_per_param`` under a student's ``weights_gb``), so that a
    test judges one function at a time. The student's own names are back after each call.

    Judging, a stand-in function is lent, not sent: the kernel calls back to the judge, which runs it
    (:meth:`autograder.judge.remote.Channel.lend`), until the test ends."""
    if _is_remote(fn):
        lent = {k: fn._channel.lend(v, k) if callable(v) else v for k, v in stand_ins.items()}
        return _helper(fn, "with_globals", fn, **lent)

    def call(*args: Any, **kwargs: Any) -> Any:
        namespace = fn.__globals__
        saved = {name: namespace[name] for name in stand_ins if name in namespace}
        namespace.update(stand_ins)
        try:
            return fn(*args, **kwargs)
        finally:
            for name in stand_ins:
                if name in saved:
                    namespace[name] = saved[name]
                else:
                    namespace.pop(name, None)

    return call


def called_with(fn: Any, *args: Any, **kwargs: Any) -> tuple:
    """``(fn(*args, **kwargs), args as they are afterwards)``: whether a function changed its inputs
    in place, seen where it ran."""
    if _is_remote(fn):
        return _helper(fn, "called_with", fn, *args, **kwargs)
    return fn(*args, **kwargs), args
