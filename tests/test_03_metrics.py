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
}

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
