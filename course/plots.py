"""The course's plots: confusion matrices, precision-recall curves, loss curves, bar charts.

Every function draws what the caller computed (it computes no metric itself), draws
on the given ``ax`` or a new figure, and returns the axes; call ``plt.show()`` after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

# Colours for the verdict of an adapted model against its baseline, from the Okabe-Ito palette
# (told apart with any common colour-vision deficiency; red against green would not be).
VERDICT_COLORS = {"good": "#0072B2", "borderline": "#E69F00", "bad": "#D55E00", "inconclusive": "#999999"}


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


def drop_intervals(
    intervals: Mapping[str, tuple[float, float]],
    drops: Mapping[str, float] | None = None,
    verdicts: Mapping[str, str] | None = None,
    ax=None,
    good: float = 0.02,
    bad: float = 0.05,
    title: str = "drop from the baseline, with its confidence interval",
):
    """One horizontal interval per model (its drop from the baseline, in points) over the rule's bands.

    ``intervals`` maps a name to ``(low, high)``; ``drops`` marks each measured drop; ``verdicts``
    colours each interval (``VERDICT_COLORS``) and is also written next to it, so the chart reads
    without colour. The bands "good", "borderline" and "bad" are labelled at the top.
    """
    names = list(intervals)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.8))
    lows = [float(intervals[n][0]) for n in names]
    highs = [float(intervals[n][1]) for n in names]
    left = min([*lows, -good]) - 0.01
    right = max([*highs, bad]) + 0.045
    ax.axvspan(left, good, color=VERDICT_COLORS["good"], alpha=0.08, lw=0)
    ax.axvspan(bad, right, color=VERDICT_COLORS["bad"], alpha=0.08, lw=0)
    for x, style in ((good, ":"), (bad, "-.")):
        ax.axvline(x, color="grey", ls=style, lw=1)
    for x, text in (((left + good) / 2, "good"), ((good + bad) / 2, "borderline"), ((bad + right) / 2, "bad")):
        ax.text(x, len(names) - 0.4, text, ha="center", va="bottom", fontsize=9)
    for y, name in enumerate(names):
        verdict = (verdicts or {}).get(name)
        color = VERDICT_COLORS.get(verdict, "black")
        ax.plot([lows[y], highs[y]], [y, y], color=color, lw=4, solid_capstyle="butt")
        if drops is not None and name in drops:
            ax.plot([float(drops[name])], [y], "k|", markersize=14, mew=2)
        if verdict:
            ax.annotate(verdict, (highs[y], y), textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) + 0.2)
    ax.set_xlim(left, right)
    ax.set_xlabel("drop (baseline minus model, in points of the metric)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.figure.tight_layout()
    return ax


def memory_chart(megabytes: Mapping[str, float], ax=None, title: str = "peak memory", **kwargs):
    """``bar_chart`` for memory in MB (shown in GB when the largest value is over 2048 MB)."""
    big = max(megabytes.values(), default=0) > 2048
    shown = {k: v / 1024 if big else v for k, v in megabytes.items()}
    kwargs.setdefault("fmt", "{:.2f}" if big else "{:.0f}")
    return bar_chart(shown, ax=ax, ylabel="GB" if big else "MB", title=title, **kwargs)


# --- diagrams and the weights NF4 is built for ------------------------------------------------------

OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00", "grey": "#999999"}


MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations")


def memory_breakdown(report: Mapping[str, Mapping[str, Mapping[str, float]]], ax=None, title: str = ""):
    """Stacked bars of what each arm holds at its peak, predicted beside measured: the QLoRA paper's memory
    figure, in GB. ``report`` is ``{arm: {component: {"predicted": bytes, "measured": bytes}}}`` with the
    components ``weights``, ``gradients``, ``optimizer`` and ``peak``; the top of each bar (the peak less
    the other three) is activations and the optimizer's temporaries."""
    arms = list(report)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2 * len(arms) + 2, 4))
    colors = dict(zip(MEMORY_PARTS, (OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["green"], OKABE_ITO["grey"])))
    for i, arm in enumerate(arms):
        for k, kind in enumerate(("predicted", "measured")):
            parts = {c: report[arm][c][kind] for c in MEMORY_PARTS[:3]}
            parts["activations"] = report[arm]["peak"][kind] - sum(parts.values())
            bottom, x = 0.0, i + (k - 0.5) * 0.38
            for c, value in parts.items():
                label = f"{c} (and temporaries)" if c == "activations" else c
                ax.bar(
                    x,
                    value / 1e9,
                    0.36,
                    bottom=bottom,
                    color=colors[c],
                    hatch="//" if k else None,
                    edgecolor="white",
                    label=label if i == 0 and k == 0 else None,
                )
                bottom += value / 1e9
            ax.annotate(
                f"{bottom:.2f}\n{kind[:4]}.",
                (x, bottom),
                ha="center",
                va="bottom",
                fontsize=7,
                textcoords="offset points",
                xytext=(0, 2),
            )
    ax.set_xticks(range(len(arms)), arms)
    ax.set_ylabel("GB at the peak")
    ax.set_title(title or "what each arm holds: predicted (plain) and measured (hatched)")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    ax.figure.tight_layout()
    return ax


def _box(ax, x, y, w, h, text, color, hatch=None):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(
        FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec="black", lw=1, alpha=0.35, hatch=hatch)
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, text=None):
    ax.annotate("", end, start, arrowprops={"arrowstyle": "->", "lw": 1.2})
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=8)


