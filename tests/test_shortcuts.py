"""The judge's static reading of forbidden shortcuts (``autograder.judge.shortcuts``): what it finds, what it leaves.

Graded end to end in the mistake tables (``cm_sklearn`` and ``macro_sklearn`` in test_03,
``levels_from_bitsandbytes`` in test_02); here each way of writing the shortcut, and each look-alike
that is not one, on its own.
"""

from __future__ import annotations

import pytest

from autograder.judge.shortcuts import REFUSED, refusals, refused_functions

METRICS = ("sklearn.metrics",)


@pytest.mark.parametrize(
    ("cells", "name", "used"),
    [
        (
            ["from sklearn.metrics import f1_score\n", "def f1(p, r):\n    return f1_score([1], [1])\n"],
            "f1",
            "sklearn.metrics.f1_score",
        ),
        (
            ["import sklearn.metrics as skm\ndef accuracy(*a):\n    return skm.accuracy_score(*a)\n"],
            "accuracy",
            "sklearn.metrics.accuracy_score",
        ),
        (
            ["import sklearn\ndef accuracy(*a):\n    return sklearn.metrics.accuracy_score(*a)\n"],
            "accuracy",
            "sklearn.metrics.accuracy_score",
        ),
        (
            ["def precision(tp, fp):\n    from sklearn import metrics\n    return 0.0\n"],
            "precision",
            "import sklearn.metrics",
        ),
        (
            ["def recall(tp, fn):\n    m = __import__('sklearn.metrics')\n    return 0.0\n"],
            "recall",
            "'sklearn.metrics'",
        ),
        (
            ["import importlib\ndef recall(tp, fn):\n    return importlib.import_module(name='sklearn.metrics')\n"],
            "recall",
            "'sklearn.metrics'",
        ),
        (
            ["from sklearn import metrics\nscore = metrics.f1_score\n", "def f1(p, r):\n    return score(p, r)\n"],
            "f1",
            "sklearn.metrics.f1_score",
        ),
        (
            ["class Report:\n    from sklearn.metrics import classification_report\n"],
            "Report",
            "import sklearn.metrics",
        ),
    ],
    ids=[
        "imported-name",
        "module-alias",
        "dotted-through-sklearn",
        "import-inside",
        "string",
        "import-module",
        "rebound",
        "class",
    ],
)
def test_each_way_of_writing_the_shortcut_is_found(cells, name, used):
    found = refused_functions(cells, METRICS)
    assert found[name] == (used, "sklearn.metrics")
    assert set(found) <= {name, "score"}  # `score = metrics.f1_score` is itself refused


# Six ways round the reading above, each of which once earned points unflagged.
@pytest.mark.parametrize(
    ("cells", "name", "used"),
    [
        (
            [
                "import sklearn.metrics as m\ndef _lib():\n    return m\n",
                "def f1(p, r):\n    return _lib().f1_score(p, r)\n",
            ],
            "f1",
            "_lib (which uses sklearn.metrics)",
        ),
        (
            ["%time x = 1\nfrom sklearn.metrics import f1_score\ndef f1(p, r):\n    return f1_score(p, r)\n"],
            "f1",
            "sklearn.metrics.f1_score",
        ),
        (
            ["%%capture\nfrom sklearn.metrics import f1_score\ndef f1(p, r):\n    return f1_score(p, r)\n"],
            "f1",
            "sklearn.metrics.f1_score",
        ),
        (
            ["# " + "x" * 100_001 + "\n", "def f1(p, r):\n    return 0.0\n"],
            "f1",
            "a cell over 100,000 characters",
        ),
        (
            [
                "if True:\n    def f1(p, r):\n        from sklearn.metrics import f1_score\n        return f1_score(p, r)\n"
            ],
            "f1",
            "import sklearn.metrics",
        ),
        (
            ["from sklearn.metrics import *\ndef f1(p, r):\n    return f1_score(p, r)\n"],
            "f1",
            "from sklearn.metrics import *",
        ),
        (
            ["from sklearn.metrics import confusion_matrix as _cm\nconfusion_matrix = _cm\n"],
            "confusion_matrix",
            "sklearn.metrics.confusion_matrix",
        ),
    ],
    ids=[
        "helper-returns-module",
        "magic-line",
        "cell-magic",
        "oversized-cell",
        "def-under-if",
        "star-import",
        "rebound-name",
    ],
)
def test_the_ways_round_a_first_reading_are_found(cells, name, used):
    found = refused_functions(cells, METRICS)
    assert name in found, found
    assert found[name][0].startswith(used.split(" (")[0]), found[name]


