"""03_metrics: each plausible mistake loses its points and is named; right answers written differently pass.

``harness.MistakeTable`` packs the mistakes into mock students and grades them in one nbgrader run with a
student holding a correct but differently written answer for every graded name. Answers a student does not
touch keep the reference solution, which composes them (``binary_report`` calls ``precision``, ``recall``,
``f1`` and ``accuracy``; ``macro_f1`` the first three): no student holds a mistake in a helper together with
a mistake in a function whose cell runs that helper, and every point a mistake costs is listed.
"""

from __future__ import annotations

from harness import Mistake, MistakeTable, MistakeTests

A = "03_metrics"

# --- correct, but written differently from the reference --------------------------------------

RIGHT = {
    # Counting pairs with a Counter; NumPy arrays and string labels work through hashing.
    "confusion_matrix": '''
def confusion_matrix(y_true, y_pred, labels):
    """Rows actual, columns predicted."""
    from collections import Counter
    pairs = Counter(zip(list(y_true), list(y_pred)))
    return [[int(pairs[(actual, predicted)]) for predicted in labels] for actual in labels]
''',
    # The total through sum() of a tuple.
    "accuracy": '''
def accuracy(tp, fn, fp, tn):
    """Share of correct predictions."""
    correct = tp + tn
    return correct / sum((tp, fn, fp, tn))
''',
    # EAFP: catch the division by zero instead of testing first.
    "precision": '''
def precision(tp, fp):
    """TP / (TP + FP)."""
    try:
        return float(tp) / float(tp + fp)
    except ZeroDivisionError:
        return 0.0
''',
    # max(..., 1): the numerator is 0 whenever the denominator is.
    "recall": '''
def recall(tp, fn):
    """TP / (TP + FN)."""
    return tp / max(tp + fn, 1)
''',
    # The standard library's harmonic mean (which already returns 0 when a value is 0).
    "f1": '''
def f1(p, r):
    """Harmonic mean."""
    import statistics
    return statistics.harmonic_mean([p, r])
''',
    # Vectorised with NumPy boolean masks.
    "binary_report": '''
def binary_report(y_true, y_pred, positive=1):
    """Counts and metrics."""
    t = np.array([a == positive for a in y_true], dtype=bool)
    q = np.array([b == positive for b in y_pred], dtype=bool)
    tp, fn = int(np.sum(t & q)), int(np.sum(t & ~q))
    fp, tn = int(np.sum(~t & q)), int(np.sum(~t & ~q))
    p, r = precision(tp, fp), recall(tp, fn)
    return dict(tp=tp, fn=fn, fp=fp, tn=tn, accuracy=accuracy(tp, fn, fp, tn), precision=p, recall=r, f1=f1(p, r))
''',
    # From one multi-class matrix: per-class F1 = 2TP / (2TP + FP + FN), averaged with NumPy.
    "macro_f1": '''
def macro_f1(y_true, y_pred):
    """Unweighted mean of per-class F1."""
    y_true, y_pred = list(y_true), list(y_pred)
    classes = list(dict.fromkeys(y_true + y_pred))
    m = np.array(confusion_matrix(y_true, y_pred, classes), dtype=float)
    tp = np.diag(m)
    fp = m.sum(axis=0) - tp
    fn = m.sum(axis=1) - tp
    return float(np.mean(2 * tp / (2 * tp + fp + fn)))
''',
    # "not below" instead of ">=".
    "production_ready": '''
def production_ready(recall_value, min_recall):
    """Recall at least the minimum."""
    return not (recall_value < min_recall)
''',
    # Worst case first, boundaries through math.isclose.
    "verdict": '''
def verdict(baseline, candidate):
    """good / borderline / bad in absolute points."""
    lost = baseline - candidate
    if lost > 0.05 and not math.isclose(lost, 0.05, abs_tol=1e-9):
        return "bad"
    if lost > 0.02 and not math.isclose(lost, 0.02, abs_tol=1e-9):
        return "borderline"
    return "good"
''',
    # A regular expression for the whitespace, set.intersection for the rest.
    "find_leaks": '''
def find_leaks(train_texts, test_texts):
    """Normalised texts in both lists."""
    import re
    def canon(text):
        return re.sub(r"\\s+", " ", text).strip().lower()
    return set(map(canon, train_texts)).intersection(map(canon, test_texts))
''',
    # NumPy's argmin, which already keeps the first of equal values.
    "best_epoch": '''
def best_epoch(val_losses):
    """Earliest index of the lowest loss."""
    return int(np.argmin(val_losses))
''',
    # Python's own random module, sorted differences and np.percentile; the interval as NumPy floats.
    "paired_bootstrap_ci": '''
def paired_bootstrap_ci(y_true, pred_a, pred_b, metric, n_boot=1000, seed=0, level=0.95):
    """Paired percentile bootstrap."""
    import random
    draw = random.Random(seed)
    y, a, b = (np.array(v) for v in (y_true, pred_a, pred_b))
    n = len(y)
    samples = (np.array([draw.randrange(n) for _ in range(n)]) for _ in range(n_boot))
    diffs = sorted(metric(y[i], a[i]) - metric(y[i], b[i]) for i in samples)
    return tuple(np.percentile(diffs, [50 * (1 - level), 50 * (1 + level)]))
''',
    # The worse of the two drops decides; rounding to 9 decimals is the tolerance.
    "worth_it": '''
def worth_it(full, adapted):
    """The whole rule through the worse drop."""
    worst = max(round(full[k] - adapted[k], 9) for k in ("accuracy", "recall"))
    if worst > 0.05:
        return "bad"
    if worst <= 0.02 and adapted["memory_mb"] < full["memory_mb"]:
        return "good"
    return "borderline"
''',
}