def lora_diagram(d_in: int = 384, d_out: int = 384, r: int = 8, alpha: float = 16.0, ax=None):
    """LoRA's side path: the frozen ``W`` (hatched) beside the trained ``B A``, added at the output.

    Frozen and trained parts differ by hatching and by the words on them, not by colour alone.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    _box(ax, 0.0, 1.6, 1.0, 0.8, f"x\n({d_in})", OKABE_ITO["grey"])
    _box(ax, 2.0, 2.4, 2.4, 1.0, f"W  frozen\n{d_out} x {d_in} = {d_out * d_in:,}", OKABE_ITO["blue"], hatch="//")
    _box(ax, 1.7, 0.3, 1.3, 1.0, f"A  trained\n{r} x {d_in}", OKABE_ITO["orange"])
    _box(ax, 3.4, 0.3, 1.3, 1.0, f"B  trained\n{d_out} x {r}\n(starts at 0)", OKABE_ITO["orange"])
    _box(ax, 5.3, 1.6, 0.6, 0.8, "+", OKABE_ITO["grey"])
    _box(ax, 6.5, 1.6, 1.0, 0.8, f"h\n({d_out})", OKABE_ITO["grey"])
    _arrow(ax, (1.0, 2.2), (2.0, 2.9))
    _arrow(ax, (1.0, 1.8), (1.7, 0.8))
    _arrow(ax, (3.0, 0.8), (3.4, 0.8))
    _arrow(ax, (4.4, 2.9), (5.3, 2.2))
    _arrow(ax, (4.7, 0.8), (5.3, 1.8), f"x {alpha / r:g} (alpha / r)")
    _arrow(ax, (5.9, 2.0), (6.5, 2.0))
    ax.text(
        3.75,
        -0.25,
        f"trained: r (d_in + d_out) = {r * (d_in + d_out):,} numbers instead of {d_in * d_out:,}",
        ha="center",
        fontsize=9,
    )
    ax.set_xlim(-0.2, 7.7)
    ax.set_ylim(-0.5, 3.6)
    ax.axis("off")
    ax.set_title("a LoRA layer: h = W x + (alpha / r) B A x")
    return ax


def qlora_diagram(block_size: int = 64, block_size2: int = 256, ax=None):
    """QLoRA's data flow in one layer: NF4 storage, dequantized for each multiply, plus a 16-bit adapter."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.6))
    stored = OKABE_ITO["blue"]
    _box(ax, 0.0, 2.5, 2.4, 0.8, "NF4 codes\n4 bits, 2 per byte", stored, hatch="//")
    _box(ax, 0.0, 1.5, 2.4, 0.8, f"1 absmax per {block_size}\n8 bits", stored, hatch="//")
    _box(ax, 0.0, 0.5, 2.4, 0.8, f"1 constant per {block_size2}\nabsmax: 32 bits", stored, hatch="//")
    _box(ax, 2.8, 1.5, 1.8, 0.9, "dequantize\n(every forward,\nevery layer)", OKABE_ITO["grey"])
    _box(ax, 5.3, 2.3, 1.7, 0.8, "W in bf16\n(temporary)", OKABE_ITO["green"])
    _box(ax, 5.3, 0.5, 1.7, 0.8, "B A  trained\n16-bit adapters", OKABE_ITO["orange"])
    _box(ax, 7.7, 1.5, 0.6, 0.8, "+", OKABE_ITO["grey"])
    _box(ax, 8.9, 1.5, 0.9, 0.8, "h", OKABE_ITO["grey"])
    for y in (2.9, 1.9, 0.9):
        _arrow(ax, (2.4, y), (2.8, 1.95))
    _arrow(ax, (4.6, 1.95), (5.3, 2.7))
    _arrow(ax, (7.0, 2.7), (7.7, 2.1), "W x")
    _arrow(ax, (7.0, 0.9), (7.7, 1.7), "(alpha/r) B A x")
    _arrow(ax, (8.3, 1.9), (8.9, 1.9))
    ax.text(1.2, 0.05, "stored: about 4.127 bits per weight", ha="center", fontsize=8)
    ax.set_xlim(-0.2, 10.0)
    ax.set_ylim(-0.2, 3.5)
    ax.axis("off")
    ax.set_title("one QLoRA layer: 4-bit storage, 16-bit compute, gradients only into B and A")
    return ax


def block_normalized(weights, block_size: int = 64) -> np.ndarray:
    """Each block of ``block_size`` consecutive weights divided by its own standard deviation (flat).

    If the weights of each block are normal with mean about 0, the result is about N(0, 1): the
    assumption behind NF4. Trailing weights that do not fill a block are left out.
    """
    flat = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=np.float64).ravel()
    blocks = flat[: flat.size // block_size * block_size].reshape(-1, block_size)
    std = blocks.std(axis=1, keepdims=True)
    return (blocks / np.where(std > 0, std, 1.0)).ravel()


def weight_histogram(weights, block_size: int = 64, ax=None, label: str = "weights", bins: int = 121):
    """Histogram of ``block_normalized(weights)`` against the N(0, 1) density, on a log scale for the tails."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    values = block_normalized(weights, block_size)
    edges = np.linspace(-5, 5, bins + 1)
    ax.hist(values, bins=edges, density=True, color=OKABE_ITO["blue"], alpha=0.6, label=f"{label} / block std")
    grid = np.linspace(-5, 5, 400)
    ax.plot(grid, np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi), color="black", lw=1.5, ls="--", label="N(0, 1)")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1)
    ax.set_xlabel(f"weight / standard deviation of its block of {block_size}")
    ax.set_ylabel("density")
    ax.set_title(f"{values.size:,} weights, normalised per block")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax
