"""The GPU study's arithmetic proven on a CPU: Qwen2.5-0.5B's exact architecture with random weights,
loaded the three ways :mod:`course.gpu_study` loads it (in bf16, as on a GPU), and every byte it holds
counted against :func:`~course.gpu_study.predicted_components` and
:func:`~course.gpu_study.predicted_activations`.

    python -m course.gpu_study --check-arithmetic [--json]

What is measured, per arm, after one training step at a short sequence length:

- ``weights``: the parameters and buffers, with the 4-bit layers' quantization constants;
- ``gradients``: the ``.grad`` tensors after the backward pass;
- ``optimizer``: the tensors in the optimizer's state (bitsandbytes' paged 8-bit AdamW for QLoRA);
- ``activations``: what autograd saved for the backward pass (``saved_tensors_hooks``), parameters excluded;
- ``peak``: the tensors alive when a second step starts plus the most that step allocated on top, read
  from torch's profiler; the prediction is weights, gradients and optimizer states plus the larger of
  the activations and AdamW's per-step temporaries (two copies of its largest parameter).

No download: the architecture is written out below, and the random model is built once and cached
(:func:`checkpoint`). About 40 s and 5 GB of memory on two cores.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import warnings
from pathlib import Path

import torch

from . import gpu_study
from .memory import SavedForBackward, held_bytes, held_tensors

# Qwen/Qwen2.5-0.5B's config.json, the numbers that decide its memory (no download needed to build it).
QWEN25_05B = {
    "vocab_size": 151_936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32_768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "tie_word_embeddings": True,
}
COMPONENTS = ("weights", "gradients", "optimizer", "activations", "peak")
# How far a measurement may sit from its prediction: the stored bytes are exact arithmetic; the saved
# activations depend on which kernels torch picks; the peak on the order in which tensors are freed.
TOLERANCE = {"weights": 0.05, "gradients": 0.05, "optimizer": 0.05, "activations": 0.10, "peak": 0.15}
BATCH, SEQ_LEN = 2, 32
# This check on the course's 2-core machine (python -m course.gpu_study --check-arithmetic --json).
RECORDED = Path(__file__).parent / "recorded" / "gpu_arithmetic_cpu.json"


def cache_dir() -> Path:
    """Where the random checkpoint is kept: ``$COURSE_CACHE`` or ``~/.cache/lora-qlora-course``."""
    return Path(os.environ.get("COURSE_CACHE") or Path.home() / ".cache" / "lora-qlora-course")


def config():
    """Qwen2.5-0.5B's architecture for 3-class sequence classification."""
    from transformers import Qwen2Config

    return Qwen2Config(**QWEN25_05B, num_labels=3, pad_token_id=0)


def checkpoint(folder: Path | None = None) -> Path:
    """A bf16 Qwen2.5-0.5B-shaped classifier with random weights, saved once (about 1 GB) and reused."""
    from transformers import AutoModelForSequenceClassification

    folder = folder or cache_dir() / "qwen2.5-0.5b-random-bf16"
    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config(), dtype=torch.bfloat16)
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial)
    partial.replace(folder)  # whole or absent, whoever else is building it
    return folder


def optimizer_tensors(optimizer: torch.optim.Optimizer):
    for state in optimizer.state.values():
        yield from state.values()


