"""The QLoRA lab's machinery: five fine-tuning arms on one split, one budget, one table.

Arms: ``frozen`` (only the classification head trains: the baseline to beat),
``full`` (every weight trains), ``lora`` (adapters on a full-precision base), ``qlora``
(bitsandbytes' 4-bit NF4 base with PEFT's adapters, QLoRA's whole recipe) and ``yours``
(the student's own ``QLoRALinear`` in every linear layer, through their ``inject_qlora``).
The configurations and the layer are the student's: the notebook passes its own
functions, and the headless run below reads them from a completed lab notebook.

While nbgrader executes the notebook the arms are not trained: the grader checks the
student's layer and configurations directly, and the lab shows the course's recorded CPU
run (``recorded/lab_cpu.json``) instead, so that a submission grades in seconds.

Headless run (prints the table, writes ``results.json`` and the plots)::

    python -m course.lab [--arms frozen,full,lora,qlora,yours] [--max-train N] [--seeds 0,1,2] [--out DIR] [--record]

With a GPU the lab repeats the run with several seeds (:func:`default_seeds`): one run's interval
covers the test examples' noise, the seeds show the training's own (initialisation, data order).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from . import data, memory, models
from .train import PeakMemory, TrainConfig, autocast, batches, predict, seed_everything, train

ARMS = ("frozen", "full", "lora", "qlora", "yours")
LAB = "05_qlora_lab"
HEAD = "classifier"  # the classification head of BERT-style models
# Learning rates found by a sweep on the CPU budget (see the lab notebook): adapters
# want a much larger step than full fine-tuning, and a lone head larger still.
LEARNING_RATES = {"frozen": 1e-2, "full": 1e-4, "lora": 5e-3, "qlora": 5e-3, "yours": 5e-3}
RECORDED = Path(__file__).parent / "recorded" / "lab_cpu.json"


@dataclass(frozen=True)
class Budget:
    """How much data and training every arm gets (the same for all, or the comparison is unfair)."""

    max_train: int | None  # None: the whole training split
    max_eval: int | None  # test examples scored (None: the whole test split)
    max_val: int | None  # validation examples for the loss curve
    epochs: int
    batch_size: int = 32
    max_length: int = 64
    label: str = ""

    def describe(self) -> str:
        train = "all" if self.max_train is None else self.max_train
        evals = "all" if self.max_eval is None else self.max_eval
        return (
            f"{self.label}: {train} training / {evals} test examples, {self.epochs} epoch(s), batch {self.batch_size}"
        )


def grading() -> bool:
    """Whether nbgrader is executing this kernel right now."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


# A few seconds per arm, for tests of the grading machinery itself (set by the test suite).
SMOKE_ENV = "COURSE_LAB_SMOKE"


def default_budget(device: torch.device | str | None = None, under_grader: bool | None = None) -> Budget:
    """The whole corpus on a GPU; a smaller budget on a CPU; a tiny one while grading on a CPU."""
    device = torch.device(device) if device is not None else models.default_device()
    under_grader = grading() if under_grader is None else under_grader
    if os.environ.get(SMOKE_ENV):
        return Budget(max_train=48, max_eval=48, max_val=16, epochs=1, batch_size=16, label="smoke test")
    if device.type == "cuda":
        return Budget(max_train=None, max_eval=None, max_val=None, epochs=2, batch_size=64, label="GPU")
    if under_grader:
        return Budget(max_train=400, max_eval=300, max_val=100, epochs=1, batch_size=16, label="CPU, grading")
    return Budget(max_train=1200, max_eval=1000, max_val=300, epochs=2, label="CPU")


@dataclass
class ArmResult:
    """Everything the lab's table and plots show for one arm."""

    arm: str
    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    trainable_params: int
    total_params: int
    peak_memory_mb: float  # what the arm added at its peak: weights, gradients, optimizer, activations
    weight_memory_mb: float  # the model's tensors as stored (4-bit codes packed, with their constants)
    weight_floor_mb: float  # the theoretical footprint of its parameter inventory
    seconds_per_step: float
    steps: int
    memory_kind: str
    label_names: list[str]
    confusion: list[list[int]]
    labels: list[int] = field(repr=False)
    predictions: list[int] = field(repr=False)
    train_loss: list[float] = field(repr=False)
    val_loss: list[tuple[int, float]] = field(repr=False)

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / self.total_params


