"""The integrity probes and the sandbox, on tiny notebooks run directly (no course, no gradebook).

The kernel tests need bubblewrap: without it they fail (``sandbox_ready``) and say to run ./setup.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.execute.guarded import GuardedExecute
from autograder.execute.probes import differences, watched_modules

# The tests below that start a kernel: slow, and only meaningful inside the sandbox.
kernel_test = pytest.mark.usefixtures("sandbox_ready")


def _test_cell(source: str, grade_id: str = "t1") -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": grade_id,
        "points": 1,
        "schema_version": 3,
    }
    return cell


def _run(tmp_path, *cells) -> tuple[nbformat.NotebookNode, dict]:
    """Run the cells in a sandboxed, guarded kernel: the executed notebook and its integrity report."""
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    ex = GuardedExecute(timeout=60, sandbox=True, report_file=str(tmp_path / "report.json"))
    (tmp_path / "data.txt").write_text("data")
    ex.preprocess(nb, {"metadata": {"path": str(tmp_path)}, "unique_key": "t"})
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == {"t"} and report["t"]["sandbox"] is True, report
    return nb, report["t"]


def _errors(cell) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]


def test_watched_modules_follow_the_test_cells_imports():
    found = watched_modules(["import torch.nn.functional as F\nfrom sklearn.metrics import f1_score", "%%time\nx"])
    assert {"torch", "torch.nn", "torch.nn.functional", "sklearn", "sklearn.metrics"} <= set(found)
    assert {"builtins", "math", "numpy", "autograder.compare"} <= set(found)


# A probe's report of a pristine kernel, as tiny as the format allows.
PRISTINE = {
    "trace": [True] * 4,
    "modules": {"math": [1, {"isclose": 2}]},
    "sys": {"displayhook": 3},
    "import_hooks": [4],
    "shell": {
        "id": 1,
        "cleanup": [],
        "post": [],
        "ast": [],
        "manager": 5,
        "events": {"pre_run_cell": []},
        "methods": {"run_cell": [False, 7]},
        "kernel": {},
    },
    "shadows": [],
}


def test_differences_name_each_kind_of_change():
    base = PRISTINE
    same = {**base}
    assert differences(base, same) == []
    changed = {
        **base,
        "trace": [False, True, True, True],
        "modules": {"math": [1, {"isclose": 9}]},
        "shell": {
            **base["shell"],
            "post": [11],
            "events": {"pre_run_cell": [[12, False]]},
            "methods": {"run_cell": [True, 7]},
        },
        "shadows": ["len"],
    }
    said = " ".join(differences(base, changed))
    for words in ("tracing", "math.isclose", "input transformer", "'pre_run_cell'", "run_cell", "len"):
        assert words in said, words
    # matplotlib's own post_execute callback (inline figures) and a library's new finder are fine.
    benign = {**base, "import_hooks": [4, 13], "shell": {**base["shell"], "events": {"pre_run_cell": [[14, True]]}}}
    assert differences(base, benign) == []


@pytest.mark.slow
@kernel_test
def test_a_patched_torch_is_caught_before_the_test_runs(tmp_path):
    nb, report = _run(
        tmp_path,
        new_code_cell("import torch\ntorch.allclose = lambda *a, **k: True"),
        _test_cell("import torch\nassert torch.allclose(torch.zeros(1), torch.ones(1)), 'tensors differ'"),
    )
    assert _errors(nb.cells[0]) == []
    errors = _errors(nb.cells[1])
    assert errors and errors[-1].startswith("AutograderTamperError") and "torch.allclose" in errors[-1]
    assert "earns no points" in errors[-1] and "flagged" in errors[-1]
    assert list(report["tampered"]) == ["t1"], report
    assert any("torch.allclose" in why for why in report["tampered"]["t1"]), report


@pytest.mark.slow
@kernel_test
def test_an_honest_failure_is_just_a_failure(tmp_path):
    nb, report = _run(
        tmp_path,
        new_code_cell("import torch\nx = torch.zeros(1)"),
        _test_cell("import torch\nassert torch.allclose(x, torch.ones(1)), 'tensors differ'"),
        _test_cell("assert open('data.txt').read() == 'data'\nprint('read the data file')", "t2"),
    )
    assert _errors(nb.cells[1]) == ["AssertionError: tensors differ"]
    assert _errors(nb.cells[2]) == []
    assert "".join(o.get("text", "") for o in nb.cells[2].outputs).strip() == "read the data file"
    assert report["tampered"] == {} and report["events"] == [], report


@pytest.mark.slow
@kernel_test
def test_the_kernel_cannot_see_the_notebook_or_its_folder(tmp_path):
    (tmp_path / "secret.ipynb").write_text("{}")
    nb, report = _run(
        tmp_path,
        new_code_cell(f"import os\nlisting = sorted(os.listdir('.'))\nparent = os.path.exists('{tmp_path}')"),
        _test_cell(
            "assert listing == ['data.txt'], listing\n"
            f"assert os.getcwd() != '{tmp_path}'\n"
            "assert not parent, 'the kernel sees the folder of the notebook'"
        ),
    )
    assert _errors(nb.cells[0]) == []
    assert _errors(nb.cells[1]) == []
    assert report["tampered"] == {}


def test_a_judged_test_is_probed_once_after_the_judge_not_before(monkeypatch):
    """Judged, the test never enters the kernel, so nothing is guarded by probing before it; the probe
    after it still compares the kernel with its first state, so earlier tampering is flagged."""
    calls: list[str] = []
    states = iter([PRISTINE, {**PRISTINE, "sys": {"displayhook": 8}}])

    class Judge:
        def verdict(self, source, cell):
            calls.append(f"judge {cell}")
            return None

    ex = GuardedExecute(timeout=60, sandbox=False)
    ex._baseline, ex._dead, ex._judge, ex._serving = PRISTINE, None, Judge(), None
    ex._judged_tests, ex._cells, ex._events, ex._verdicts = {"t1": "pass", "t2": "pass"}, {}, [], {}
    monkeypatch.setattr(ex, "_probe", lambda: calls.append("probe") or next(states))
    first, _ = ex.preprocess_cell(_test_cell("assert True", "t1"), {}, 0)
    second, _ = ex.preprocess_cell(_test_cell("assert True", "t2"), {}, 1)
    assert calls == ["judge t1", "probe", "judge t2", "probe"]
    assert _errors(first) == []
    assert _errors(second)[-1].startswith("AutograderTamperError") and "sys.displayhook" in _errors(second)[-1]
    assert list(ex._cells) == ["t2"]


def test_tests_are_judged_in_the_instructors_order_whatever_the_submissions(monkeypatch):
    """A submission that moves t1 below t3 does not get t1 judged after the tests that come later in
    the instructor's notebook (they may lend its code a known-good helper to keep)."""
    calls: list[str] = []

    class Judge:
        def verdict(self, source, cell):
            calls.append(cell)
            return None if cell != "t1" else "AssertionError: t1 failed"

    ex = GuardedExecute(timeout=60, sandbox=False)
    ex._baseline, ex._dead, ex._judge, ex._serving = PRISTINE, None, Judge(), None
    ex._judged_tests = {"t1": "t1's source", "t2": "t2's source", "t3": "t3's source"}
    ex._cells, ex._events, ex._verdicts = {}, [], {}
    monkeypatch.setattr(ex, "_probe", lambda: PRISTINE)
    cells = [ex.preprocess_cell(_test_cell("x", grade_id), {}, i)[0] for i, grade_id in enumerate(["t2", "t3", "t1"])]
    assert calls == ["t1", "t2", "t3"], "judged in the submission's order"
    assert [_errors(c) for c in cells] == [[], [], ["AssertionError: t1 failed"]]


