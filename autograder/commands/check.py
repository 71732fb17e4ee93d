"""``autograder check``: prove each assignment is honest before students see it.

Every check works on a scratch copy of the course, so the real gradebook,
``submitted/`` and ``release/`` are never touched.
"""

from __future__ import annotations

import filecmp
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder import notebook as nbu
from autograder.commands.nbgrader_run import NbgraderFailed, scratch_course
from autograder.commands.rehearsal import BLANK, REFERENCE, Graded, reference_and_blank
from autograder.contract import GRADED_NAMES
from autograder.course import Course, CourseError


@dataclass(frozen=True)
class CheckResult:
    assignment: str
    check: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        return f"{self.assignment:<16} {self.check:<22} {status} {self.detail}".rstrip()


# --- static checks ----------------------------------------------------------------


def check_outputs_cleared(course: Course, assignment: str) -> CheckResult:
    dirty = [
        str(p.relative_to(course.root))
        for folder in ("source", "release")
        for p in sorted(course.path(folder, assignment).glob("*.ipynb"))
        if nbu.has_outputs(nbu.read_notebook(p))
    ]
    detail = "outputs in " + ", ".join(dirty) if dirty else "source and release have no outputs"
    return CheckResult(assignment, "outputs-cleared", not dirty, detail)


def check_contract_graded(course: Course, assignment: str) -> CheckResult:
    names = GRADED_NAMES.get(assignment, ())
    cells = [c for p in course.source_notebooks(assignment) for c in nbu.read_notebook(p).cells]
    answers = [c for c in cells if nbu.is_answer_cell(c)]
    tests = [c for c in cells if nbu.is_test_cell(c) and float(nbu.nbgrader_meta(c).get("points", 0)) > 0]
    problems = []
    for name in names:
        if not any(nbu.defines(c, name) for c in answers):
            problems.append(f"{name}: no answer cell defines it")
        elif not any(nbu.mentions(c, name) for c in tests):
            problems.append(f"{name}: no test cell with points uses it")
    detail = "; ".join(problems) if problems else f"{len(names)} contract names defined and graded"
    return CheckResult(assignment, "contract-graded", not problems, detail)


def check_no_leaks(course: Course, assignment: str) -> CheckResult:
    secrets = nbu.SecretLines(set(), set())
    for path in course.source_notebooks(assignment):
        found = nbu.secret_lines(nbu.read_notebook(path))
        secrets.solution |= found.solution
        secrets.hidden |= found.hidden
    leaks = []
    for path in sorted(course.path("release", assignment).rglob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary data files cannot carry a line of code
        if path.suffix == ".ipynb":
            text = "\n".join(c.get("source", "") for c in nbu.read_notebook(path).cells)
        for marker in (nbu.SOLUTION[0], nbu.HIDDEN[0]):
            if marker in text:
                leaks.append(f"{path.name}: marker {marker!r}")
        leaks += [f"{path.name}: {line!r}" for line in secrets.find_in(text)]
    n = len(secrets.solution) + len(secrets.hidden)
    detail = "; ".join(leaks[:5]) if leaks else f"none of {n} solution/hidden-test lines in release/"
    return CheckResult(assignment, "no-leaks", not leaks, detail)


# --- checks that build and grade -----------------------------------------------------


def _same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two folders (missing on one side or other bytes)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()} if b.is_dir() else set()
    diff = sorted(str(p) for p in files_a ^ files_b)
    diff += sorted(str(p) for p in files_a & files_b if not filecmp.cmp(a / p, b / p, shallow=False))
    return diff


def grading_checks(
    course: Course, scratch: Path, assignment: str, also: dict[str, dict[str, object]] | None = None
) -> tuple[list[CheckResult], dict[str, Graded]]:
    """The checks that grade: the reference and the blank release through the whole pipeline, in
    ``scratch``. ``also``: more mock submissions graded in the same run (a rehearsal's), returned
    with the two in ``{student: Graded}``."""
    try:
        graded = reference_and_blank(course, scratch=scratch, assignment=assignment, also=also)
    except NbgraderFailed as exc:
        first = str(exc).splitlines()[0]
        return [CheckResult(assignment, "nbgrader-runs", False, first)], {}
    return _graded_checks(course, scratch, assignment, graded), graded


def _graded_checks(course: Course, scratch: Path, assignment: str, graded: dict[str, Graded]) -> list[CheckResult]:
    results = []
    differ = _same_tree(scratch / "release" / assignment, course.path("release", assignment))
    results.append(
        CheckResult(
            assignment,
            "release-is-fresh-build",
            not differ,
            "differs: " + ", ".join(differ[:5]) + " (run `autograder build`)" if differ else "byte-identical",
        )
    )
    ref, blank = (graded[s].grade if s in graded else None for s in (REFERENCE, BLANK))
    if ref is None or blank is None:
        return results + [CheckResult(assignment, "nbgrader-runs", False, "autograde left no gradebook entry")]

    auto = [c for c in ref.cells if c.auto]
    errors = graded[REFERENCE].errors
    short = [
        f"{c.cell} {c.score:g}/{c.max_score:g} ({errors.get(c.cell, 'no error shown')[:160]})"
        for c in auto
        if c.score != c.max_score
    ]
    got, auto_max = sum(c.score or 0 for c in auto), sum(c.max_score for c in auto)
    detail = f"{got:g}/{auto_max:g} autograded points"
    if len(auto) < len(ref.cells):
        detail += f", {len(ref.cells) - len(auto)} cell(s) left for manual grading"
    if short:
        detail = "lost points: " + ", ".join(short)
    results.append(CheckResult(assignment, "reference-full-marks", not short and auto_max > 0, detail))

    earned = [f"{c.cell} {c.score:g}/{c.max_score:g}" for c in blank.cells if c.score]
    detail = (
        "earned: " + ", ".join(earned) if earned else f"0/{blank.max_score:g} on all {len(blank.cells)} graded cells"
    )
    results.append(CheckResult(assignment, "blank-scores-zero", not earned, detail))

    flagged = [f"{s}: {r}" for s in (REFERENCE, BLANK) for r in graded[s].review]
    detail = "; ".join(flagged)[:400] if flagged else "integrity probes quiet on both"
    results.append(CheckResult(assignment, "honest-not-flagged", not flagged, detail))
    return results


def assignment_checks(
    course: Course, assignment: str, scratch: Path, also: dict[str, dict[str, object]] | None = None
) -> tuple[list[CheckResult], dict[str, Graded]]:
    """Every check of one assignment, grading in the scratch course ``scratch``; with ``also``, those
    submissions are graded in the same run and come back with the reference and the blank."""
    results: list[CheckResult] = []
    if not course.path("release", assignment).is_dir():
        results.append(CheckResult(assignment, "release-exists", False, "no release/ folder (run `autograder build`)"))
    for static in (check_outputs_cleared, check_contract_graded, check_no_leaks):
        try:
            results.append(static(course, assignment))
        except CourseError as exc:
            results.append(
                CheckResult(assignment, static.__name__.removeprefix("check_").replace("_", "-"), False, str(exc))
            )
    graded_results, graded = grading_checks(course, scratch, assignment, also)
    return results + graded_results, graded


def run_checks(course: Course, assignments: list[str]) -> list[CheckResult]:
    """All checks for each assignment, in a scratch course removed afterwards."""
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="autograder-check-") as tmp:
        scratch = scratch_course(course, Path(tmp) / "course", assignments)
        for assignment in assignments:
            results += assignment_checks(course, assignment, scratch)[0]
    return results
