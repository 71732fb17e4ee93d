"""`autograder check` on every assignment that exists, and proof that each check can fail.

Every check ``run_checks`` can produce is listed here: ``CHECKS`` (what a healthy assignment gets) and
``FAILURE_ONLY`` (results that appear only when something is broken). Both lists are compared with the
check names written in ``autograder/commands/check.py`` and with what ``run_checks`` really returns, so a new
check that nobody tests fails this file.
"""

from __future__ import annotations

import ast
import copy
import inspect
import shutil
from pathlib import Path

import nbformat
import pytest
from test_01_lora_basics import TABLE as LORA
from test_02_quantization import TABLE as QUANTIZATION
from test_03_metrics import TABLE as METRICS
from test_04_practice import TABLE as PRACTICE
from test_05_qlora_lab import TABLE as LAB

from autograder import notebook as nbu
from autograder.commands import check as checks
from autograder.commands.check import (
    CheckResult,
    check_contract_graded,
    check_no_leaks,
    check_outputs_cleared,
    run_checks,
)
from autograder.commands.nbgrader_run import scratch_course
from autograder.course import Course
from harness import ROOT, course, pipeline

ASSIGNMENTS = course().existing_assignments()
CHECKS = (
    "outputs-cleared",
    "contract-graded",
    "no-leaks",
    "release-is-fresh-build",
    "reference-full-marks",
    "blank-scores-zero",
    "honest-not-flagged",
)
# Reported only when the check cannot even start: each has a test below that makes it appear.
FAILURE_ONLY = ("release-exists", "nbgrader-runs")


TABLES = {t.assignment: t for t in (LORA, QUANTIZATION, METRICS, PRACTICE, LAB)}


def results(assignment: str) -> dict[str, CheckResult]:
    """``autograder check``'s results, from the one whole nbgrader run the suite makes per assignment
    (it grades the table's witnesses beside the reference and the blank: see ``harness.pipeline``)."""
    return pipeline(TABLES[assignment]).checks


def _names_in_checks_module() -> set[str]:
    """Every check name ``autograder/commands/check.py`` can report: the names given to ``CheckResult``.

    Literals, and the one computed name: a static check that raised is reported under its function's
    name (``check_no_leaks`` -> ``no-leaks``).
    """
    derived = {
        name.removeprefix("check_").replace("_", "-")
        for name, fn in inspect.getmembers(checks, inspect.isfunction)
        if name.startswith("check_")
    }
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(checks))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "CheckResult":
            name = node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "check")
            if isinstance(name, ast.Constant):
                names.add(name.value)
            else:
                assert "__name__" in ast.unparse(name), (
                    f"a check name that is neither literal nor derived: {ast.unparse(name)}"
                )
                names |= derived
    return names


