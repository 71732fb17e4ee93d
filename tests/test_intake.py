"""Submission folders are hostile: links, FIFOs, sockets, odd names and sizes are refused at intake,
and a refused folder zeroes and flags only its own student."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket

import nbformat
import pytest

from autograder.commands.feedback import generate_feedback
from autograder.commands.grade import GradeSettings, grade, saved_review
from autograder.commands.nbgrader_run import scratch_course
from autograder.course import Course
from autograder.runner.intake import IntakeError, IntakeLimits, copy_submission
from harness import ROOT, course
from practice import practice_letters, practice_notebook

A = "04_practice"
NB = f"{A}.ipynb"


def _folder(tmp_path, **files: bytes):
    src = tmp_path / "sub"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    return src


def test_plain_files_and_folders_are_copied_byte_for_byte(tmp_path):
    src = _folder(tmp_path, **{"a.ipynb": b"{}", "data.csv": b"x,y\n1,2\n"})
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "nested" / "deeper" / "w.npy").write_bytes(os.urandom(5000))
    copy_submission(src, tmp_path / "out")
    for path in src.rglob("*"):
        twin = tmp_path / "out" / path.relative_to(src)
        assert twin.is_dir() if path.is_dir() else twin.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda src: (src / "x.ipynb").symlink_to(ROOT / "source" / A / NB), "symbolic link"),
        (lambda src: (src / "gone.ipynb").symlink_to(src / "nowhere"), "symbolic link"),
        (lambda src: (src / "up").symlink_to(ROOT, target_is_directory=True), "symbolic link"),
        (lambda src: os.mkfifo(src / "pipe.ipynb"), "FIFO"),
        (lambda src: socket.socket(socket.AF_UNIX).bind(str(src / "s.sock")), "socket"),
        (lambda src: (src / "bad\nname.txt").write_text("x"), "control characters"),
    ],
    ids=["link-to-source", "dangling-link", "link-to-folder", "fifo", "socket", "newline-in-name"],
)
def test_what_is_not_a_plain_file_is_refused_by_name(tmp_path, make, words):
    src = _folder(tmp_path, **{NB: b"{}"})
    make(src)
    with pytest.raises(IntakeError, match=words):
        copy_submission(src, tmp_path / "out")


def test_the_submission_folder_itself_may_not_be_a_link(tmp_path):
    (tmp_path / "link").symlink_to(ROOT / "source" / A, target_is_directory=True)
    with pytest.raises(IntakeError, match="symbolic link"):
        copy_submission(tmp_path / "link", tmp_path / "out")


def test_count_size_and_depth_are_capped(tmp_path):
    src = _folder(tmp_path, **{f"f{i}.txt": b"12345" for i in range(5)})
    with pytest.raises(IntakeError, match="more than 4 files"):
        copy_submission(src, tmp_path / "o1", IntakeLimits(max_files=4))
    with pytest.raises(IntakeError, match="MiB in all"):
        copy_submission(src, tmp_path / "o2", IntakeLimits(max_bytes=24))
    copy_submission(src, tmp_path / "o3", IntakeLimits(max_files=5, max_bytes=25))
    deep = src
    for i in range(4):
        deep = deep / f"d{i}"
        deep.mkdir()
    with pytest.raises(IntakeError, match="nested more than 3 deep"):
        copy_submission(src, tmp_path / "o4", IntakeLimits(max_depth=3))


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_a_refused_folder_costs_only_its_own_student(tmp_path):
    root = scratch_course(course(), tmp_path / "course", [A])
    shutil.copytree(ROOT / "release" / A, root / "release" / A)
    submitted = root / "submitted"
    honest = submitted / "honest" / A
    honest.mkdir(parents=True)
    nbformat.write(practice_notebook(practice_letters()), honest / NB)
    # The linker's notebook is the source notebook itself (solutions and hidden tests), by a link.
    (submitted / "linker" / A).mkdir(parents=True)
    (submitted / "linker" / A / NB).symlink_to(root / "source" / A / NB)
    # A dangling link used to abort the whole run.
    (submitted / "dangler" / A).mkdir(parents=True)
    nbformat.write(practice_notebook(practice_letters()), submitted / "dangler" / A / NB)
    (submitted / "dangler" / A / "data").symlink_to(tmp_path / "nowhere")
    # A whole student folder that is a link to someone else's.
    (submitted / "borrower").symlink_to(submitted / "honest", target_is_directory=True)
    source_before = _digest(root / "source")

    run = grade(Course.load(root), A, settings=GradeSettings(jobs=1))

    scores = {g.student: g for g in run.grades}
    assert set(scores) == {"honest", "linker", "dangler", "borrower"}, run.problems
    assert not scores["honest"].flagged and scores["honest"].score > 0, run.problems
    for student in ("linker", "dangler", "borrower"):
        assert scores[student].score == 0 and scores[student].flagged, (student, run.problems)
        review = saved_review(Course.load(root), A, student)
        assert review and "symbolic link" in review[0], (student, review)
    assert not (root / "autograded" / "linker" / A / NB).exists(), "the linked source notebook was taken in"
    assert _digest(root / "source") == source_before

    # Feedback copies nbgrader's timestamp.txt from the student's folder: a link there to the
    # gradebook must not travel back to the student.
    (honest / "timestamp.txt").symlink_to(root / "gradebook.db")
    written = generate_feedback(Course.load(root), A, ["honest"])
    assert written, "the honest student still gets feedback"
    assert not (root / "feedback" / "honest" / A / "timestamp.txt").exists()
