"""``autograder feedback A``: one HTML page per student and notebook, without the hidden tests.

nbgrader's own feedback renders the autograded notebook, test cells (hidden tests included) and
tracebacks (which quote the test's lines). This page shows, per graded item, the result, the
points and the teaching message (the error's name and message only), plus the student's own
answers. It is written where ``nbgrader release_feedback`` looks for it:
``feedback/<student>/<A>/<notebook>.html`` with the submission's ``timestamp.txt`` and
``submission_secret.txt`` beside it.
"""

from __future__ import annotations

import html
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbconvert.exporters import Exporter
from traitlets import default

from autograder import notebook as nbu
from autograder.commands.grade import review_beside, saved_review
from autograder.course import Course, CourseError
from autograder.gradebook import read_grades
from autograder.runner.intake import IntakeError, copy_plain_file

PASSED, FAILED, MANUAL, FLAGGED = "passed", "failed", "graded by hand", "not trusted"
NOTE_CHARS = 1000  # of a passed test's printout on the page


@dataclass(frozen=True)
class Item:
    cell: str
    kind: str  # "test", "answer" (hand-graded code/markdown) or "task"
    score: float | None
    max_score: float
    result: str
    message: str


def _message(cell) -> tuple[str, str]:
    """(result, teaching message) of an autograded test cell, from its outputs only."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            ename, evalue = out.get("ename", "Error"), (out.get("evalue") or "").strip()
            if ename == "AutograderTamperError":
                return FLAGGED, evalue
            if ename == "KernelStopped":
                return FAILED, f"Not run: {evalue.removeprefix('not run: ')}"
            return FAILED, f"{ename}: {evalue}" if evalue else f"{ename} (the check has no message)"
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            first = (out.get("text") or "").strip().splitlines()[:1]
            return FAILED, "The cell wrote to stderr, which fails it: " + (first[0] if first else "")
    # A passed test may still teach: what the judge kept of its printout (a note on the right answer).
    printed = "".join(o.get("text") or "" for o in cell.get("outputs", []) if o.get("name") == "stdout").strip()
    return PASSED, printed[:NOTE_CHARS]


def items_of(nb, grades: dict[str, tuple[float | None, float]]) -> list[Item]:
    """The graded items of an autograded notebook, in notebook order."""
    found = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        cid = meta.get("grade_id")
        if not meta.get("grade") or cid not in grades:
            continue
        score, max_score = grades[cid]
        if meta.get("solution") or meta.get("task"):
            kind = "task" if meta.get("task") else "answer"
            result = MANUAL if score is not None else "waiting for a grader"
            found.append(Item(cid, kind, score, max_score, result, ""))
            continue
        result, message = _message(cell)
        found.append(Item(cid, "test", score, max_score, result, message))
    return found


def _answers(nb) -> list[tuple[str, str]]:
    """The student's own answer cells (grade id, source): theirs to see, nothing hidden."""
    return [
        (nbu.cell_id(c), c.source)
        for c in nb.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("solution") and nbu.cell_id(c)
    ]


def render(
    assignment: str, student: str, notebook: str, found: list[Item], answers, review: list[str], late: float = 0.0
) -> str:
    esc = html.escape
    got = max(0.0, sum(i.score or 0 for i in found) - late)
    total = sum(i.max_score for i in found)
    late_note = f" (after {late:g} points off for late submission)" if late else ""
    rows = "\n".join(
        f"<tr class='{esc(i.result.replace(' ', '-'))}'><td><code>{esc(i.cell)}</code></td>"
        f"<td>{'' if i.score is None else f'{i.score:g}'} / {i.max_score:g}</td><td>{esc(i.result)}</td>"
        f"<td>{esc(i.message)}</td></tr>"
        for i in found
    )
    flagged = ""
    if review:
        flagged = (
            "<div class='flag'><strong>Flagged for the instructor's review.</strong> Some results could not be "
            "trusted and earned no points:<ul>" + "".join(f"<li>{esc(r)}</li>" for r in review) + "</ul></div>"
        )
    code = "\n".join(f"<h3><code>{esc(cid)}</code></h3><pre>{esc(src)}</pre>" for cid, src in answers)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Feedback: {esc(assignment)} / {esc(notebook)} ({esc(student)})</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; vertical-align: top; }}