def most_allocated(step) -> int:
    """The most bytes that ``step()`` had allocated at once on top of what was alive before it, from the
    profiler's record of every CPU allocation and free."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    alive = most = 0
    for _, nbytes in events:
        alive += nbytes
        most = max(most, alive)
    return most


def _batch(step: int, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    ids = torch.randint(1, vocab, (BATCH, SEQ_LEN), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(BATCH) % 3}


def check_arm(arm: str, folder: Path) -> dict[str, dict[str, float]]:
    """``{component: {"predicted": bytes, "measured": bytes}}`` for one arm."""
    cpu = torch.device("cpu")
    optimizer_name = "paged_adamw_8bit" if arm == "qlora" else "adamw"
    model = gpu_study.load(str(folder), arm, cpu, random_init=False, simulate=False, dtype=torch.bfloat16)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer_name == "paged_adamw_8bit":
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(params, lr=2e-4)
    else:
        optimizer = torch.optim.AdamW(params, lr=2e-4)
    model.train()
    measured = {"weights": held_bytes(held_tensors(model))}

    saved = SavedForBackward(model)
    with saved:
        loss = model(**_batch(0, QWEN25_05B["vocab_size"])).loss
    measured["activations"] = saved.nbytes
    del saved
    loss.backward()
    measured["gradients"] = held_bytes(p.grad for p in params)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    measured["optimizer"] = held_bytes(optimizer_tensors(optimizer))
    del loss

    def second_step():
        model(**_batch(1, QWEN25_05B["vocab_size"])).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    alive = held_bytes([*held_tensors(model), *optimizer_tensors(optimizer)])
    measured["peak"] = alive + most_allocated(second_step)

    linear, other, trainable = gpu_study.parameter_split(model)
    small = gpu_study.small_trainable(model)
    predicted = gpu_study.predicted_components(arm, linear, other, trainable, optimizer_name, small=small)
    counted = (arm, BATCH * SEQ_LEN, gpu_study.Shape.of(model.config))
    dropout = {"dropout": gpu_study.LORA_DROPOUT > 0, "mask_bytes": 4}  # a CPU's dropout keeps a float32 mask
    predicted["activations"] = gpu_study.predicted_activations(*counted, **dropout)
    recomputed = gpu_study.recomputed_activations(*counted, **dropout)
    # torch's AdamW on a CPU updates one parameter at a time, with two temporaries of its size.
    step_temporaries = 2 * max(p.numel() * p.element_size() for p in params) if optimizer_name == "adamw" else 0
    predicted["peak"] = (
        predicted["weights"]
        + predicted["gradients"]
        + predicted["optimizer"]
        + max(predicted["activations"] + recomputed, step_temporaries)
    )
    return {c: {"predicted": float(predicted[c]), "measured": float(measured[c])} for c in COMPONENTS}


def check(arms=gpu_study.ARMS, folder: Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """``{arm: {component: {"predicted": bytes, "measured": bytes}}}`` for each arm."""
    folder = checkpoint(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' and PEFT's notices about random weights and dtypes
        report = {}
        for arm in arms:
            report[arm] = check_arm(arm, folder)
            gc.collect()  # the arm's model and optimizer, before the next arm loads
        return report


def out_of_tolerance(report: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """One line for each component whose measurement is further from its prediction than :data:`TOLERANCE`."""
    problems = []
    for arm, components in report.items():
        for component, pair in components.items():
            predicted, measured = pair["predicted"], pair["measured"]
            off = abs(measured - predicted) / predicted if predicted else float(measured != 0)
            if off > TOLERANCE[component]:
                problems.append(
                    f"{arm} {component}: measured {measured / 1e6:.1f} MB, predicted {predicted / 1e6:.1f} MB "
                    f"({100 * off:.1f} % off, allowed {100 * TOLERANCE[component]:.0f} %)"
                )
    return problems


def format_report(report: dict[str, dict[str, dict[str, float]]]) -> str:
    """Predicted and measured MB side by side, one line per arm and component."""
    lines = [f"{'arm':<6}{'component':<13}{'predicted MB':>14}{'measured MB':>13}{'off':>8}"]
    for arm, components in report.items():
        for component, pair in components.items():
            off = (pair["measured"] - pair["predicted"]) / pair["predicted"]
            lines.append(
                f"{arm:<6}{component:<13}{pair['predicted'] / 1e6:>14.1f}{pair['measured'] / 1e6:>13.1f}{off:>+8.1%}"
            )
    return "\n".join(lines)


def main(as_json: bool = False) -> int:
    """Print the check (one JSON object with ``as_json``); 1 when a component is out of tolerance."""
    report = check()
    print(json.dumps(report, indent=1) if as_json else format_report(report))
    problems = out_of_tolerance(report)
    for line in problems:
        print(f"course.gpu_study: out of tolerance: {line}", file=sys.stderr)
    return 1 if problems else 0