# Each paired_bootstrap_ci and worth_it mistake differs from a right answer in one place: one template apiece.
BOOTSTRAP = """
def paired_bootstrap_ci(y_true, pred_a, pred_b, metric, n_boot=1000, seed=0, level=0.95):
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    rng = np.random.default_rng({seed})
    n = len(y_true)
    diffs = []
    for _ in range({n_boot}):
        idx = {indices}
        diffs.append({difference})
    tail = {tail}
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return float(low), float(high)
"""
BOOTSTRAP_RIGHT = {
    "seed": "seed",
    "n_boot": "n_boot",
    "indices": "rng.integers(0, n, size=n)",
    "difference": "metric(y_true[idx], pred_a[idx]) - metric(y_true[idx], pred_b[idx])",
    "tail": "(1 - level) / 2",
}
WORTH = """
def worth_it(full, adapted):
    drops = [{drop} for key in {keys}]
    if {either}(drop > 0.05 + {slack} for drop in drops):
        return "bad"
    if all(drop <= 0.02 + {slack} for drop in drops){memory}:
        return "good"
    return "borderline"
"""
WORTH_RIGHT = {
    "drop": "full[key] - adapted[key]",
    "keys": '("accuracy", "recall")',
    "either": "any",
    "slack": "1e-9",
    "memory": ' and adapted["memory_mb"] < full["memory_mb"]',
}


def bootstrap(**change: str) -> tuple[str, str]:
    return "paired_bootstrap_ci", BOOTSTRAP.format(**{**BOOTSTRAP_RIGHT, **change})


def worth(**change: str) -> tuple[str, str]:
    return "worth_it", WORTH.format(**{**WORTH_RIGHT, **change})


# --- wrong answers: (graded name, source) ------------------------------------------------------

