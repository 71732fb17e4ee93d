"""The gradebook: every use of ``nbgrader.api`` in the grader, and the grade types read from it.

Only the command line's process writes the course's real gradebook (one submission at a time);
workers write scratch gradebooks of their own, through nbgrader's autograde. Functions import
``nbgrader.api`` when called, so that importing this module stays cheap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CellGrade:
    notebook: str
    cell: str
    score: float | None  # None: waits for a human
    max_score: float
    auto: bool


@dataclass(frozen=True)
class SubmissionGrade:
    assignment: str
    student: str
    score: float
    max_score: float
    cells: tuple[CellGrade, ...]
    flagged: bool = False
    late_penalties: tuple[tuple[str, float], ...] = ()  # (notebook, points the late policy took off)

    @property
    def needs_manual(self) -> bool:
        return any(c.score is None for c in self.cells)


def read_grades(root: Path, assignment: str, students: list[str] | None = None) -> list[SubmissionGrade]:
    """Per-student, per-cell grades of ``assignment`` from ``root/gradebook.db``."""
    from nbgrader.api import Gradebook, MissingEntry

    results = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        ids = students if students is not None else sorted(s.id for s in gb.students)
        for student in ids:
            try:
                sub = gb.find_submission(assignment, student)
            except MissingEntry:
                continue
            cells = []
            for nb in sub.notebooks:
                for grade in nb.grades:
                    manual = grade.manual_score
                    score = manual if manual is not None else grade.auto_score
                    cells.append(
                        CellGrade(nb.name, grade.name, score, float(grade.max_score), grade.auto_score is not None)
                    )
            results.append(
                SubmissionGrade(
                    assignment,
                    student,
                    float(sub.score),
                    float(sub.max_score),
                    tuple(cells),
                    any(nb.flagged for nb in sub.notebooks),
                    tuple((nb.name, float(nb.late_submission_penalty or 0.0)) for nb in sub.notebooks),
                )
            )
    return results


def source_code_cells(db_url: str, assignment: str, notebook: str) -> list[tuple[str, str, bool, bool, bool]]:
    """The code cells the instructor's source registered: ``(grade id, source, graded, solution, locked)``."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        nb = gb.find_notebook(notebook, assignment)
        solutions = {c.name for c in nb.solution_cells}
        grades = {c.name for c in nb.grade_cells}
        return [
            (c.name, c.source, c.name in grades, c.name in solutions, c.locked)
            for c in nb.source_cells
            if c.cell_type == "code"
        ]


def locked_text_sources(db_url: str, assignment: str, notebook: str) -> set[str]:
    """The sources of the markdown and raw cells the instructor's source registered (its locked text)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        nb = gb.find_notebook(notebook, assignment)
        return {c.source for c in nb.source_cells if c.cell_type != "code"}


@dataclass(frozen=True)
class RosterRow:
    """One enrolled student's result on one assignment, as an LMS takes it: a student who did not
    submit is a row too, with nothing submitted and a score of 0."""

    assignment: str
    student: str
    last_name: str
    first_name: str
    email: str
    submitted: bool
    timestamp: str  # when nbgrader recorded the submission (ISO 8601), "" when none
    raw_score: float
    late_penalty: float  # what the late policy took off (nbgrader's AssignLatePenalties)
    score: float  # raw_score - late_penalty, never below 0
    max_score: float
    needs_manual: bool
    flagged: bool


def roster_rows(root: Path, assignment: str) -> list[RosterRow]:
    """Every student on the gradebook's roster with ``assignment``'s result (empty when the gradebook
    does not know the assignment), in student id order."""
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            max_score = float(gb.find_assignment(assignment).max_score)
        except MissingEntry:
            return []
        for student in sorted(gb.students, key=lambda s: s.id):
            person = (student.id, student.last_name or "", student.first_name or "", student.email or "")
            try:
                sub = gb.find_submission(assignment, student.id)
            except MissingEntry:
                rows.append(RosterRow(assignment, *person, False, "", 0.0, 0.0, 0.0, max_score, False, False))
                continue
            raw, penalty = float(sub.score), float(sub.late_submission_penalty or 0.0)
            rows.append(
                RosterRow(
                    assignment,
                    *person,
                    True,
                    sub.timestamp.isoformat(sep=" ") if sub.timestamp else "",
                    raw,
                    penalty,
                    max(0.0, raw - penalty),
                    float(sub.max_score),
                    bool(sub.needs_manual_grade),
                    any(nb.flagged for nb in sub.notebooks),
                )
            )
    return rows


def copy_due_date(real_db: Path, scratch_db: Path, assignment: str) -> None:
    """Give ``assignment`` in the scratch gradebook the real one's due date (nothing when it has none)."""
    from nbgrader.api import Gradebook, MissingEntry

    try:
        with Gradebook(f"sqlite:///{real_db}") as real:
            duedate = real.find_assignment(assignment).duedate
        with Gradebook(f"sqlite:///{scratch_db}") as gb:
            gb.update_or_create_assignment(assignment, duedate=duedate)
    except MissingEntry:
        pass


def merge_submission(
    real_db: Path, course_id: str, scratch_db: Path, assignment: str, student: str, flagged: set[str]
) -> None:
    """Copy one student's grades, comments and late penalty from a worker's scratch gradebook into the
    real one; the notebooks named in ``flagged`` are flagged for review."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{scratch_db}") as scratch:
        sub = scratch.find_submission(assignment, student)
        timestamp = sub.timestamp
        notebooks = {
            nb.name: (
                {g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades},
                {c.name: c.auto_comment for c in nb.comments},
                nb.late_submission_penalty,
            )
            for nb in sub.notebooks
        }
    with (
        warnings.catch_warnings(),
        Gradebook(f"sqlite:///{real_db}", course_id or None) as gb,
    ):
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notices inside nbgrader's own API
        gb.update_or_create_student(student)
        real = gb.update_or_create_submission(assignment, student, timestamp=timestamp)
        for nb in real.notebooks:
            grades, comments, penalty = notebooks.get(nb.name, ({}, {}, None))
            for grade in nb.grades:
                if grade.name in grades:
                    grade.auto_score, needs = grades[grade.name]
                    grade.needs_manual_grade = needs and grade.manual_score is None
            for comment in nb.comments:
                if comment.name in comments:
                    comment.auto_comment = comments[comment.name]
            nb.late_submission_penalty = penalty
            nb.flagged = nb.name in flagged
        gb.db.commit()


def record_failure(real_db: Path, course_id: str, assignment: str, student: str) -> None:
    """A submission that could not be graded: zero on every autograded cell, every notebook flagged."""
    from nbgrader.api import Gradebook

    with (
        warnings.catch_warnings(),
        Gradebook(f"sqlite:///{real_db}", course_id or None) as gb,
    ):
        warnings.simplefilter("ignore")
        gb.update_or_create_student(student)
        sub = gb.update_or_create_submission(assignment, student)
        for nb in sub.notebooks:
            nb.flagged = True
            for grade in nb.grades:
                if grade.auto_score is None and not grade.needs_manual_grade:
                    grade.auto_score = 0
        gb.db.commit()
