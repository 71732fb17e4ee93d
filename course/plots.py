"""The course's plots: confusion matrices, precision-recall curves, loss curves, bar charts.

Every function draws what the caller computed (it computes no metric itself), draws
on the given ``ax`` or a new figure, and returns the axes; call ``plt.show()`` after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

# Colours for the verdict of an adapted model against its baseline.
VERDICT_COLORS = {"good": "#2e7d32", "borderline": "#f9a825", "bad": "#c62828"}


def _is_single_matrix(matrices) -> bool:
    first = matrices[0] if len(matrices) else None
    return first is not None and np.ndim(first) == 1


def confusion_heatmap(
    matrices,
    labels: Sequence | Sequence[Sequence] | None = None,
    titles: str | Sequence[str] | None = None,
    normalize: str | None = None,
    cmap: str = "Blues",
    axes=None,
    size: float = 3.6,
):
    """One confusion matrix, or several side by side, as annotated heat-maps.

    ``matrices``: one matrix (rows actual, columns predicted) or a list of them.
    ``labels``: the class names in row order (one list for all, or one list per matrix).
    ``normalize``: ``None`` (counts), ``"true"`` (each row sums to 1: the recall of each
    class on the diagonal), ``"pred"`` (each column sums to 1: precision on the diagonal)
    or ``"all"``. Counts are always printed; shares are added when normalising.
    Returns the list of axes.
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError("normalize must be None, 'true', 'pred' or 'all'")
    mats = [matrices] if _is_single_matrix(matrices) else list(matrices)
    mats = [np.asarray(m, dtype=float) for m in mats]
    for m in mats:
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"a confusion matrix is square; got shape {m.shape}")
    if labels is None:
        label_sets = [list(range(len(m))) for m in mats]
    elif len(labels) and not isinstance(labels[0], str) and np.ndim(labels[0]) == 1:
        label_sets = [list(ls) for ls in labels]
    else:
        label_sets = [list(labels)] * len(mats)
    if isinstance(titles, str) or titles is None:
        titles = [titles] * len(mats)
    if axes is None:
        _, axes = plt.subplots(1, len(mats), figsize=(size * len(mats) + 0.6, size), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(axes))
    for ax, m, names, title in zip(axes, mats, label_sets, titles):
        with np.errstate(invalid="ignore", divide="ignore"):
            if normalize == "true":
                shown = m / m.sum(axis=1, keepdims=True)
            elif normalize == "pred":
                shown = m / m.sum(axis=0, keepdims=True)
            elif normalize == "all":
                shown = m / m.sum()
            else:
                shown = m
        shown = np.nan_to_num(shown)
        top = shown.max() if shown.size and shown.max() > 0 else 1.0
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=top)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                text = f"{int(m[i, j])}" if normalize is None else f"{int(m[i, j])}\n{shown[i, j]:.0%}"
                dark = shown[i, j] > 0.6 * top
                ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black", fontsize=10)
        ax.set_xticks(range(len(names)), [str(n) for n in names])
        ax.set_yticks(range(len(names)), [str(n) for n in names])
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        if title:
            ax.set_title(title)
    axes[0].figure.tight_layout()
    return axes


