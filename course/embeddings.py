"""Sentence embeddings from the course's MiniLM: mean-pooled, L2-normalised, optionally cached.

``embed(texts)`` runs the bundled all-MiniLM-L6-v2 encoder over ``texts`` and returns a
``(len(texts), 384)`` float32 array. Texts are batched by length, so short tweets are
not padded to the longest one; a few thousand tweets take seconds on a CPU.

With ``cache="embeddings.npz"`` the result is stored in that file (next to the notebook)
and read back on the next run when the texts, model and settings are the same.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .models import BUNDLED, load_encoder, load_tokenizer


def _cache_key(texts: Sequence[str], model_name: str, max_length: int, normalize: bool) -> str:
    digest = hashlib.sha256(f"{model_name}|{max_length}|{normalize}|{len(texts)}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _read_cache(path: Path, key: str) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                return stored["embeddings"].astype(np.float32)
    except (OSError, KeyError, ValueError):
        pass  # missing, stale or unreadable: recompute
    return None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The average of the token vectors, padding left out (how sentence-transformers pools MiniLM)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


@torch.inference_mode()
def embed(
    texts: Sequence[str],
    model=None,
    tokenizer=None,
    batch_size: int = 64,
    max_length: int = 64,
    normalize: bool = True,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
    model_name: str = BUNDLED,
) -> np.ndarray:
    """Sentence embeddings of ``texts``: an ``(n, hidden_size)`` float32 array, rows in ``texts`` order."""
    texts = [str(t) for t in texts]
    key = _cache_key(texts, str(model_name), max_length, normalize)
    if cache is not None:
        found = _read_cache(Path(cache), key)
        if found is not None:
            return found
    model = model if model is not None else load_encoder(model_name)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_name)
    device = next(model.parameters()).device
    # Shortest first: each batch is padded only to its own longest text.
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="embed", disable=not progress, leave=False):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = {k: v.to(device) for k, v in batch.items()}
        pooled = mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out[idx] = pooled.float().cpu().numpy()
    if cache is not None:
        path = Path(cache)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, key=np.array(key), embeddings=out)
        os.replace(tmp, path)
    return out
