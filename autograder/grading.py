"""``autograder grade`` and ``autograder export``: real submissions into the real gradebook."""
from __future__ import annotations

import csv
import io
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import notebook as nbu
from .course import Course, CourseError
from .nbgrader_run import NbgraderFailed, SubmissionGrade, autograde, generate, read_grades


@dataclass
class GradeRun:
    """What one ``grade`` call did: grades written and the problems met on the way."""

    grades: list[SubmissionGrade] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def find_students(course: Course, assignment: str, students: list[str] | None, run: GradeRun) -> list[str]:
    submitted = course.path("submitted")
    if not submitted.is_dir():
        raise CourseError(f"no submissions folder {submitted} (collect submissions first)")
    if not students:
        found = sorted(p.parent.name for p in submitted.glob(f"*/{assignment}") if p.is_dir())
        if not found:
            raise CourseError(f"no submissions of {assignment} under {submitted}")
        return found
    present = []
    for student in students:
        if (submitted / student / assignment).is_dir():
            present.append(student)
        else:
            run.problems.append(f"{student}: no submission folder {submitted / student / assignment}")
    return present


def inspect_submission(course: Course, assignment: str, student: str) -> tuple[bool, list[str]]:
    """(gradeable, problems) for one submission, compared with the source notebooks."""
    folder = course.path("submitted", student, assignment)
    problems = []
    for source_path in course.source_notebooks(assignment):
        path = folder / source_path.name
        if not path.is_file():
            problems.append(f"{student}: notebook {source_path.name} missing; it scores zero")
            continue
        try:
            submitted = nbu.read_notebook(path)
        except CourseError as exc:
            return False, [f"{student}: {exc}; not graded"]
        expected = nbu.graded_cell_ids(nbu.read_notebook(source_path))
        counts = Counter(nbu.graded_cell_ids(submitted))
        missing = [cid for cid in expected if counts[cid] == 0]
        doubled = sorted(cid for cid, n in counts.items() if n > 1)
        if missing:
            problems.append(
                f"{student}: {source_path.name}: cells deleted ({', '.join(missing)}); graded with the originals restored"
            )
        if doubled:
            problems.append(f"{student}: {source_path.name}: cells duplicated ({', '.join(doubled)}); only the first counts")
    return True, problems


def grade(course: Course, assignment: str, students: list[str] | None = None) -> GradeRun:
    """Autograde submissions of ``assignment`` one by one; a broken one never stops the rest."""
    (assignment,) = course.resolve([assignment])
    run = GradeRun()
    candidates = find_students(course, assignment, students, run)
    # Register the current source (cells, points, hidden tests) in the gradebook,
    # without touching the committed release/.
    with tempfile.TemporaryDirectory(prefix="autograder-release-") as tmp:
        generate(course.root, assignment, release_dir=Path(tmp))
    graded = []
    for student in candidates:
        ok, problems = inspect_submission(course, assignment, student)
        run.problems += problems
        if not ok:
            continue
        try:
            autograde(course.root, assignment, [student])
            graded.append(student)
        except NbgraderFailed as exc:
            run.problems.append(f"{student}: grading failed: {' '.join(str(exc).split())[:300]}")
    run.grades = read_grades(course.root, assignment, graded)
    return run


def export_csv(course: Course) -> str:
    """Every submission in the gradebook as CSV rows, in course order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["assignment", "student_id", "score", "max_score", "needs_manual_grade"])
    if not course.path("gradebook.db").is_file():
        raise CourseError(f"no gradebook at {course.path('gradebook.db')} (grade something first)")
    for assignment in course.assignments:
        for g in read_grades(course.root, assignment):
            writer.writerow([assignment, g.student, f"{g.score:g}", f"{g.max_score:g}", str(g.needs_manual).lower()])
    return out.getvalue()