WRONG = {
    "cm_transposed": (
        "confusion_matrix",
        """
def confusion_matrix(y_true, y_pred, labels):
    index = {label: i for i, label in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for a, p in zip(y_true, y_pred):
        m[index[p]][index[a]] += 1
    return m
""",
    ),
    "cm_sorted_labels": (
        "confusion_matrix",
        """
def confusion_matrix(y_true, y_pred, labels):
    labels = sorted(labels)
    index = {label: i for i, label in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for a, p in zip(y_true, y_pred):
        m[index[a]][index[p]] += 1
    return m
""",
    ),
    "cm_numpy": (
        "confusion_matrix",
        """
def confusion_matrix(y_true, y_pred, labels):
    index = {label: i for i, label in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=int)
    for a, p in zip(y_true, y_pred):
        m[index[a], index[p]] += 1
    return m
""",
    ),
    "acc_forgets_tn": (
        "accuracy",
        """
def accuracy(tp, fn, fp, tn):
    return tp / (tp + fn + fp + tn)
""",
    ),
    "acc_percent": (
        "accuracy",
        """
def accuracy(tp, fn, fp, tn):
    return 100 * (tp + tn) / (tp + fn + fp + tn)
""",
    ),
    "prec_no_guard": (
        "precision",
        """
def precision(tp, fp):
    return tp / (tp + fp)
""",
    ),
    "prec_guard_on_fp": (
        "precision",
        """
def precision(tp, fp):
    if fp == 0:
        return 0.0
    return tp / (tp + fp)
""",
    ),
    "prec_percent": (
        "precision",
        """
def precision(tp, fp):
    return 100 * tp / (tp + fp) if tp + fp else 0.0
""",
    ),
    "rec_one_when_empty": (
        "recall",
        """
def recall(tp, fn):
    return tp / (tp + fn) if tp + fn else 1.0
""",
    ),
    "rec_no_guard": (
        "recall",
        """
def recall(tp, fn):
    return tp / (tp + fn)
""",
    ),
    "f1_arithmetic": (
        "f1",
        """
def f1(p, r):
    return (p + r) / 2
""",
    ),
    "f1_no_guard": (
        "f1",
        """
def f1(p, r):
    return 2 * p * r / (p + r)
""",
    ),
    "report_swapped": (
        "binary_report",
        """
def binary_report(y_true, y_pred, positive=1):
    pairs = list(zip(y_true, y_pred))
    tp = sum(a == positive and b == positive for a, b in pairs)
    fn = sum(a == positive and b != positive for a, b in pairs)
    fp = sum(a != positive and b == positive for a, b in pairs)
    tn = sum(a != positive and b != positive for a, b in pairs)
    p = tp / (tp + fn) if tp + fn else 0.0
    r = tp / (tp + fp) if tp + fp else 0.0
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "accuracy": (tp + tn) / len(pairs),
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
""",
    ),
    "report_ignores_positive": (
        "binary_report",
        """
def binary_report(y_true, y_pred, positive=1):
    pairs = list(zip(y_true, y_pred))
    tp = sum(a == 1 and b == 1 for a, b in pairs)
    fn = sum(a == 1 and b != 1 for a, b in pairs)
    fp = sum(a != 1 and b == 1 for a, b in pairs)
    tn = sum(a != 1 and b != 1 for a, b in pairs)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "accuracy": (tp + tn) / len(pairs),
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
""",
    ),
    "report_fn_fp_swapped": (
        "binary_report",
        """
def binary_report(y_true, y_pred, positive=1):
    pairs = list(zip(y_true, y_pred))
    tp = sum(a == positive and b == positive for a, b in pairs)
    fp = sum(a == positive and b != positive for a, b in pairs)
    fn = sum(a != positive and b == positive for a, b in pairs)
    tn = sum(a != positive and b != positive for a, b in pairs)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "accuracy": (tp + tn) / len(pairs),
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
""",
    ),
    "macro_weighted": (
        "macro_f1",
        """
def macro_f1(y_true, y_pred):
    y_true, y_pred = list(y_true), list(y_pred)
    total = 0.0
    for c in set(y_true) | set(y_pred):
        tp = sum(a == c and b == c for a, b in zip(y_true, y_pred))
        fp = sum(a != c and b == c for a, b in zip(y_true, y_pred))
        fn = sum(a == c and b != c for a, b in zip(y_true, y_pred))
        total += (2 * tp / (2 * tp + fp + fn)) * y_true.count(c)
    return total / len(y_true)
""",
    ),
    "macro_true_classes_only": (
        "macro_f1",
        """
def macro_f1(y_true, y_pred):
    y_true, y_pred = list(y_true), list(y_pred)
    scores = []
    for c in set(y_true):
        tp = sum(a == c and b == c for a, b in zip(y_true, y_pred))
        fp = sum(a != c and b == c for a, b in zip(y_true, y_pred))
        fn = sum(a == c and b != c for a, b in zip(y_true, y_pred))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)
""",
    ),
    "macro_micro": (
        "macro_f1",
        """
def macro_f1(y_true, y_pred):
    y_true, y_pred = list(y_true), list(y_pred)
    return sum(a == b for a, b in zip(y_true, y_pred)) / len(y_true)
""",
    ),
    "ready_strict": (
        "production_ready",
        """
def production_ready(recall_value, min_recall):
    return recall_value > min_recall
""",
    ),
    "ready_string": (
        "production_ready",
        """
def production_ready(recall_value, min_recall):
    return "ready" if recall_value >= min_recall else "not ready"
""",
    ),
    "verdict_relative": (
        "verdict",
        """
def verdict(baseline, candidate):
    drop = (baseline - candidate) / baseline if baseline else 0.0
    if drop <= 0.02:
        return "good"
    if drop > 0.05:
        return "bad"
    return "borderline"
""",
    ),
    "verdict_no_tolerance": (
        "verdict",
        """
def verdict(baseline, candidate):
    drop = baseline - candidate
    if drop <= 0.02:
        return "good"
    if drop > 0.05:
        return "bad"
    return "borderline"
""",
    ),
    "verdict_swapped": (
        "verdict",
        """
def verdict(baseline, candidate):
    drop = candidate - baseline
    if drop <= 0.02 + 1e-9:
        return "good"
    if drop > 0.05 + 1e-9:
        return "bad"
    return "borderline"
""",
    ),
    "leaks_case_sensitive": (
        "find_leaks",
        """
def find_leaks(train_texts, test_texts):
    norm = lambda t: " ".join(t.split())
    return {norm(t) for t in train_texts} & {norm(t) for t in test_texts}
""",
    ),
    "leaks_no_collapse": (
        "find_leaks",
        """
def find_leaks(train_texts, test_texts):
    norm = lambda t: t.lower().strip()
    return {norm(t) for t in train_texts} & {norm(t) for t in test_texts}
""",
    ),
    "leaks_original_text": (
        "find_leaks",
        """
def find_leaks(train_texts, test_texts):
    norm = lambda t: " ".join(t.lower().split())
    seen = {norm(t) for t in train_texts}
    return {t for t in test_texts if norm(t) in seen}
""",
    ),
    "cm_sklearn": (
        "confusion_matrix",
        """
from sklearn.metrics import confusion_matrix as sk_confusion_matrix


def confusion_matrix(y_true, y_pred, labels):
    return sk_confusion_matrix(y_true, y_pred, labels=labels).tolist()
""",
    ),
    "macro_sklearn": (
        "macro_f1",
        """
def macro_f1(y_true, y_pred):
    import sklearn.metrics
    return float(sklearn.metrics.f1_score(y_true, y_pred, average="macro"))
""",
    ),
    "best_one_based": (
        "best_epoch",
        """
def best_epoch(val_losses):
    return int(np.argmin(val_losses)) + 1
""",
    ),
    "best_highest": (
        "best_epoch",
        """
def best_epoch(val_losses):
    return int(np.argmax(val_losses))
""",
    ),
    "best_latest_tie": (
        "best_epoch",
        """
def best_epoch(val_losses):
    best = 0
    for i, loss in enumerate(val_losses):
        if loss <= val_losses[best]:
            best = i
    return best
""",
    ),
    "best_returns_loss": (
        "best_epoch",
        """
def best_epoch(val_losses):
    return min(val_losses)
""",
    ),
    "best_last_epoch": (
        "best_epoch",
        """
def best_epoch(val_losses):
    return len(val_losses) - 1
""",
    ),
    "boot_unpaired": bootstrap(
        indices="rng.integers(0, n, size=n)\n        other = rng.integers(0, n, size=n)",
        difference="metric(y_true[idx], pred_a[idx]) - metric(y_true[other], pred_b[other])",
    ),
    "boot_no_replacement": bootstrap(indices="rng.permutation(n)"),
    "boot_b_minus_a": bootstrap(difference="metric(y_true[idx], pred_b[idx]) - metric(y_true[idx], pred_a[idx])"),
    "boot_unseeded": bootstrap(seed=""),
    "boot_ignores_level": bootstrap(tail="0.025"),
    "boot_tail_not_halved": bootstrap(tail="1 - level"),
    "boot_metric_swapped": bootstrap(difference="metric(pred_a[idx], y_true[idx]) - metric(pred_b[idx], y_true[idx])"),
    "boot_ignores_n_boot": bootstrap(n_boot="1000"),
    "worth_accuracy_only": worth(keys='("accuracy",)'),
    "worth_relative": worth(drop="(full[key] - adapted[key]) / full[key]"),
    "worth_both_for_bad": worth(either="all"),
    "worth_ignores_memory": worth(memory=""),
    "worth_memory_not_strict": worth(memory=' and adapted["memory_mb"] <= full["memory_mb"]'),
    "worth_no_tolerance": worth(slack="0"),
}

