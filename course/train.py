"""A small, seeded training and evaluation loop for sequence classifiers.

It reports what the course compares between fine-tuning methods: the loss curves,
seconds per optimisation step and peak memory (GPU: ``torch.cuda.max_memory_allocated``;
CPU: the process's resident memory, sampled while the arm runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import torch
from tqdm.auto import tqdm


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    max_length: int = 64
    warmup_fraction: float = 0.1
    evals_per_epoch: int = 2  # points on the validation loss curve
    seed: int = 0
    progress: bool = True
    optimizer: str = "adamw"  # or "paged_adamw_8bit" (bitsandbytes, CUDA only)


@dataclass
class TrainResult:
    train_loss: list[float] = field(default_factory=list)  # one per step
    val_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    steps: int = 0
    seconds_per_step: float = 0.0
    peak_memory_mb: float = 0.0
    memory_kind: str = ""  # what peak_memory_mb measures


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(device: torch.device):
    """bf16 mixed precision on a GPU (the tensor cores' format); plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def release_freed_memory() -> None:
    """Hand memory freed by Python and torch back to the operating system (glibc only).

    Without this, the resident set size stays at the high-water mark of whatever ran
    before, and one arm's peak would hide the next arm's.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: measurements are just less tight
        pass


class PeakMemory:
    """Peak memory while the ``with`` block runs, in MB, and how much of it the block added.

    On a GPU it is the CUDA allocator's peak (``max_memory_allocated``); on the CPU the
    resident set size of this process, sampled every few milliseconds, after freed
    memory was handed back so that earlier work does not count.
    """

    def __init__(self, device: torch.device, interval: float = 0.005):
        self.device, self.interval = torch.device(device), interval
        self.peak_mb = self.baseline_mb = 0.0
        self._stop = threading.Event()

    @property
    def kind(self) -> str:
        return "CUDA max_memory_allocated" if self.device.type == "cuda" else "process resident memory"

    @property
    def added_mb(self) -> float:
        """Peak minus what was in use when the block started: what the block itself needed."""
        return max(0.0, self.peak_mb - self.baseline_mb)

    def _rss_mb(self) -> float:
        return psutil.Process().memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            release_freed_memory()
            self.baseline_mb = self.peak_mb = self._rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self._rss_mb())


def batches(tokenizer, texts, labels=None, batch_size=32, max_length=64, shuffle=False, seed=0):
    """Tokenised mini-batches (dicts of tensors, with ``labels`` when given)."""
    order = np.arange(len(texts))
    if shuffle:
        np.random.default_rng(seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        if labels is not None:
            batch["labels"] = torch.as_tensor([int(labels[i]) for i in idx])
        yield batch


@torch.no_grad()
def evaluate_loss(model, tokenizer, texts, labels, batch_size=64, max_length=64) -> float:
    was_training = model.training
    model.eval()
    device, total, count = model_device(model), 0.0, 0
    for batch in batches(tokenizer, texts, labels, batch_size, max_length):
        with autocast(device):
            out = model(**{k: v.to(device) for k, v in batch.items()})
        n = len(batch["labels"])
        total, count = total + float(out.loss) * n, count + n
    model.train(was_training)
    return total / max(count, 1)


@torch.no_grad()
def predict(model, tokenizer, texts, batch_size=64, max_length=64, progress=False) -> np.ndarray:
    """Predicted class ids for ``texts``."""
    was_training = model.training
    model.eval()
    device, preds = model_device(model), []
    steps = batches(tokenizer, texts, None, batch_size, max_length)
    for batch in tqdm(steps, total=-(-len(texts) // batch_size), desc="predict", disable=not progress, leave=False):
        with autocast(device):
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        preds.append(logits.argmax(-1).cpu())
    model.train(was_training)
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)


def make_optimizer(params: list, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or bitsandbytes' paged 8-bit AdamW (QLoRA's choice: 8-bit states, paged to CPU memory
    when the GPU runs short)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}: adamw or paged_adamw_8bit")


def train(model, tokenizer, train_texts, train_labels, val_texts=None, val_labels=None, config=None) -> TrainResult:
    """Train the parameters that require grad with AdamW and a linear warm-up/decay schedule."""
    config = config or TrainConfig()
    seed_everything(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter: unfreeze something (the head, adapters) first")
    device = model_device(model)
    optimizer = make_optimizer(params, config)
    steps_per_epoch = -(-len(train_texts) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_fraction * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    eval_at = {
        e * steps_per_epoch + round(k * steps_per_epoch / config.evals_per_epoch)
        for e in range(config.epochs)
        for k in range(1, config.evals_per_epoch + 1)
    }
    result = TrainResult()
    model.train()
    bar = tqdm(total=total, desc="train", disable=not config.progress, leave=False)
    timed = 0.0
    with PeakMemory(device) as peak:
        for epoch in range(config.epochs):
            for batch in batches(
                tokenizer,
                train_texts,
                train_labels,
                config.batch_size,
                config.max_length,
                shuffle=True,
                seed=config.seed + epoch,
            ):
                start = time.perf_counter()
                with autocast(device):
                    loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                timed += time.perf_counter() - start
                result.steps += 1
                loss_value = loss.item()
                result.train_loss.append(loss_value)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}")
                if val_texts is not None and result.steps in eval_at:
                    vl = evaluate_loss(model, tokenizer, val_texts, val_labels, max_length=config.max_length)
                    result.val_loss.append((result.steps, vl))
    bar.close()
    model.eval()
    result.seconds_per_step = timed / max(result.steps, 1)
    result.peak_memory_mb, result.memory_kind = peak.peak_mb, peak.kind
    return result
