"""Grade made-up submissions in a scratch course: mock students, regression sets, tests.

Nothing here touches the real course's gradebook, ``submitted/`` or ``release/``.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import notebook as nbu
from .course import Course
from .grading import GradeSettings, sandbox_setting
from .grading import grade as grade_course
from .nbgrader_run import SubmissionGrade, generate, scratch_course

REFERENCE, BLANK = "reference", "blank"


@dataclass(frozen=True)
class Graded:
    """One mock student's result: the gradebook entry and each test cell's error, if any."""

    grade: SubmissionGrade
    errors: dict[str, str]  # test cell id -> "AssertionError: message"
    review: tuple[str, ...] = ()  # why the grader flagged it (empty: nothing suspicious)

    def score(self, cell: str) -> float | None:
        return next(c.score for c in self.grade.cells if c.cell == cell)

    def max_score(self, cell: str) -> float:
        return next(c.max_score for c in self.grade.cells if c.cell == cell)

    def full_marks(self, cell: str) -> bool:
        return self.score(cell) == self.max_score(cell)


def with_answers(nb, answers: dict[str, str]):
    """A copy of notebook ``nb`` whose cells named in ``answers`` (by grade id) get new sources."""
    nb = copy.deepcopy(nb)
    ids = set(nbu.graded_cell_ids(nb))
    unknown = set(answers) - ids
    if unknown:
        raise KeyError(f"no cell with grade id {sorted(unknown)}")
    for cell in nb.cells:
        cid = nbu.cell_id(cell)
        if cid in answers:
            cell.source = answers[cid]
    return nb


def grade_submissions(
    course: Course,
    assignment: str,
    submissions: dict[str, Path | dict[str, object]],
    scratch: Path | None = None,
) -> dict[str, Graded]:
    """Autograde mock students in a scratch course.

    Each submission is a folder to copy, or ``{notebook file name: notebook or Path}``
    laid over a copy of the released files (data a notebook reads travels with it).
    """
    with tempfile.TemporaryDirectory(prefix="autograder-rehearsal-") as tmp:
        root = scratch or scratch_course(course, Path(tmp) / "course", [assignment])
        release = root / "release" / assignment
        if not release.is_dir():
            generate(root, assignment)
        for student, submission in submissions.items():
            folder = root / "submitted" / student / assignment
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(submission if isinstance(submission, Path) else release, folder)
            if isinstance(submission, dict):
                for name, nb in submission.items():
                    if isinstance(nb, Path):
                        shutil.copyfile(nb, folder / name)
                    else:
                        nbformat.write(nb, folder / name)
        # The same guarded, sandboxed pipeline as real grading (the sandbox where bubblewrap runs:
        # these notebooks are the instructor's own), so a check that trips the integrity probes
        # on an honest notebook shows up here, before students meet it.
        settings = GradeSettings(
            jobs=rehearsal_jobs(), sandbox=sandbox_setting(True, required=False), check_reference=False
        )
        graded = grade_course(Course.load(root), assignment, list(submissions), settings)
        results = {}
        for grade in graded.grades:
            errors = {}
            for path in (root / "autograded" / grade.student / assignment).glob("*.ipynb"):
                errors.update(nbu.cell_errors(path))
            results[grade.student] = Graded(grade, errors, tuple(graded.review.get(grade.student, ())))
        return results


def rehearsal_jobs() -> int:
    """Parallel mock students: ``AUTOGRADER_JOBS``, else 2."""
    try:
        return max(1, int(os.environ.get("AUTOGRADER_JOBS", "2")))
    except ValueError:
        return 2


def reference_and_blank(course: Course, assignment: str, scratch: Path) -> dict[str, Graded]:
    """The two mock students: the source folder (solutions) and the fresh release (stubs)."""
    generate(scratch, assignment)
    submissions = {REFERENCE: course.path("source", assignment), BLANK: scratch / "release" / assignment}
    return grade_submissions(course, assignment, submissions, scratch=scratch)