# mistake -> {every test cell it costs: words that cell"s error message must contain}
LOSES = {
    "cm_transposed": {"test_confusion_matrix": "transposed"},
    "cm_sorted_labels": {"test_confusion_matrix": "order of `labels`"},
    "cm_numpy": {"test_confusion_matrix": "list of lists"},
    "acc_forgets_tn": {
        "test_accuracy": "true negatives are right answers too",
        # The student's binary_report (the reference, untouched) reports the student's accuracy.
        "test_binary_report": "accuracy should be 0.500000",
    },
    "acc_percent": {"test_accuracy": "not a percentage", "test_binary_report": "accuracy should be 0.500000"},
    "prec_no_guard": {
        "test_precision": "divided by zero",
        "test_binary_report": "binary_report divided by zero",
        "test_macro_f1": "macro_f1 divided by zero",  # untaught: a bare ZeroDivisionError today
    },
    "prec_guard_on_fp": {
        "test_precision": "no false alarms at all is perfect precision",
        "test_binary_report": "precision should be 1.000000",
        "test_macro_f1": "per-class F1 is cat 2/3, dog 1/2, bird 0",
    },
    "prec_percent": {
        "test_precision": "not a percentage",
        "test_binary_report": "precision is TP / (TP + FP) = 90 / 105",
        "test_macro_f1": "per-class F1 is cat 2/3, dog 1/2, bird 0",
    },
    "rec_one_when_empty": {
        "test_recall": "recall(0, 0) must be 0.0",
        "test_binary_report": "recall should be 0.000000",
    },
    "rec_no_guard": {
        "test_recall": "divided by zero",
        "test_binary_report": "binary_report divided by zero",
        "test_macro_f1": "macro_f1 divided by zero",
    },
    "f1_arithmetic": {
        "test_f1": "harmonic mean",
        "test_binary_report": "f1 should be 0.828025",
        "test_macro_f1": "per-class F1 is cat 2/3, dog 1/2, bird 0",
    },
    "f1_no_guard": {
        "test_f1": "divided by zero",
        "test_binary_report": "binary_report divided by zero",
        "test_macro_f1": "macro_f1 divided by zero",  # untaught: a bare ZeroDivisionError today
    },
    "report_swapped": {"test_binary_report": "swapped"},
    "report_ignores_positive": {"test_binary_report": "every label other than positive="},
    "report_fn_fp_swapped": {"test_binary_report": "the running example's counts are TP=90, FN=10, FP=15, TN=85"},
    "macro_weighted": {"test_macro_f1": "weighting by class size"},
    "macro_true_classes_only": {"test_macro_f1": "only appears in the predictions"},
    "macro_micro": {"test_macro_f1": "plain mean"},
    "ready_strict": {"test_production_ready": "not >"},
    "ready_string": {"test_production_ready": "a bool"},
    "verdict_relative": {"test_verdict": "not relative to the baseline"},
    "verdict_no_tolerance": {"test_verdict": "tolerance of 1e-9"},
    "verdict_swapped": {"test_verdict": "baseline 0.90, candidate 0.87"},
    "leaks_case_sensitive": {"test_find_leaks": "ignore case"},
    "leaks_no_collapse": {"test_find_leaks": "differ only in case and spacing"},
    "leaks_original_text": {"test_find_leaks": "reported as 'delayed again'"},
    # Right values through the library the assignment asks students to rebuild: refused, read from the code.
    "cm_sklearn": {"test_confusion_matrix": "confusion_matrix uses sklearn.metrics.confusion_matrix"},
    "macro_sklearn": {"test_macro_f1": "macro_f1 uses import sklearn.metrics"},
    "best_one_based": {"test_best_epoch": "indexes count from 0"},
    "best_highest": {"test_best_epoch": "the highest validation loss"},
    "best_latest_tie": {"test_best_epoch": "keep the earliest"},
    "best_returns_loss": {"test_best_epoch": "the lowest loss itself"},
    "best_last_epoch": {"test_best_epoch": "returned the last epoch"},
    "boot_unpaired": {"test_paired_bootstrap_ci": "scored on the same indices (paired)"},
    "boot_no_replacement": {"test_paired_bootstrap_ci": "with replacement"},
    "boot_b_minus_a": {"test_paired_bootstrap_ci": "accuracy(a) - accuracy(b) = 0.05 should lie inside"},
    "boot_unseeded": {"test_paired_bootstrap_ci": "the same seed must give the same interval"},
    "boot_ignores_level": {"test_paired_bootstrap_ci": "from the 25th to the 75th percentile"},
    "boot_tail_not_halved": {"test_paired_bootstrap_ci": "cut (1 - level) / 2 from each end"},
    "boot_metric_swapped": {"test_paired_bootstrap_ci": "the true labels first"},
    "boot_ignores_n_boot": {"test_paired_bootstrap_ci": "draw exactly n_boot resamples"},
    "worth_accuracy_only": {"test_worth_it": "recall 4.5 points down"},
    "worth_relative": {"test_worth_it": "not 5.1% of 0.880"},
    "worth_both_for_bad": {"test_worth_it": "only one of accuracy and recall"},
    "worth_ignores_memory": {"test_worth_it": "use less memory than the baseline"},
    "worth_memory_not_strict": {"test_worth_it": "use less memory than the baseline"},
    "worth_no_tolerance": {"test_worth_it": "the 1e-9 tolerance"},
}

TABLE = MistakeTable(
    assignment=A,
    right=RIGHT,
    mistakes=tuple(Mistake(name, {WRONG[name][0]: WRONG[name][1]}, loses) for name, loses in LOSES.items()),
    uses={
        # The reference binary_report and macro_f1 (kept by every student who does not replace them) call these.
        "accuracy": ("test_binary_report",),
        "precision": ("test_binary_report", "test_macro_f1"),
        "recall": ("test_binary_report", "test_macro_f1"),
        "f1": ("test_binary_report", "test_macro_f1"),
    },
    untaught={
        ("prec_no_guard", "test_macro_f1"): "ZeroDivisionError (division by zero)",
        ("f1_no_guard", "test_macro_f1"): "ZeroDivisionError (float division by zero)",
    },
)


class TestMistakes(MistakeTests):
    table = TABLE

    def test_every_variant_is_in_the_table(self):
        assert sorted(LOSES) == sorted(WRONG)
