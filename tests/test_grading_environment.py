"""Grading fails loudly in a broken environment, and nothing on the path can be shadowed.

- The grader mounts its own ``course``/``autograder`` packages into the kernel, found beside its own
  files, never through the working folder.
- A student's folder named ``autograder/`` beside the notebook does not replace the grader's checks.
- When the reference solution would not earn full marks in this environment, ``grade`` writes no
  grade and ``autograder grade`` exits 1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import notebook as nbu
from autograder.commands.cli import main
from autograder.commands.grade import GradeSettings, GradingEnvironmentError, grade
from autograder.commands.nbgrader_run import scratch_course
from autograder.course import Course
from autograder.execute import sandbox
from autograder.gradebook import read_grades
from harness import ROOT, course
from practice import practice_notebook, wrong_letters

A = "04_practice"
NB = f"{A}.ipynb"


def test_package_mounts_are_the_graders_own_whatever_the_working_folder(tmp_path, monkeypatch):
    decoy = tmp_path / "course"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sandbox._package_dirs() == [str(ROOT / "course"), str(ROOT / "autograder")]
    assert str(decoy) not in sandbox.readonly_paths()


def test_grader_processes_do_not_put_their_working_folder_on_the_path(tmp_path):
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "__init__.py").write_text("raise SystemExit('shadowed')")
    from autograder.commands.nbgrader_run import clean_env

    probe = [sys.executable, "-P", "-c", "import autograder, sys; print(autograder.__file__)"]
    out = subprocess.run(probe, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(ROOT / "autograder" / "__init__.py")
    source = (ROOT / "autograder" / "runner" / "pool.py").read_text()
    source += (ROOT / "autograder" / "commands" / "nbgrader_run.py").read_text()
    assert source.count('sys.executable, "-P", "-m"') == 2, "workers and nbgrader must start with python -P"
    assert sandbox.kernel_env({}, "/tmp/home")["PYTHONSAFEPATH"] == "1", "the kernel must not import from its cwd"


def _classroom(tmp_path) -> Path:
    root = scratch_course(course(), tmp_path / "course", [A])
    shutil.copytree(ROOT / "release" / A, root / "release" / A)
    return root


def _wrong_answers() -> nbformat.NotebookNode:
    return practice_notebook(lambda n: wrong_letters(n)[0])


FAKE_COMPARE = """
def _same(value, *args, **kwargs):
    return value


as_str = as_int = as_float = as_bool = plain = as_array = _same


def expect(*args, **kwargs):
    pass


expect_equal = expect_close = expect_all_close = expect_choice = expect
"""


@pytest.mark.slow
def test_a_folder_named_autograder_beside_the_notebook_shadows_nothing(tmp_path):
    root = _classroom(tmp_path)
    folder = root / "submitted" / "mallory" / A
    (folder / "autograder").mkdir(parents=True)
    nbformat.write(_wrong_answers(), folder / NB)
    (folder / "autograder" / "__init__.py").write_text("")
    (folder / "autograder" / "compare.py").write_text(FAKE_COMPARE)
    run = grade(Course.load(root), A, settings=GradeSettings(jobs=1))
    (mallory,) = run.grades
    assert mallory.score == 0, "the student's own autograder/compare.py was imported by the hidden tests"


@pytest.mark.slow
def test_a_reference_that_fails_here_stops_grading_before_any_grade(tmp_path, capsys):
    root = _classroom(tmp_path)
    folder = root / "submitted" / "ada" / A
    folder.mkdir(parents=True)
    nbformat.write(_wrong_answers(), folder / NB)
    # This environment lacks what the source notebook's tests need (as a kernel without the
    # course's packages would): the reference loses points.
    source = root / "source" / A / NB
    nb = json.loads(source.read_text())
    cell = next(c for c in nb["cells"] if nbu.cell_id(nbformat.from_dict(c)) == "test_q1")
    cell["source"] = "import course_package_missing_here\n" + "".join(cell["source"])
    source.write_text(json.dumps(nb))

    with pytest.raises(GradingEnvironmentError, match=r"test_q1.*ModuleNotFoundError.*No grade was written"):
        grade(Course.load(root), A, settings=GradeSettings(jobs=2))
    assert read_grades(root, A) == [], "a grade was written although the reference failed"

    assert main(["--course", str(root), "grade", A]) == 1
    assert "does not earn full marks" in capsys.readouterr().err
    assert read_grades(root, A) == []


@pytest.mark.slow
def test_a_submission_that_stalls_is_flagged_against_the_reference_time(tmp_path):
    root = _classroom(tmp_path)
    nb = _wrong_answers()
    for cell in nb.cells:
        if nbu.cell_id(cell) == "answer_q1":
            cell.source = "import time\ntime.sleep(8)\n" + cell.source
    folder = root / "submitted" / "staller" / A
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / NB)
    run = grade(Course.load(root), A, settings=GradeSettings(jobs=1, slow_factor=1.5, slow_floor=0.0))
    (staller,) = run.grades
    assert staller.flagged, run.review
    assert any("deliberate stalling" in r for r in run.review["staller"]), run.review


def test_the_kernels_tmp_is_mounted_before_the_packages_a_venv_in_tmp_would_be_hidden(tmp_path):
    """CI and instructors may keep the course (and its venv) under /tmp: mounting the kernel's own
    /tmp after the read-only package mounts would hide them and every kernel would die at start."""
    args = sandbox.wrap(["python"], str(tmp_path / "work"), str(tmp_path / "sock"), {}, sandbox.Limits())
    tmp_mount = next(i for i in range(len(args) - 2) if args[i] == "--bind" and args[i + 2] == "/tmp")
    ro_mounts = [i for i in range(len(args)) if args[i] == "--ro-bind"]
    assert ro_mounts and tmp_mount < min(ro_mounts), "the kernel's /tmp must be mounted before the read-only paths"