def test_test_sources_follow_the_instructors_notebook_not_the_gradebook(tmp_path, monkeypatch):
    from autograder import gradebook
    from autograder.judge.sources import TestSources

    registered = [  # the gradebook's order: cells the instructor added later come last
        ("t2", "t2's source", True, False, True),
        ("setup", "import math", False, False, True),
        ("t1", "t1's source", True, False, True),
    ]
    monkeypatch.setattr(gradebook, "source_code_cells", lambda *a: registered)
    nb = new_notebook(
        cells=[new_code_cell("import math"), _test_cell("t1's source", "t1"), _test_cell("t2's source", "t2")]
    )
    nb.cells[0].metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, "grade_id": "setup"}
    nbformat.write(nb, tmp_path / "A.ipynb")
    assert list(TestSources.from_gradebook("db", "A", "A", tmp_path / "A.ipynb").tests) == ["t1", "t2"]
    assert list(TestSources.from_gradebook("db", "A", "A", tmp_path / "missing.ipynb").tests) == ["t2", "t1"]


def test_a_worker_judges_in_the_order_of_its_courses_source_notebook(tmp_path):
    from autograder.runner.protocol import Job
    from autograder.runner.worker import job_config

    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    cfg = job_config(Job(root=str(tmp_path), assignment="02_quantization", student="s"))
    assert cfg.GuardedExecute.source_dir == str(tmp_path / "source" / "02_quantization")
