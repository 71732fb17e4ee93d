"""Where a model's bytes go: a parameter inventory, its floor, and what is really stored.

Everything is measured from the tensors themselves (their element size, their
quantization state), so the same code describes a float32 model, a float16 one and
one loaded in 4 bits by bitsandbytes:

* :func:`parameter_inventory` lists every parameter with its module kind
  (embedding, attention, feed-forward, layer norm, pooler, head, LoRA adapter),
  its storage format (``"nf4"``/``"fp4"`` for bitsandbytes' ``Params4bit``, else the
  dtype such as ``"float32"``) and its bytes.
* :func:`floor_bytes` is the theoretical footprint of that inventory: packed 4-bit
  codes plus their per-block constants (with double quantization, the 8-bit
  constants and the second-level 32-bit ones), and every other tensor at its
  element size. Per-tensor extras (lookup tables, offsets) are left out: they do
  not grow with the number of parameters.
* :func:`measured_footprint` adds up what is actually stored: parameters and
  buffers as stored, the complete quantization state, and transformers'
  ``get_memory_footprint()`` (which counts parameters and buffers only).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import torch

HEAD_NAMES = ("classifier", "score", "lm_head", "qa_outputs")
ATTENTION_NAMES = ("attention", "attn", "self_attn")


@dataclass(frozen=True)
class Entry:
    """One parameter tensor of a model."""

    name: str  # e.g. "bert.encoder.layer.0.attention.self.query.weight"
    kind: str  # module kind: "embedding", "attention", "feed-forward", "layer norm", ...
    storage: str  # "nf4"/"fp4" (4-bit Params4bit) or the dtype, e.g. "float32"
    n_params: int  # logical parameters (a packed 4-bit weight counts its unpacked elements)
    data_bytes: int  # the tensor as stored (packed codes for a 4-bit weight)
    constant_bytes: int = 0  # per-block scaling constants, incl. double quantization's second level
    overhead_bytes: int = 0  # per-tensor extras of the quantization state (lookup tables, offset)
    block_size: int | None = None  # 4-bit weights: parameters per absmax constant
    double_quant: bool = False  # 4-bit weights: constants quantized again (nested state)
    block_size2: int | None = None  # double quantization: first-level constants per second-level one

    @property
    def quantized(self) -> bool:
        return self.block_size is not None

    @property
    def floor_bytes(self) -> int:
        """The bytes this tensor cannot do without: its data and its per-block constants."""
        return self.data_bytes + self.constant_bytes


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of a tensor's elements as stored: ``numel * element_size``."""
    return t.numel() * t.element_size()


def module_kind(name: str, module: torch.nn.Module) -> str:
    """What a module does in the model, judged from its type and its qualified name."""
    parts = name.lower().split(".")
    if any(p.startswith("lora_") for p in parts):
        return "lora adapter"
    if isinstance(module, torch.nn.Embedding) or type(module).__name__.endswith("Embedding"):
        return "embedding"
    if "norm" in type(module).__name__.lower():
        return "layer norm"
    if isinstance(module, torch.nn.Linear) or "Linear" in type(module).__name__:
        if any(p in HEAD_NAMES for p in parts):
            return "head"
        if "pooler" in parts:
            return "pooler"
        if any(p in ATTENTION_NAMES for p in parts):
            return "attention"
        return "feed-forward"
    return "other"