def test_every_check_the_code_can_report_is_listed():
    assert _names_in_checks_module() == set(CHECKS) | set(FAILURE_ONLY)
    assert not set(CHECKS) & set(FAILURE_ONLY)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_healthy_assignment_gets_exactly_the_listed_checks(assignment):
    assert sorted(results(assignment)) == sorted(CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_assignment_passes_check(assignment, check):
    result = results(assignment).get(check)
    assert result is not None, f"{check} did not run: {list(results(assignment).values())}"
    assert result.ok, result.line()


# --- each check fails when it should -------------------------------------------------


@pytest.fixture
def spoiled(tmp_path) -> Course:
    """A copy of the course holding only 04_practice, ready to be damaged."""
    root = tmp_path / "course"
    scratch_course(course(), root, ["04_practice"])
    shutil.copytree(ROOT / "release" / "04_practice", root / "release" / "04_practice")
    return Course.load(root)


def _edit(path: Path, grade_id: str, edit) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if nbu.cell_id(cell) == grade_id:
            edit(cell)
    nbformat.write(nb, path)


def _release(c: Course) -> Path:
    return c.path("release", "04_practice", "04_practice.ipynb")


def _source(c: Course) -> Path:
    return c.path("source", "04_practice", "04_practice.ipynb")


def test_leaked_solution_line_is_caught(spoiled):
    _edit(_release(spoiled), "answer_q3", lambda cell: cell.update(source='answer_q3 = "A"'))
    result = check_no_leaks(spoiled, "04_practice")
    assert not result.ok and "answer_q3" in result.detail


def test_leaked_hidden_test_is_caught(spoiled):
    secret = nbu.secret_lines(nbformat.read(_source(spoiled), as_version=4)).hidden
    line = sorted(secret)[0]
    _edit(_release(spoiled), "test_q5", lambda cell: cell.update(source=cell.source + "\n" + line))
    assert not check_no_leaks(spoiled, "04_practice").ok


def test_outputs_are_caught(spoiled):
    def add_output(cell):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
        cell.execution_count = 1

    _edit(_release(spoiled), "test_q1", add_output)
    assert not check_outputs_cleared(spoiled, "04_practice").ok


def test_ungraded_contract_name_is_caught(spoiled):
    _edit(_source(spoiled), "test_q7", lambda cell: cell.update(source="assert True"))
    result = check_contract_graded(spoiled, "04_practice")
    assert not result.ok and "answer_q7" in result.detail


@pytest.mark.slow
def test_grading_checks_catch_stale_release_wrong_solution_weak_test_and_tampering(spoiled):
    _edit(_release(spoiled), "intro", lambda cell: cell.update(source=cell.source + "\nedited by hand"))
    # A reference solution that is wrong, and a test that cannot fail.
    _edit(_source(spoiled), "answer_q1", lambda cell: cell.update(source=cell.source.replace('"B"', '"C"')))
    _edit(_source(spoiled), "test_q2", lambda cell: cell.update(source="pass"))
    # A reference solution that shadows a builtin the tests rely on: the integrity probes flag it.
    shadow = "def isinstance(*args, **kwargs):\n    return True\n"
    _edit(_source(spoiled), "answer_q6", lambda cell: cell.update(source=shadow + cell.source))
    by_check = {r.check: r for r in run_checks(spoiled, ["04_practice"])}
    assert sorted(by_check) == sorted(CHECKS)
    assert not by_check["release-is-fresh-build"].ok
    assert not by_check["reference-full-marks"].ok and "test_q1" in by_check["reference-full-marks"].detail
    assert not by_check["blank-scores-zero"].ok and "test_q2" in by_check["blank-scores-zero"].detail
    flagged = by_check["honest-not-flagged"]
    assert not flagged.ok and "reference" in flagged.detail and "isinstance" in flagged.detail, flagged.detail
    # test_q2 no longer uses answer_q2: the contract check sees it too; nothing else is wrong.
    assert not by_check["contract-graded"].ok and "answer_q2" in by_check["contract-graded"].detail
    assert by_check["outputs-cleared"].ok and by_check["no-leaks"].ok


@pytest.mark.slow
def test_a_missing_release_and_a_source_nbgrader_cannot_build_are_reported(spoiled):
    shutil.rmtree(spoiled.path("release", "04_practice"))

    def duplicate_answer_cell(path: Path) -> None:
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(copy.deepcopy(next(c for c in nb.cells if nbu.cell_id(c) == "answer_q1")))
        nbformat.write(nb, path)

    duplicate_answer_cell(_source(spoiled))
    by_check = {r.check: r for r in run_checks(spoiled, ["04_practice"])}
    assert set(FAILURE_ONLY) <= set(by_check), sorted(by_check)
    assert not by_check["release-exists"].ok and "autograder build" in by_check["release-exists"].detail
    assert not by_check["nbgrader-runs"].ok and "failed" in by_check["nbgrader-runs"].detail, by_check["nbgrader-runs"]


def test_a_line_shown_in_the_visible_part_is_no_secret():
    cell = nbformat.v4.new_code_cell(
        "for r in rows:\n    check(r)\n### BEGIN HIDDEN TESTS\nfor r in rows:\n    assert r.hidden_value == 42\n### END HIDDEN TESTS"
    )
    secrets = nbu.secret_lines(nbformat.v4.new_notebook(cells=[cell]))
    assert "for r in rows:" not in secrets.hidden
    assert "assert r.hidden_value == 42" in secrets.hidden