tr.passed td:nth-child(3) {{ color: #176117; }} tr.failed td:nth-child(3), tr.not-trusted td:nth-child(3) {{ color: #a1150b; }}
.flag {{ border: 2px solid #a1150b; padding: .5rem 1rem; margin: 1rem 0; }} pre {{ background: #f6f6f6; padding: .6rem; overflow-x: auto; }}
</style></head><body>
<h1>{esc(assignment)}: {esc(notebook)}</h1>
<p>Student <strong>{esc(student)}</strong>. Score <strong class="score">{got:g} / {total:g}</strong>{late_note}.</p>
{flagged}
<h2>Graded items</h2>
<table><thead><tr><th>item</th><th>points</th><th>result</th><th>what it says</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Your answers</h2>
{code}
</body></html>
"""


def generate_feedback(course: Course, assignment: str, students: list[str] | None = None) -> list[Path]:
    """Write the feedback pages of every graded submission (or of ``students``); return their paths."""
    (assignment,) = course.resolve([assignment])
    if not course.path("gradebook.db").is_file():
        raise CourseError(f"no gradebook at {course.path('gradebook.db')} (grade something first)")
    grades = {g.student: g for g in read_grades(course.root, assignment, students)}
    missing = sorted(set(students or []) - set(grades))
    if missing:
        raise CourseError(f"no graded submission of {assignment} for {', '.join(missing)}")
    if not grades:
        raise CourseError(f"no graded submission of {assignment} (run autograder grade {assignment} first)")
    written = []
    for student, g in sorted(grades.items()):
        review = saved_review(course, assignment, student)
        dest = course.path("feedback", student, assignment)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name in ("timestamp.txt", "submission_secret.txt"):
            # nbgrader's release_feedback reads these; they sit in the student's folder, so a link
            # there (to the gradebook, say) must not be copied into what the student gets back.
            src = course.path("submitted", student, assignment, name)
            if src.exists() or src.is_symlink():
                try:
                    copy_plain_file(src, dest / name, max_bytes=4096)
                except IntakeError as exc:
                    print(f"{student}: {exc}; not copied into their feedback", file=sys.stderr)
        for source_nb in course.source_notebooks(assignment):
            autograded = course.path("autograded", student, assignment, source_nb.name)
            if not autograded.is_file():
                continue
            cells = {c.cell: (c.score, c.max_score) for c in g.cells if c.notebook == source_nb.stem}
            nb = nbformat.read(autograded, as_version=4)
            page = render(
                assignment,
                student,
                source_nb.stem,
                items_of(nb, cells),
                _answers(nb),
                _about(review, source_nb.stem),
                dict(g.late_penalties).get(source_nb.stem, 0.0),
            )
            path = dest / f"{source_nb.stem}.html"
            path.write_text(page, encoding="utf-8")
            written.append(path)
    return written


def _about(review: list[str], notebook: str) -> list[str]:
    """The review reasons that concern ``notebook``."""
    return [r for r in review if r.startswith((f"{notebook}/", f"{notebook}:", "not graded"))]


class FeedbackExporter(Exporter):
    """The same page, written by nbgrader's ``generate_feedback`` (the formgrader's **Generate
    Feedback** button): ``nbgrader_config.py`` sets ``c.GenerateFeedback.exporter_class`` to this.
    nbgrader's own page would show the test cells, hidden tests included.

    Runs in the formgrader's process, after nbgrader's ``GetGrades`` has written each graded cell's
    score and points into its metadata and the late penalty into the resources."""

    output_mimetype = "text/html"

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".html"

    def from_notebook_node(self, nb, resources=None, **kw):
        nb, resources = super().from_notebook_node(nb, resources, **kw)
        info = resources.get("nbgrader", {})
        grades = {}
        for cell in nb.cells:
            meta = nbu.nbgrader_meta(cell)
            if meta.get("grade") and nbu.cell_id(cell) and "points" in meta:
                grades[nbu.cell_id(cell)] = (meta.get("score"), float(meta["points"]))
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        notebook = str(info.get("notebook", ""))
        page = render(
            str(info.get("assignment", "")),
            str(info.get("student", "")),
            notebook,
            items_of(nb, grades),
            _answers(nb),
            _about(review_beside(folder), notebook),
            float(info.get("late_penalty") or 0.0),
        )
        return page, resources
