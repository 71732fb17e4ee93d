"""The `autograder` command line on a scratch copy of the course: grading, export, bad input."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from autograder import notebook as nbu
from autograder.commands.cli import main
from autograder.commands.nbgrader_run import run_nbgrader, scratch_course
from harness import ROOT, course, max_score, pipeline, points
from practice import NB, A, practice_letters
from practice import practice_notebook as _answers

MAX = max_score(A)
DUE = "2026-12-01 17:00:00"  # UTC; frank submits 2 days and 1 hour later
ESCAPING = "eve\x1b[2K\x1b[1A\u202e"  # an id that would erase the line above it and reverse the text
Q_POINTS = {n: points(A)[f"test_q{n}"] for n in practice_letters()}


def _right(n: int) -> str:
    return practice_letters()[n]


def _submit(root, student, nb_or_text):
    folder = root / "submitted" / student / A
    folder.mkdir(parents=True)
    if isinstance(nb_or_text, str):
        (folder / NB).write_text(nb_or_text)
    else:
        nbformat.write(nb_or_text, folder / NB)


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """A scratch course with five submissions: right, all-A, broken JSON, deleted cells, and right under
    an id full of terminal escapes."""
    root = scratch_course(course(), tmp_path_factory.mktemp("classroom") / "course", [A])
    shutil.copytree(ROOT / "release" / A, root / "release" / A)
    _submit(root, "alice", _answers(_right))
    _submit(root, "bob", _answers(lambda n: "A"))
    _submit(root, "carol", '{"cells": [ this is not json')
    deleted = _answers(_right)
    deleted.cells = [c for c in deleted.cells if nbu.cell_id(c) not in ("test_q3", "answer_q4")]
    _submit(root, "dave", deleted)
    _submit(root, ESCAPING, _answers(_right))
    # The due date, the roster, a late submission and a student who never submitted.
    # As an instructor sets them (docs/instructor.md, "Due dates and late work").
    run_nbgrader(root, "db", "assignment", "add", A, f"--duedate={DUE} UTC")
    run_nbgrader(
        root, "db", "student", "add", "gina", "--first-name=Gina", "--last-name=Ng", "--email=gina@example.org"
    )
    _submit(root, "frank", _answers(_right))
    (root / "submitted" / "frank" / A / "timestamp.txt").write_text("2026-12-03 18:00:00.000000 UTC")
    return root


@pytest.fixture(scope="module")
def graded(classroom):
    before = {folder: _digest(classroom / folder) for folder in ("submitted", "release", "source")}
    out, err = io.StringIO(), io.StringIO()
    from contextlib import redirect_stderr, redirect_stdout

    with redirect_stdout(out), redirect_stderr(err):
        status = main(
            [
                "--course",
                str(classroom),
                "grade",
                A,
                "--student",
                "alice",
                "--student",
                "bob",
                "--student",
                "carol",
                "--student",
                "dave",
                "--student",
                "ghost",
                "--student",
                ESCAPING,
                "--student",
                "frank",
            ]
        )
    after = {folder: _digest(classroom / folder) for folder in ("submitted", "release", "source")}
    return status, out.getvalue(), err.getvalue(), before, after


@pytest.mark.slow
def test_grade_reports_each_bad_submission_on_one_line_and_exits_2(graded):
    status, _, err, *_ = graded
    assert status == 2
    lines = err.strip().splitlines()
    assert any(
        line.startswith("autograder: carol: not graded:") and "not a valid notebook" in line and "flagged" in line
        for line in lines
    )
    assert any(line.startswith("autograder: dave:") and "answer_q4" in line and "test_q3" in line for line in lines)
    assert any(line.startswith("autograder: ghost:") and "no submission folder" in line for line in lines)
    assert len(lines) == 3, err


@pytest.mark.slow
def test_broken_submissions_do_not_stop_the_others(graded):
    _, out, *_ = graded
    scores = {m.group(1): float(m.group(2)) for m in re.finditer(rf"^\S+\s+(\w+)\s+([\d.]+) / {MAX:g}\b", out, re.M)}
    assert scores["alice"] == MAX
    assert scores["bob"] == sum(p for n, p in Q_POINTS.items() if _right(n) == "A")
    # dave's deleted test cell came back and still grades his (right) answer; his deleted
    # answer cell came back as the stub and earns nothing.
    assert scores["dave"] == MAX - Q_POINTS[4]
    assert scores["carol"] == 0  # recorded (and flagged), not left out of the gradebook


@pytest.mark.slow
def test_parallel_grading_gives_the_same_scores(classroom, graded):
    from autograder.commands.grade import GradeSettings, grade
    from autograder.course import Course
    from autograder.gradebook import read_grades

    def cells(run):
        return {g.student: (g.score, tuple((c.cell, c.score) for c in g.cells)) for g in run.grades}

    # ``graded`` graded them one at a time (the command line's default, --jobs 1): the gradebook holds that.
    students = ["alice", "bob", "dave"]
    one = {g.student: (g.score, tuple((c.cell, c.score) for c in g.cells)) for g in read_grades(classroom, A, students)}
    two = grade(Course.load(classroom), A, students, GradeSettings(jobs=3))
    assert one == cells(two)
    assert sorted(cells(two)) == students


@pytest.mark.slow
def test_grading_touches_no_input(graded):
    *_, before, after = graded
    assert before == after


@pytest.mark.slow
def test_export_lists_the_roster_with_late_penalties_in_each_lms_shape(classroom, graded, tmp_path):
    target = tmp_path / "grades.csv"
    assert main(["--course", str(classroom), "export", "--assignment", A, "--out", str(target)]) == 0
    rows = {r["student_id"]: r for r in csv.DictReader(target.open())}
    assert set(rows) == {
        "alice",
        "bob",
        "carol",
        "dave",
        ESCAPING,
        "frank",
        "gina",
    }
    assert rows["carol"]["flagged"] == "true" and rows["carol"]["submitted"] == "true"
    assert {r["assignment"] for r in rows.values()} == {A}
    assert float(rows["alice"]["score"]) == MAX and float(rows["alice"]["late_penalty"]) == 0
    # 2 days and 1 hour late: three started days at 10 % each (the course's DailyPenalty).
    frank = rows["frank"]
    assert frank["timestamp"].startswith("2026-12-03 18:00:00"), frank
    assert float(frank["raw_score"]) == MAX and float(frank["late_penalty"]) == pytest.approx(0.3 * MAX)
    assert float(frank["score"]) == pytest.approx(0.7 * MAX)
    gina = rows["gina"]
    assert (gina["submitted"], gina["score"], gina["max_score"], gina["timestamp"]) == ("false", "0", f"{MAX:g}", "")
    assert (gina["last_name"], gina["first_name"], gina["email"]) == ("Ng", "Gina", "gina@example.org")

    assert main(["--course", str(classroom), "export", "--format", "wide", "--out", str(target)]) == 0
    wide = list(csv.DictReader(target.open()))
    assert list(wide[0]) == ["student_id", "last_name", "first_name", "email", A, "total", "total_max"]
    by_id = {r["student_id"]: r for r in wide}
    assert float(by_id["frank"][A]) == pytest.approx(0.7 * MAX) and by_id["gina"][A] == "0"
    assert by_id["gina"]["total_max"] == f"{MAX:g}"

    assert main(["--course", str(classroom), "export", "--format", "canvas", "--out", str(target)]) == 0
    canvas = list(csv.reader(target.open()))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", A, "Total"]
    assert canvas[1] == ["Points Possible", "", "", "", "", f"{MAX:g}", f"{MAX:g}"]
    assert ["Ng, Gina", "", "", "gina", "", "0", "0"] in canvas


def test_the_late_policy_takes_a_share_per_started_day_after_the_grace():
    from traitlets import TraitError

    from autograder.execute.late import DailyPenalty

    policy = DailyPenalty(per_day=0.1, grace_minutes=15)
    assert policy.late_submission_penalty("s", 10.0, 14 * 60) is None  # within the grace
    assert policy.late_submission_penalty("s", 10.0, 16 * 60) == pytest.approx(1.0)  # one started day
    assert policy.late_submission_penalty("s", 10.0, 2 * 86400 + 3600) == pytest.approx(3.0)
    assert policy.late_submission_penalty("s", 10.0, 30 * 86400) == 10.0  # never below zero
    with pytest.raises(TraitError, match="from 0 to 1"):
        DailyPenalty(per_day=10)


@pytest.mark.slow
def test_feedback_pages_teach_without_leaking_hidden_tests(classroom, graded):
    assert main(["--course", str(classroom), "feedback", A, "--student", "alice", "bob"]) == 0
    source = nbformat.read(ROOT / "source" / A / NB, as_version=4)
    hidden = sorted(nbu.secret_lines(source).hidden)
    assert hidden, "the source should have hidden test lines to look for"
    pages = {s: (classroom / "feedback" / s / A / f"{A}.html").read_text() for s in ("alice", "bob")}
    assert f"{MAX:g} / {MAX:g}" in pages["alice"]
    assert "Right, for its memory, not its speed" in pages["alice"], "feedback reaches right answers too"
    wrong = next(n for n in range(1, 12) if _right(n) != "A")
    assert f"test_q{wrong}" in pages["bob"] and "failed" in pages["bob"]
    assert "alice" not in pages["bob"] and "bob" not in pages["alice"]
    for student, page in pages.items():
        leaked = [line for line in hidden if html.escape(line) in page or line in page]
        assert not leaked, f"{student}'s feedback shows hidden test lines: {leaked[:3]}"
        assert "BEGIN HIDDEN" not in page and "Traceback" not in page
    # bob's teaching message for a wrong letter is the misconception, not the test code.
    assert "misconception" in pages["bob"].lower() or "AssertionError" in pages["bob"]
    # frank's page says what the late policy took off.
    assert main(["--course", str(classroom), "feedback", A, "--student", "frank"]) == 0
    frank = (classroom / "feedback" / "frank" / A / f"{A}.html").read_text()
    assert f"{0.7 * MAX:g} / {MAX:g}" in frank and f"after {0.3 * MAX:g} points off for late submission" in frank

    # nbgrader's own generate_feedback (what the formgrader's button runs) writes the very same pages.
    for student in ("bob", "frank"):
        mine = (classroom / "feedback" / student / A / f"{A}.html").read_text()
        run_nbgrader(classroom, "generate_feedback", A, "--student", student, "--force")
        theirs = (classroom / "feedback" / student / A / f"{A}.html").read_text()
        assert theirs == mine, f"nbgrader's generate_feedback wrote another page for {student}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", "99_nope"], "unknown assignment '99_nope'"),
        (["build", "99_nope"], "unknown assignment '99_nope'"),
        (["grade", "05_qlora_lab"], "has no source folder"),
        (["grade", A], "no submissions folder"),
        (["export"], "no gradebook"),
        (["feedback", A], "no gradebook"),
        (["grade", A, "--jobs", "0"], "--jobs must be at least 1"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(tmp_path, argv, message):
    root = scratch_course(course(), tmp_path / "course", [A])
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "--course", str(root), *argv], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_grade_refuses_without_a_sandbox(monkeypatch, tmp_path, capsys):
    from autograder.execute import sandbox

    root = scratch_course(course(), tmp_path / "course", [A])
    _submit(root, "alice", _answers(_right))
    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: "bubblewrap (bwrap) is not installed")
    assert main(["--course", str(root), "grade", A]) == 2
    err = capsys.readouterr().err
    assert "refusing to run student code outside a sandbox" in err and "--unsafe-no-sandbox" in err
    assert not (root / "autograded").exists()


def test_source_notebook_that_is_not_json(tmp_path):
    root = scratch_course(course(), tmp_path / "course", [A])
    (root / "source" / A / NB).write_text("{ oops")
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "--course", str(root), "build", A], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "not a valid notebook" in proc.stderr
    assert not (root / "release").exists(), "nothing may be built from a broken source"


def test_not_a_course_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "autograder", "check"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "nbgrader_config.py" in proc.stderr


@pytest.mark.slow
def test_demo_builds_and_prints_the_score_table(tmp_path, capsys, monkeypatch):
    """The demo builds the release and prints the reference's and the blank's grades. Those come
    from the session's whole run of 04 (``harness.pipeline``: the very ``reference_and_blank``
    the demo calls), instead of a second one; ``./setup`` runs the demo itself end to end."""
    from test_04_practice import TABLE

    from autograder.commands import rehearsal

    graded = pipeline(TABLE).graded
    monkeypatch.setattr(rehearsal, "reference_and_blank", lambda course, assignment, scratch: graded)
    root = scratch_course(course(), tmp_path / "course", [A])
    assert main(["--course", str(root), "demo", A]) == 0
    out = capsys.readouterr().out
    assert (root / "release" / A / NB).is_file()
    assert re.search(rf"^{A}\s+reference\s+{MAX:g}\s+{MAX:g}$", out, re.M), out
    assert re.search(rf"^{A}\s+blank\s+0\s+{MAX:g}$", out, re.M), out


@pytest.mark.slow
def test_a_student_id_cannot_drive_the_instructors_terminal(graded):
    _, out, err, *_ = graded
    assert "\x1b" not in out + err and "\u202e" not in out + err
    assert "eve\\x1b[2K\\x1b[1A\\u202e" in out, out


def test_version_and_help_answer_without_the_grading_stack():
    """``--help`` and ``--version`` import no notebook, kernel or nbgrader machinery (they took 2.6 s)."""
    from importlib.metadata import version

    probe = (
        "import sys\n"
        "from autograder.commands import cli\n"
        "for argv in (['--version'], ['--help'], ['grade', '--help']):\n"
        "    try:\n"
        "        cli.parser().parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('nbformat', 'nbgrader', 'nbclient', 'jupyter_client', 'torch') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"autograder {version('lora-qlora-course')}" in proc.stdout
    assert "heavy: []" in proc.stdout, proc.stdout
    text = " ".join(proc.stdout.split())
    assert "(default: 1)" in text and "(default: this machine's memory / --jobs, from 2 to 16)" in text, text
    assert "01_lora_basics, 02_quantization" in text, "the assignment argument lists the course's assignments"
    assert "``" not in proc.stdout, "reStructuredText markup in the help"


def test_the_default_kernel_memory_shares_the_machine_between_jobs(monkeypatch):
    from autograder.commands import machine

    monkeypatch.setattr(machine, "memory_bytes", lambda: 16 * 2**30)  # the course service's pod
    assert [machine.default_kernel_memory(j) for j in (1, 2, 4, 16)] == [16.0, 8.0, 4.0, 2.0]
    monkeypatch.setattr(machine, "memory_bytes", lambda: 64 * 2**30)
    assert machine.default_kernel_memory(1) == 16.0


def test_version_names_a_distribution_that_would_shadow_the_courses_packages(monkeypatch, capsys):
    import importlib.metadata

    from autograder.commands import cli

    assert cli.name_clashes() == [], "this environment has another distribution installing autograder or course"
    real = importlib.metadata.packages_distributions()
    monkeypatch.setattr(
        importlib.metadata, "packages_distributions", lambda: {**real, "autograder": ["autograder", cli.DISTRIBUTION]}
    )
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--version"])
    assert "warning: autograder also installs 'autograder'" in capsys.readouterr().err