def _quant_state_tensors(state) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor a bitsandbytes ``QuantState`` holds, nested state included."""
    for key, value in vars(state).items():
        if isinstance(value, torch.Tensor):
            yield key, value
        elif value is not None and hasattr(value, "absmax") and hasattr(value, "code"):
            for sub, tensor in _quant_state_tensors(value):
                yield f"{key}.{sub}", tensor


def _quant_state(p: torch.Tensor):
    """The quantization state of a bitsandbytes 4-bit parameter that has been quantized, else None."""
    return getattr(p, "quant_state", None) if type(p).__name__ == "Params4bit" else None


def _entry(name: str, kind: str, p: torch.Tensor) -> Entry:
    state = _quant_state(p)
    if state is None:
        storage = str(p.dtype).removeprefix("torch.")
        return Entry(name, kind, storage, p.numel(), tensor_bytes(p))
    tensors = dict(_quant_state_tensors(state))
    nested = bool(getattr(state, "nested", False))
    constants = [tensors["absmax"]] + ([tensors["state2.absmax"]] if nested else [])
    constant = sum(tensor_bytes(t) for t in constants)
    return Entry(
        name=name,
        kind=kind,
        storage=str(state.quant_type),
        n_params=math.prod(state.shape),
        data_bytes=tensor_bytes(p),
        constant_bytes=constant,
        overhead_bytes=sum(tensor_bytes(t) for t in tensors.values()) - constant,
        block_size=int(state.blocksize),
        double_quant=nested,
        block_size2=int(state.state2.blocksize) if nested else None,
    )


def _own_4bit_entry(name: str, kind: str, module: torch.nn.Module) -> Entry | None:
    """A layer that stores its frozen weight itself, as the lab's ``QLoRALinear`` does (buffers of codes
    and constants, ``weight_bytes()`` their size): one entry for that weight."""
    if not callable(getattr(module, "weight_bytes", None)) or "weight" in module._parameters:
        return None
    n_params = int(module.in_features) * int(module.out_features)
    stored = int(module.weight_bytes())
    codes = math.ceil(n_params / 2)
    return Entry(f"{name}.weight", kind, "nf4", n_params, codes, max(stored - codes, 0))


def parameter_inventory(model: torch.nn.Module) -> list[Entry]:
    """One :class:`Entry` per parameter of ``model`` (shared parameters once), in model order."""
    entries, seen = [], set()
    for mod_name, module in model.named_modules():
        kind = module_kind(mod_name, module)
        own = _own_4bit_entry(mod_name, kind, module)
        if own is not None:
            entries.append(own)
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            entries.append(_entry(f"{mod_name}.{p_name}" if mod_name else p_name, kind, p))
    return entries


def summarize(inventory: list[Entry]) -> dict[tuple[str, str], dict[str, int]]:
    """Totals per (kind, storage): ``{"tensors", "n_params", "data_bytes", "constant_bytes", "floor_bytes"}``."""
    totals: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"tensors": 0, "n_params": 0, "data_bytes": 0, "constant_bytes": 0, "floor_bytes": 0}
    )
    for e in inventory:
        row = totals[(e.kind, e.storage)]
        row["tensors"] += 1
        row["n_params"] += e.n_params
        row["data_bytes"] += e.data_bytes
        row["constant_bytes"] += e.constant_bytes
        row["floor_bytes"] += e.floor_bytes
    return dict(totals)


def format_inventory(inventory: list[Entry]) -> str:
    """A printable table of :func:`summarize`, with a total line (bytes in MB = 1e6 bytes)."""
    rows = summarize(inventory)
    lines = [f"{'kind':<14}{'storage':<10}{'tensors':>8}{'parameters':>13}{'share':>8}{'floor MB':>10}"]
    n_total = sum(r["n_params"] for r in rows.values()) or 1
    for (kind, storage), r in rows.items():
        lines.append(
            f"{kind:<14}{storage:<10}{r['tensors']:>8}{r['n_params']:>13,}{r['n_params'] / n_total:>8.1%}"
            f"{r['floor_bytes'] / 1e6:>10.2f}"
        )
    lines.append(f"{'total':<24}{len(inventory):>8}{n_total:>13,}{1:>8.0%}{floor_bytes(inventory) / 1e6:>10.2f}")
    return "\n".join(lines)


def floor_bytes(inventory: list[Entry]) -> int:
    """The theoretical footprint: packed codes + per-block constants + unquantized tensors as stored."""
    return sum(e.floor_bytes for e in inventory)


def held_tensors(model: torch.nn.Module) -> Iterator[torch.Tensor]:
    """Every tensor the model holds: parameters, buffers and the 4-bit quantization states' tensors."""
    yield from model.parameters()
    yield from model.buffers()
    for p in model.parameters():
        state = _quant_state(p)
        if state is not None:
            yield from (t for _, t in _quant_state_tensors(state))


def measured_footprint(model: torch.nn.Module) -> dict[str, int]:
    """Bytes the model really holds, counted from its tensors.

    ``parameters`` and ``buffers`` as stored (4-bit weights packed), ``quant_state``
    every tensor of the 4-bit quantization states (constants, lookup tables, offsets),
    ``total`` their sum, and ``get_memory_footprint`` transformers' own count
    (parameters and buffers only) when the model has that method.
    """
    params = {id(p): p for p in model.parameters()}
    buffers = {id(b): b for b in model.buffers()}
    states = {}
    for p in params.values():
        state = _quant_state(p)
        if state is not None:
            states.update({id(t): t for _, t in _quant_state_tensors(state)})
    out = {
        "parameters": sum(tensor_bytes(p) for p in params.values()),
        "buffers": sum(tensor_bytes(b) for b in buffers.values()),
        "quant_state": sum(tensor_bytes(t) for t in states.values()),
    }
    out["total"] = out["parameters"] + out["buffers"] + out["quant_state"]
    if hasattr(model, "get_memory_footprint"):
        out["get_memory_footprint"] = int(model.get_memory_footprint())
    return out


# --- what a training step holds besides the weights -------------------------------------------


def held_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and shared tensors count once)."""
    storages = {}
    for t in tensors:
        if torch.is_tensor(t):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


class SavedForBackward:
    """Bytes autograd saves for the backward pass inside the ``with`` block, parameters excluded."""

    def __init__(self, model: torch.nn.Module):
        self._parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._saved: list[torch.Tensor] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in self._parameters:
            self._saved.append(t)
        return t

    def __enter__(self) -> SavedForBackward:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def nbytes(self) -> int:
        return held_bytes(self._saved)