@pytest.mark.parametrize(
    "cells",
    [
        [
            "from sklearn.linear_model import LogisticRegression\nimport sklearn\ndef fit(x, y):\n    return sklearn.svm\n"
        ],
        # An import tried in a scratch cell, then the student's own function of the same name.
        [
            "from sklearn.metrics import confusion_matrix\n",
            "def confusion_matrix(y_true, y_pred, labels):\n    return [[0]]\n",
            "def binary_report(y_true, y_pred):\n    return confusion_matrix(y_true, y_pred, [1, 0])\n",
        ],
        ["def f1(p, r):\n    metrics = {'p': p}\n    return metrics['p']\n"],
        ["def f1(p, r):\n    return 2 * p * r / (p + r)  # checked against sklearn's f1_score\n"],
        [
            'def f1(p, r):\n    """Agrees with sklearn.metrics.f1_score."""\n    print("not sklearn.metrics")\n    return p\n'
        ],
        ["def broken(:\n    from sklearn.metrics import f1_score\n"],
        ["x = " + "-" * 19_000 + "1\n", "y = x" + ".b" * 9_000 + "\n"],  # too deep for the parser: skipped
    ],
    ids=[
        "other-sklearn-modules",
        "own-function-shadows-import",
        "local-named-metrics",
        "comment",
        "docstring-and-message",
        "syntax-error",
        "too-deep",
    ],
)
def test_look_alikes_are_left_alone(cells):
    assert refused_functions(cells, METRICS) == {}


def test_a_later_definition_without_the_shortcut_wins():
    cells = [
        "from sklearn.metrics import f1_score\ndef f1(p, r):\n    return f1_score(p, r)\n",
        "def f1(p, r):\n    return 2 * p * r / (p + r)\n",
    ]
    assert refused_functions(cells, METRICS) == {}


def test_bitsandbytes_in_an_nf4_answer():
    cells = ["import bitsandbytes.functional as F\ndef nf4_levels():\n    return F.get_4bit_type('nf4')\n"]
    assert refused_functions(cells, ("bitsandbytes",)) == {
        "nf4_levels": ("bitsandbytes.functional.get_4bit_type", "bitsandbytes")
    }


def test_the_message_names_the_function_the_module_and_what_to_do_instead():
    (message,) = refusals(
        ["import sklearn.metrics as m\ndef macro_f1(y, p):\n    return m.f1_score(y, p, average='macro')\n"],
        REFUSED["03_metrics"],
    ).values()
    assert "macro_f1 uses sklearn.metrics.f1_score" in message
    assert "without sklearn.metrics" in message and "your own accuracy, precision, recall and f1" in message
    assert refusals(["import sklearn.metrics\n"], {}) == {}


def test_a_graded_helper_passes_no_refusal_on():
    """nf4_quantize is judged with the grader's nf4_levels in place of the student's: a student's
    nf4_levels that calls bitsandbytes costs its own test, not nf4_quantize's."""
    cells = [
        "import bitsandbytes.functional as F\ndef nf4_levels():\n    return F.get_4bit_type('nf4')\n",
        "def nf4_quantize(x):\n    return (x - nf4_levels()).abs().argmin()\n",
    ]
    modules = ("bitsandbytes",)
    assert set(refused_functions(cells, modules, graded={"nf4_levels", "nf4_quantize"})) == {"nf4_levels"}
    assert set(refused_functions(cells, modules)) == {"nf4_levels", "nf4_quantize"}  # a plain helper would
