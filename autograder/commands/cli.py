"""The ``autograder`` command line: build, check, grade, feedback, export, demo.

Exit status: 0 all good, 1 a check failed, 2 bad input (one line on stderr says what).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from autograder.commands.check import run_checks
from autograder.commands.feedback import generate_feedback
from autograder.commands.grade import GradeSettings, GradingEnvironmentError, export_csv, grade, sandbox_setting
from autograder.commands.nbgrader_run import NbgraderFailed, generate, scratch_course
from autograder.commands.rehearsal import BLANK, REFERENCE, reference_and_blank
from autograder.commands.terminal import inert_output
from autograder.course import Course, CourseError
from autograder.notebook import read_notebook

OK, FAILED, BAD_INPUT = 0, 1, 2


def _resolve(course: Course, names: list[str] | None) -> list[str]:
    """The assignments named (or all), each with readable source notebooks, else ``CourseError``."""
    assignments = course.resolve(names)
    for assignment in assignments:
        notebooks = course.source_notebooks(assignment)
        if not notebooks:
            raise CourseError(f"assignment {assignment!r} has no notebook in {course.path('source', assignment)}")
        for path in notebooks:
            read_notebook(path)
    return assignments


def cmd_build(course: Course, args) -> int:
    for assignment in _resolve(course, args.assignments):
        generate(course.root, assignment)
        print(f"built release/{assignment}")
    return OK


def cmd_check(course: Course, args) -> int:
    start = time.perf_counter()
    results = run_checks(course, _resolve(course, args.assignments))
    for result in results:
        print(result.line(), flush=True)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed ({time.perf_counter() - start:.1f} s)")
    return FAILED if failed else OK


def cmd_grade(course: Course, args) -> int:
    _resolve(course, [args.assignment])
    if args.jobs < 1:
        raise CourseError(f"--jobs must be at least 1, not {args.jobs}")
    use_sandbox = sandbox_setting(not args.unsafe_no_sandbox)
    if not use_sandbox:
        print(
            "autograder: WARNING: grading WITHOUT a sandbox (--unsafe-no-sandbox): student code runs with "
            "your rights and can read and change your files",
            file=sys.stderr,
        )
    settings = GradeSettings(
        jobs=args.jobs,
        sandbox=use_sandbox,
        cell_timeout=args.timeout,
        time_limit=args.time_limit,
        memory=int(args.memory * 2**30),
        disk=int(args.disk * 2**30),
    )
    start = time.perf_counter()
    run = grade(course, args.assignment, args.student, settings)
    for g in run.grades:
        notes = []
        if g.needs_manual:
            notes.append("needs manual grading")
        if g.student in run.review:
            notes.append("FLAGGED for review")
        note = f"  ({', '.join(notes)})" if notes else ""
        print(f"{g.assignment:<16} {g.student:<24} {g.score:6g} / {g.max_score:g}{note}")
    for student, reasons in sorted(run.review.items()):
        for reason in reasons:
            print(f"  review {student}: {reason}")
    print(f"graded {len(run.graded)} submission(s) with {args.jobs} job(s) in {time.perf_counter() - start:.1f} s")
    for problem in run.problems:
        print(f"autograder: {problem}", file=sys.stderr)
    return BAD_INPUT if run.problems else OK


def cmd_feedback(course: Course, args) -> int:
    _resolve(course, [args.assignment])
    for path in generate_feedback(course, args.assignment, args.student):
        print(f"wrote {path.relative_to(course.root)}")
    return OK


def cmd_export(course: Course, args) -> int:
    text = export_csv(course)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return OK


def cmd_demo(course: Course, args) -> int:
    """Build every assignment, then grade the reference solutions and the blank release."""
    assignments = _resolve(course, args.assignments)
    for assignment in assignments:
        generate(course.root, assignment)
    print(f"built release/ for {', '.join(assignments)}\n")
    print(f"{'assignment':<16} {'mock student':<12} {'score':>7} {'max':>6}  note")
    status = OK
    with tempfile.TemporaryDirectory(prefix="autograder-demo-") as tmp:
        scratch = scratch_course(course, Path(tmp) / "course", assignments)
        for assignment in assignments:
            graded = reference_and_blank(course, assignment, scratch)
            for student in (REFERENCE, BLANK):
                g = graded[student].grade
                manual = sum(c.max_score for c in g.cells if c.score is None)
                note = f"+ {manual:g} points graded by hand" if manual else ""
                print(f"{assignment:<16} {student:<12} {g.score:7g} {g.max_score:6g}  {note}".rstrip(), flush=True)
            ref, blank = graded[REFERENCE].grade, graded[BLANK].grade
            for student in (REFERENCE, BLANK):
                for reason in graded[student].review:  # not graded, or flagged: the demo failed
                    print(f"  {student}: {reason}", file=sys.stderr)
                    status = FAILED
            if any(c.score != c.max_score for c in ref.cells if c.auto) or blank.score != 0:
                status = FAILED
    return status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autograder", description=__doc__.splitlines()[0])
    p.add_argument("--course", help="course directory (default: the one containing the working directory)")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="regenerate release/ from source/ with nbgrader")
    b.add_argument("assignments", nargs="*", metavar="A")
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("check", help="prove solutions earn full marks, stubs zero, and nothing leaks")
    c.add_argument("assignments", nargs="*", metavar="A")
    c.set_defaults(func=cmd_check)

    g = sub.add_parser("grade", help="autograde submitted/*/A into the gradebook")
    g.add_argument("assignment", metavar="A")
    g.add_argument("--student", action="extend", nargs="+", metavar="ID", help="grade only these students")
    g.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="grade N submissions at a time")
    g.add_argument("--timeout", type=int, metavar="S", help="seconds per cell (default: c.Execute.timeout)")
    g.add_argument(
        "--time-limit", type=float, metavar="S", help="seconds per submission (default: 4 x timeout, 600 at least)"
    )
    g.add_argument("--disk", type=float, default=4, metavar="GIB", help="disk one submission may write (GiB)")
    g.add_argument("--memory", type=float, default=16, metavar="GIB", help="memory limit per kernel (GiB)")
    g.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run student code WITHOUT the bubblewrap sandbox (only if it cannot run here)",
    )
    g.set_defaults(func=cmd_grade)

    f = sub.add_parser("feedback", help="per-student HTML feedback (results, points, messages; no hidden tests)")
    f.add_argument("assignment", metavar="A")
    f.add_argument("--student", action="extend", nargs="+", metavar="ID", help="only these students")
    f.set_defaults(func=cmd_feedback)

    e = sub.add_parser("export", help="write the gradebook's grades as CSV")
    e.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="build, then grade the reference solutions and the blank release")
    d.add_argument("assignments", nargs="*", metavar="A")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with inert_output():  # student ids and messages are printed: no escape sequence reaches the terminal
        return _run(args)


def _run(args) -> int:
    try:
        course = Course.load(args.course)
        return args.func(course, args)
    except GradingEnvironmentError as exc:  # before CourseError: the environment, not the input, is wrong
        print(f"autograder: error: {exc}", file=sys.stderr)
        return FAILED
    except CourseError as exc:
        print(f"autograder: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except NbgraderFailed as exc:
        print(f"autograder: error: {exc}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