def trainable_names(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def build_model(
    arm: str,
    num_labels: int,
    device: torch.device,
    bnb_config=None,
    lora_config=None,
    name: str = models.BUNDLED,
    inject_qlora: Callable | None = None,
):
    """The model of one arm, ready to train."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; the arms are {', '.join(ARMS)}")
    if arm in ("lora", "qlora") and lora_config is None:
        raise ValueError(f"the {arm} arm needs a LoRA configuration (make_lora_config)")
    if arm == "qlora" and bnb_config is None:
        raise ValueError("the qlora arm needs a bitsandbytes configuration (make_bnb_config)")
    if arm == "yours" and inject_qlora is None:
        raise ValueError("the yours arm needs your inject_qlora (and the QLoRALinear it uses)")
    model = models.load_classifier(
        name, num_labels=num_labels, device=device, quantization_config=bnb_config if arm == "qlora" else None
    )
    if arm == "frozen":
        for pname, p in model.named_parameters():
            p.requires_grad = pname.split(".")[0] == HEAD
    elif arm in ("lora", "qlora"):
        from peft import get_peft_model, prepare_model_for_kbit_training

        if arm == "qlora":
            # QLoRA's recipe: norms and the head in 32 bits, inputs that carry gradients, and (on a GPU)
            # gradient checkpointing, which recomputes activations in the backward pass instead of storing
            # them: it trades time for memory, and a CPU kernel is short of time, not memory.
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=device.type == "cuda",
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        with models.quiet():
            model = get_peft_model(model, lora_config)
    elif arm == "yours":  # the student's own 4-bit layer, everywhere
        with torch.no_grad():
            model = inject_qlora(model.cpu()).to(device)
    return model


def _limit(split: data.Split, n: int | None, seed: int) -> data.Split:
    return split if n is None or n >= len(split) else split.sample(n, seed=seed)


def run_arm(
    arm: str,
    splits: data.Splits,
    budget: Budget,
    bnb_config=None,
    lora_config=None,
    device: torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    keep_model: bool = False,
    inject_qlora: Callable | None = None,
):
    """Train and evaluate one arm; returns ``ArmResult`` (and the model with ``keep_model``)."""
    device = device or models.default_device()
    train_split = _limit(splits.train, budget.max_train, seed)
    val_split = _limit(splits.validation, budget.max_val, seed)
    test_split = _limit(splits.test, budget.max_eval, seed)
    names = list(splits.label_names)
    seed_everything(seed)
    tokenizer = models.load_tokenizer()
    config = TrainConfig(
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=LEARNING_RATES[arm],
        max_length=budget.max_length,
        seed=seed,
        progress=progress,
        # QLoRA's paged optimizer moves its 8-bit states to CPU memory when the GPU runs short; it needs
        # CUDA, so a CPU kernel uses plain AdamW for every arm.
        optimizer="paged_adamw_8bit" if arm == "qlora" and device.type == "cuda" else "adamw",
    )
    # Measured from before the model loads, so weights, gradients, optimizer states and
    # activations all count, and nothing left over from an earlier arm does.
    with PeakMemory(device) as peak:
        model = build_model(arm, len(names), device, bnb_config, lora_config, inject_qlora=inject_qlora)
        history = train(
            model, tokenizer, train_split.texts, train_split.labels, val_split.texts, val_split.labels, config
        )
    inventory = memory.parameter_inventory(model)
    preds = predict(model, tokenizer, test_split.texts, max_length=budget.max_length, progress=progress)
    y = test_split.labels
    recalls = recall_score(y, preds, labels=range(len(names)), average=None, zero_division=0)
    result = ArmResult(
        arm=arm,
        accuracy=float(accuracy_score(y, preds)),
        macro_f1=float(f1_score(y, preds, average="macro")),
        per_class_recall={n: float(r) for n, r in zip(names, recalls)},
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_params=sum(e.n_params for e in inventory),
        peak_memory_mb=peak.added_mb,
        weight_memory_mb=memory.measured_footprint(model)["total"] / 2**20,
        weight_floor_mb=memory.floor_bytes(inventory) / 2**20,
        seconds_per_step=history.seconds_per_step,
        steps=history.steps,
        memory_kind=peak.kind,
        label_names=names,
        confusion=sk_confusion_matrix(y, preds, labels=range(len(names))).tolist(),
        labels=[int(v) for v in y],
        predictions=[int(v) for v in preds],
        train_loss=history.train_loss,
        val_loss=history.val_loss,
    )
    if keep_model:
        return result, model
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def run_arms(
    splits: data.Splits,
    make_bnb_config: Callable | None,
    make_lora_config: Callable | None,
    arms=ARMS,
    budget: Budget | None = None,
    device: torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    keep: tuple[str, ...] = (),
    inject_qlora: Callable | None = None,
):
    """Every arm on the same split and budget: ``({arm: ArmResult}, {arm: model for arms in keep})``.

    While nbgrader executes the notebook nothing trains: the recorded CPU run comes back instead
    (and no models), since the grader checks the student's code directly.
    """
    device = device or models.default_device()
    budget = budget or default_budget(device)
    if grading() and not os.environ.get(SMOKE_ENV):
        print("Graded run: the arms are not retrained; these are the course's recorded CPU results.")
        return recorded_results(arms), {}
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    bnb_config = make_bnb_config(compute_dtype) if "qlora" in arms else None
    lora_config = make_lora_config() if {"lora", "qlora"} & set(arms) else None
    results, kept = {}, {}
    for arm in arms:
        if progress:
            print(f"[{arm}] training on {budget.describe()}", flush=True)
        out = run_arm(arm, splits, budget, bnb_config, lora_config, device, seed, progress, arm in keep, inject_qlora)
        if arm in keep:
            out, kept[arm] = out
        results[arm] = out
    return results, kept


def saved_for_backward(
    splits: data.Splits,
    make_bnb_config: Callable,
    make_lora_config: Callable,
    inject_qlora: Callable | None = None,
    budget: Budget | None = None,
    device: torch.device | None = None,
) -> dict[str, int]:
    """Bytes autograd saves for the backward pass of one training batch, per arm, parameters excluded:
    the activations, which set the peak of a model as small as MiniLM. ``lora, dropout 0`` is the
    ``lora`` arm with ``make_lora_config``'s dropout set to 0, like the ``yours`` arm's layer."""
    device = device or models.default_device()
    budget = budget or default_budget(device)
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    train_split = splits.train.sample(budget.batch_size, seed=0)
    batch = next(
        batches(
            models.load_tokenizer(),
            train_split.texts,
            train_split.labels,
            batch_size=budget.batch_size,
            max_length=budget.max_length,
        )
    )
    lora_config = make_lora_config()
    without_dropout = copy.deepcopy(lora_config)
    without_dropout.lora_dropout = 0.0
    variants = {
        "full": ("full", None),
        "lora": ("lora", lora_config),
        "lora, dropout 0": ("lora", without_dropout),
        "qlora": ("qlora", lora_config),
        "yours": ("yours", None),
    }
    out = {}
    for label, (arm, config) in variants.items():
        if arm == "yours" and inject_qlora is None:
            continue
        seed_everything(0)
        bnb_config = make_bnb_config(compute_dtype) if arm == "qlora" else None
        model = build_model(arm, len(splits.label_names), device, bnb_config, config, inject_qlora=inject_qlora)
        model.train()
        saved = memory.SavedForBackward(model)
        with saved, autocast(device):
            model(**{k: v.to(device) for k, v in batch.items()})
        out[label] = saved.nbytes
        del model, saved
        gc.collect()
    return out


def default_seeds(device: torch.device | str | None = None) -> tuple[int, ...]:
    """Three seeds on a GPU (a few minutes each); one on a CPU, where one run takes about 9 minutes."""
    device = torch.device(device) if device is not None else models.default_device()
    return (0, 1, 2) if device.type == "cuda" else (0,)


def seed_spread(runs: list[dict[str, ArmResult]], arm: str, base: str = "full") -> dict:
    """The macro-F1 drop of ``arm`` against ``base`` in each seed's run, with its mean, lowest and highest."""
    if not runs:
        raise ValueError("seed_spread needs at least one run")
    missing = [i for i, run in enumerate(runs) if arm not in run or base not in run]
    if missing:
        raise ValueError(f"run(s) {missing} lack the {arm!r} or {base!r} arm")
    drops = [run[base].macro_f1 - run[arm].macro_f1 for run in runs]
    return {"drops": drops, "mean": sum(drops) / len(drops), "low": min(drops), "high": max(drops)}


def seeds_table(runs: list[dict[str, ArmResult]], seeds: list[int] | tuple[int, ...], base: str = "full") -> str:
    """One line per arm: its macro-F1 in each seed's run and its drop against ``base`` (mean and range)."""
    if len(runs) != len(seeds):
        raise ValueError(f"{len(runs)} runs for {len(seeds)} seeds")
    lines = [
        f"{'arm':<7} "
        + " ".join(f"{'seed ' + str(s):>8}" for s in seeds)
        + f"   macro-F1 drop vs {base}: mean [low, high]"
    ]
    for arm in runs[0]:
        f1s = " ".join(f"{run[arm].macro_f1:8.3f}" for run in runs)
        if arm == base:
            lines.append(f"{arm:<7} {f1s}")
            continue
        spread = seed_spread(runs, arm, base)
        lines.append(
            f"{arm:<7} {f1s}   {100 * spread['mean']:+.1f} [{100 * spread['low']:+.1f}, {100 * spread['high']:+.1f}] points"
        )
    return "\n".join(lines)


def recorded_results(arms=ARMS, path: Path = RECORDED) -> dict[str, ArmResult]:
    """The arms of the course's recorded CPU run (``python -m course.lab --record``)."""
    saved = json.loads(Path(path).read_text(encoding="utf-8"))["arms"]
    fields = set(ArmResult.__dataclass_fields__)
    out = {}
    for arm in arms:
        row = {k: v for k, v in saved[arm].items() if k in fields}
        row["val_loss"] = [tuple(p) for p in row["val_loss"]]
        out[arm] = ArmResult(**row)
    return out


# --- the verdict, with its noise -----------------------------------------------------------


def macro_recall(result: ArmResult) -> float:
    """The unweighted mean of the per-class recalls."""
    return sum(result.per_class_recall.values()) / len(result.per_class_recall)


def rule_inputs(result: ArmResult, memory: str = "peak_memory_mb") -> dict:
    """What ``worth_it`` reads from an arm: accuracy, macro recall and a memory figure in MB."""
    return {"accuracy": result.accuracy, "recall": macro_recall(result), "memory_mb": getattr(result, memory)}


def noise_verdict(point: str, interval: tuple[float, float], good: float = 0.02, bad: float = 0.05) -> str:
    """``point`` (the rule's verdict) unless the interval of the drop crosses one of the rule's boundaries,
    in which case the data cannot tell: ``"inconclusive"``."""
    low, high = interval
    if any(low < edge < high for edge in (good, bad)):
        return "inconclusive"
    return point


# --- reporting ----------------------------------------------------------------------------

COLUMNS = (
    ("accuracy", "accuracy", "{:.3f}"),
    ("macro-F1", "macro_f1", "{:.3f}"),
    ("trainable", "trainable_params", "{:,}"),
    ("share", "trainable_share", "{:.2%}"),
    ("peak MB", "peak_memory_mb", "{:.0f}"),
    ("weights MB", "weight_memory_mb", "{:.1f}"),
    ("floor MB", "weight_floor_mb", "{:.1f}"),
    ("s/step", "seconds_per_step", "{:.3f}"),
)


def results_table(results: dict[str, ArmResult]) -> str:
    """The comparison as a fixed-width text table, one row per arm."""
    any_result = next(iter(results.values()))
    recall_cols = [f"recall {n}" for n in any_result.label_names]
    header = ["arm", *(c[0] for c in COLUMNS), *recall_cols]
    rows = []
    for r in results.values():
        cells = [r.arm, *(fmt.format(getattr(r, attr)) for _, attr, fmt in COLUMNS)]
        cells += [f"{r.per_class_recall[n]:.3f}" for n in r.label_names]
        rows.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def results_json(results: dict[str, ArmResult], budget: Budget, device: torch.device) -> dict:
    arms = {}
    for arm, r in results.items():
        row = asdict(r)
        row["trainable_share"] = r.trainable_share
        arms[arm] = row
    return {"budget": asdict(budget), "device": str(device), "arms": arms}


def save_plots(results: dict[str, ArmResult], out: Path) -> list[Path]:
    """Confusion matrices, loss curves and memory/F1 bars as PNG files in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plots

    out.mkdir(parents=True, exist_ok=True)
    written = []
    rs = list(results.values())
    plots.confusion_heatmap([r.confusion for r in rs], labels=rs[0].label_names, titles=[r.arm for r in rs])
    written.append(out / "confusion.png")
    plt.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close("all")

    fig, axes = plt.subplots(1, len(rs), figsize=(4 * len(rs), 3.2), squeeze=False)
    for ax, r in zip(axes[0], rs):
        plots.loss_curves(r.train_loss, r.val_loss, ax=ax, title=r.arm)
    written.append(out / "loss.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close("all")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    plots.bar_chart({r.arm: r.macro_f1 for r in rs}, ax=left, title="macro-F1 on the test split")
    plots.memory_chart({r.arm: r.peak_memory_mb for r in rs}, ax=right, title=f"peak memory ({rs[0].memory_kind})")
    written.append(out / "f1_memory.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close("all")
    return written


# --- the student's configurations, read from a completed notebook --------------------------


NOTEBOOK_NAMES = ("make_bnb_config", "make_lora_config", "QLoRALinear", "inject_qlora", "lab_verdict", "lab_worth_it")


def functions_from_notebook(path: Path, names: tuple[str, ...]) -> dict[str, Callable]:
    """Run the lab notebook's import cell and the answer cells defining ``names``."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    namespace: dict = {}
    wanted = {"imports", "nf4_table", *names}
    for cell in nb.get("cells", []):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("cell_type") == "code" and grade_id in wanted:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            exec(compile(source, f"{path}:{grade_id}", "exec"), namespace)
    missing = [n for n in names if not callable(namespace.get(n))]
    if missing:
        raise RuntimeError(f"{path} defines no {', '.join(missing)}")
    return {n: namespace[n] for n in names}


def default_notebook(start: Path | None = None) -> Path:
    """The instructor's lab notebook, found from the working directory upwards."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        candidate = folder / "source" / LAB / f"{LAB}.ipynb"
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        f"no source/{LAB}/{LAB}.ipynb here or above: pass --notebook with a completed copy of the lab notebook"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m course.lab", description=__doc__.splitlines()[0])
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ",".join(ARMS))
    p.add_argument("--max-train", type=int, help="training examples per arm (default: the device's budget)")
    p.add_argument("--epochs", type=int, help="epochs per arm (default: the device's budget)")
    p.add_argument("--out", default="lab-results", help="folder for results.json and the plots")
    p.add_argument("--notebook", type=Path, help="a completed lab notebook (default: source/05_qlora_lab)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="the split's seed, and the first run's")
    p.add_argument(
        "--seeds", help="comma-separated training seeds to repeat the run with (default: 3 on a GPU, 1 on a CPU)"
    )
    p.add_argument(
        "--record", action="store_true", help=f"also save the results as the graded run's record ({RECORDED})"
    )
    args = p.parse_args(argv)

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        p.error(f"unknown arm(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ARMS)}")
    device = torch.device(args.device) if args.device else models.default_device()
    budget = default_budget(device, under_grader=False)
    if args.max_train is not None:
        budget = replace(budget, max_train=args.max_train, label=budget.label + f", --max-train {args.max_train}")
    if args.epochs is not None:
        budget = replace(budget, epochs=args.epochs)
    try:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x.strip()) if args.seeds else None
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, not {args.seeds!r}")
    if seeds == ():
        p.error("--seeds needs at least one seed")
    seeds = seeds or tuple(args.seed + i for i in range(len(default_seeds(device))))
    try:
        fns = functions_from_notebook(args.notebook or default_notebook(), NOTEBOOK_NAMES)
        splits = data.tweet_splits(seed=args.seed)
    except (RuntimeError, OSError, SyntaxError) as exc:
        print(f"course.lab: error: {exc}", file=sys.stderr)
        return 2
    runs = []
    for seed in seeds:
        if len(seeds) > 1:
            print(f"\n== seed {seed} ==", flush=True)
        results, _ = run_arms(
            splits,
            fns["make_bnb_config"],
            fns["make_lora_config"],
            arms,
            budget,
            device,
            seed,
            progress=True,
            inject_qlora=fns["inject_qlora"],
        )
        runs.append(results)
    results = runs[0]
    print(f"\n{budget.describe()} on {device}, seed {seeds[0]}\n")
    print(results_table(results))
    if len(runs) > 1 and "full" in results:
        print(f"\nAcross seeds {', '.join(map(str, seeds))}:\n{seeds_table(runs, seeds)}")
    for arm in ("qlora", "yours"):
        if "full" in results and arm in results:
            full, other = results["full"], results[arm]
            verdict = fns["lab_worth_it"](rule_inputs(full), rule_inputs(other))
            print(
                f"\n{arm} vs full fine-tuning: accuracy {100 * (other.accuracy - full.accuracy):+.1f} points, "
                f"macro recall {100 * (macro_recall(other) - macro_recall(full)):+.1f} points, peak memory "
                f"{full.peak_memory_mb:.0f} -> {other.peak_memory_mb:.0f} MB -> {verdict}"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = results_json(results, budget, device)
    if len(runs) > 1:
        saved["macro_f1_by_seed"] = {
            str(seed): {a: r.macro_f1 for a, r in run.items()} for seed, run in zip(seeds, runs)
        }
    record = json.dumps(saved, indent=1)
    (out / "results.json").write_text(record)
    if args.record:
        RECORDED.parent.mkdir(parents=True, exist_ok=True)
        RECORDED.write_text(record + "\n")
        print(f"recorded as {RECORDED}")
    written = save_plots(results, out)
    print(f"\nwrote {out / 'results.json'} and {', '.join(p.name for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