def precision_recall_plot(
    precision: Sequence[float],
    recall: Sequence[float],
    label: str | None = None,
    ax=None,
    points: Mapping[str, tuple[float, float]] | None = None,
    positive_share: float | None = None,
    title: str = "precision vs recall",
):
    """A precision-recall curve (recall on x), with optional marked operating points.

    ``points``: ``{name: (recall, precision)}``, for example the thresholds you would pick.
    ``positive_share``: the share of positives in the data, drawn as the no-skill line
    (a model that flags at random has that precision at every recall).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    order = np.argsort(np.asarray(recall, dtype=float), kind="stable")
    ax.plot(np.asarray(recall, dtype=float)[order], np.asarray(precision, dtype=float)[order], label=label, lw=2)
    if positive_share is not None:
        ax.axhline(positive_share, color="grey", ls="--", lw=1, label=f"no skill ({positive_share:.0%} positives)")
    for name, (r, p) in (points or {}).items():
        ax.plot([r], [p], "o", ms=8)
        ax.annotate(name, (r, p), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (share of actual positives found)")
    ax.set_ylabel("precision (share of alarms that are right)")
    ax.set_title(title)
    if label or positive_share is not None:
        ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return ax


def _xy(values, default_x=None) -> tuple[np.ndarray, np.ndarray]:
    """Values as (x, y): a list of numbers (x = 1, 2, ...) or of (x, y) pairs."""
    values = list(values)
    if values and np.ndim(values[0]) == 1:
        pairs = np.asarray(values, dtype=float)
        return pairs[:, 0], pairs[:, 1]
    y = np.asarray(values, dtype=float)
    x = np.asarray(default_x, dtype=float) if default_x is not None else np.arange(1, len(y) + 1, dtype=float)
    return x, y


def loss_curves(
    train_loss,
    val_loss=None,
    ax=None,
    smooth: int = 1,
    xlabel: str = "step",
    title: str = "training vs validation loss",
    mark_best: bool = True,
):
    """Training loss and validation loss on one plot; the lowest validation loss is marked.

    Each series is a list of numbers (one per step or epoch, x = 1, 2, ...) or of
    ``(x, loss)`` pairs (as ``course.train.TrainResult.val_loss``). ``smooth`` averages
    the training loss over that many points (noisy mini-batch losses).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    x, y = _xy(train_loss)
    if smooth > 1 and len(y) >= smooth:
        y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        x = x[smooth - 1 :]
    ax.plot(x, y, label="training" + (f" (mean of {smooth})" if smooth > 1 else ""), lw=2)
    if val_loss is not None and len(val_loss):
        vx, vy = _xy(val_loss)
        ax.plot(vx, vy, label="validation", lw=2, marker="o" if len(vy) <= 30 else None)
        if mark_best:
            best = int(np.argmin(vy))
            ax.axvline(vx[best], color="grey", ls=":", lw=1)
            ax.annotate(
                f"lowest validation loss\n{xlabel} {vx[best]:g}",
                (vx[best], vy[best]),
                textcoords="offset points",
                xytext=(8, 12),
                fontsize=9,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def bar_chart(
    values: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    ax=None,
    ylabel: str = "",
    title: str = "",
    colors: Mapping[str, str] | Sequence[str] | None = None,
    reference: float | None = None,
    reference_label: str = "baseline",
    fmt: str = "{:.3f}",
    ylim: tuple[float, float] | None = None,
):
    """Bars for ``{name: value}``, or grouped bars for ``{name: {series: value}}``.

    Metric comparisons (F1 of several models) and memory comparisons (MB per method)
    alike. ``colors`` maps names (or, grouped, series) to colours; ``reference`` draws a
    horizontal line, such as the baseline's score. Each bar carries its value.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(values) + 2), 3.8))
    names = list(values)
    grouped = bool(names) and isinstance(values[names[0]], Mapping)
    series = list(dict.fromkeys(s for n in names for s in values[n])) if grouped else [None]
    width = 0.8 / len(series)
    for k, s in enumerate(series):
        heights = [float(values[n].get(s, np.nan)) if grouped else float(values[n]) for n in names]
        xs = np.arange(len(names)) + (k - (len(series) - 1) / 2) * width
        if isinstance(colors, Mapping):
            color = colors.get(s) if grouped else [colors.get(n, f"C{i}") for i, n in enumerate(names)]
        elif colors is not None:
            color = colors[k] if grouped else list(colors)
        else:
            color = f"C{k}" if grouped else "C0"
        bars = ax.bar(xs, heights, width=width * 0.95, color=color, label=s)
        for bar, h in zip(bars, heights):
            if np.isfinite(h):
                ax.annotate(
                    fmt.format(h),
                    (bar.get_x() + bar.get_width() / 2, h),
                    ha="center",
                    va="bottom",
                    textcoords="offset points",
                    xytext=(0, 2),
                    fontsize=8,
                )
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label=reference_label)
    ax.set_xticks(
        range(len(names)),
        names,
        rotation=20 if max(map(len, map(str, names)), default=0) > 10 else 0,
        ha="right" if max(map(len, map(str, names)), default=0) > 10 else "center",
    )
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if grouped or reference is not None:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()
    return ax


def memory_chart(megabytes: Mapping[str, float], ax=None, title: str = "peak memory", **kwargs):
    """``bar_chart`` for memory in MB (shown in GB when the largest value is over 2048 MB)."""
    big = max(megabytes.values(), default=0) > 2048
    shown = {k: v / 1024 if big else v for k, v in megabytes.items()}
    kwargs.setdefault("fmt", "{:.2f}" if big else "{:.0f}")
    return bar_chart(shown, ax=ax, ylabel="GB" if big else "MB", title=title, **kwargs)
