"""``autograder export``: the gradebook as CSV, in the shapes a learning management system imports.

- ``long`` (the default): one row per enrolled student and assignment, with the submission time,
  the raw score, the late penalty and the score after it, the review flag and its reasons.
- ``wide``: one row per student, one column per assignment (the score after any late penalty) and
  a total; Moodle's grade import and most spreadsheets take it as it is.
- ``canvas``: the wide table in the layout of Canvas's own gradebook export (``Student``, ``ID``,
  ``SIS User ID``, ``SIS Login ID``, ``Section``, then the assignments, and a ``Points Possible``
  row), which Canvas's gradebook import reads back; students are matched on ``SIS Login ID``.

Every student on the gradebook's roster is a row, submitted or not (0 when not). Every text field a
student controls is made inert for spreadsheets.
"""

from __future__ import annotations

import csv
import io

from autograder.course import Course, CourseError
from autograder.gradebook import RosterRow, roster_rows

FORMATS = ("long", "wide", "canvas")
LONG_COLUMNS = (
    "assignment",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "submitted",
    "timestamp",
    "raw_score",
    "late_penalty",
    "score",
    "max_score",
    "needs_manual_grade",
    "flagged",
    "review",
)

# A spreadsheet evaluates a field that starts with one of these (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def spreadsheet_text(text: str) -> str:
    """A text field a spreadsheet shows as text: a leading apostrophe before what would start a
    formula (a student id ``=HYPERLINK(...)``, a review reason quoting a student's message)."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _number(x: float) -> str:
    return f"{x:g}"


def export_csv(course: Course, assignments: list[str] | None = None, shape: str = "long") -> str:
    """The gradebook's results for ``assignments`` (default: every one of the course) as CSV text."""
    if shape not in FORMATS:
        raise CourseError(f"unknown export format {shape!r}; choose one of {', '.join(FORMATS)}")
    if not course.path("gradebook.db").is_file():
        raise CourseError(f"no gradebook at {course.path('gradebook.db')} (grade something first)")
    chosen = course.resolve(assignments) if assignments else list(course.assignments)
    rows = {a: roster_rows(course.root, a) for a in chosen}
    rows = {a: r for a, r in rows.items() if r}  # an assignment the gradebook does not know yet
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if shape == "long":
        _long(course, rows, writer)
    else:
        _wide(rows, writer, canvas=shape == "canvas")
    return out.getvalue()


def _long(course: Course, rows: dict[str, list[RosterRow]], writer) -> None:
    from autograder.commands.grade import saved_review

    writer.writerow(LONG_COLUMNS)
    for assignment, results in rows.items():
        for r in results:
            review = saved_review(course, assignment, r.student) if r.submitted else []
            writer.writerow(
                [
                    spreadsheet_text(assignment),
                    spreadsheet_text(r.student),
                    spreadsheet_text(r.last_name),
                    spreadsheet_text(r.first_name),
                    spreadsheet_text(r.email),
                    str(r.submitted).lower(),
                    r.timestamp,
                    _number(r.raw_score),
                    _number(r.late_penalty),
                    _number(r.score),
                    _number(r.max_score),
                    str(r.needs_manual).lower(),
                    str(r.flagged).lower(),
                    spreadsheet_text(" | ".join(review)),
                ]
            )


def _wide(rows: dict[str, list[RosterRow]], writer, canvas: bool) -> None:
    assignments = list(rows)
    people: dict[str, RosterRow] = {}
    scores: dict[tuple[str, str], float] = {}
    for assignment, results in rows.items():
        for r in results:
            people.setdefault(r.student, r)
            scores[assignment, r.student] = r.score
    maxima = [next(iter(rows[a])).max_score for a in assignments]
    if canvas:
        writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *assignments, "Total"])
        writer.writerow(["Points Possible", "", "", "", "", *map(_number, maxima), _number(sum(maxima))])
    else:
        writer.writerow(["student_id", "last_name", "first_name", "email", *assignments, "total", "total_max"])
    for student in sorted(people):
        p = people[student]
        own = [scores.get((a, student), 0.0) for a in assignments]
        if canvas:
            name = ", ".join(n for n in (p.last_name, p.first_name) if n) or student
            first = [spreadsheet_text(name), "", "", spreadsheet_text(student), ""]
            writer.writerow([*first, *map(_number, own), _number(sum(own))])
        else:
            who = [spreadsheet_text(x) for x in (student, p.last_name, p.first_name, p.email)]
            writer.writerow([*who, *map(_number, own), _number(sum(own)), _number(sum(maxima))])
