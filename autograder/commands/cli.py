"""The autograder command line: build, check, grade, feedback, export, demo.

Exit status: 0 all good, 1 a check failed, 2 bad input (one line on stderr says what).

Only the standard library and the course's configuration are imported before a command runs, so
that ``--help`` and ``--version`` answer at once; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from autograder.commands.machine import default_kernel_memory
from autograder.commands.terminal import inert_output
from autograder.course import Course, CourseError, find_root

OK, FAILED, BAD_INPUT = 0, 1, 2


def _resolve(course: Course, names: list[str] | None) -> list[str]:
    """The assignments named (or all), each with readable source notebooks, else ``CourseError``."""
    from autograder.notebook import read_notebook

    assignments = course.resolve(names)
    for assignment in assignments:
        notebooks = course.source_notebooks(assignment)
        if not notebooks:
            raise CourseError(f"assignment {assignment!r} has no notebook in {course.path('source', assignment)}")
        for path in notebooks:
            read_notebook(path)
    return assignments


def cmd_build(course: Course, args) -> int:
    from autograder.commands.nbgrader_run import generate

    for assignment in _resolve(course, args.assignments):
        generate(course.root, assignment)
        print(f"built release/{assignment}")
    return OK


def cmd_check(course: Course, args) -> int:
    from autograder.commands.check import run_checks

    start = time.perf_counter()
    results = run_checks(course, _resolve(course, args.assignments))
    for result in results:
        print(result.line(), flush=True)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed ({time.perf_counter() - start:.1f} s)")
    return FAILED if failed else OK


def cmd_grade(course: Course, args) -> int:
    from autograder.commands.grade import GradeSettings, grade, sandbox_setting

    _resolve(course, [args.assignment])
    if args.jobs < 1:
        raise CourseError(f"--jobs must be at least 1, not {args.jobs}")
    memory = default_kernel_memory(args.jobs) if args.memory is None else args.memory
    if memory <= 0 or args.disk <= 0:
        raise CourseError("--memory and --disk must be more than 0 GiB")
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
        memory=int(memory * 2**30),
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
    seconds = time.perf_counter() - start
    print(
        f"graded {len(run.graded)} submission(s) with {args.jobs} job(s), {memory:g} GiB per kernel, in {seconds:.1f} s"
    )
    for problem in run.problems:
        print(f"autograder: {problem}", file=sys.stderr)
    return BAD_INPUT if run.problems else OK


def cmd_feedback(course: Course, args) -> int:
    from autograder.commands.feedback import generate_feedback

    _resolve(course, [args.assignment])
    for path in generate_feedback(course, args.assignment, args.student):
        print(f"wrote {path.relative_to(course.root)}")
    return OK


def cmd_export(course: Course, args) -> int:
    from autograder.commands.export import export_csv

    text = export_csv(course, args.assignment, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return OK


def cmd_demo(course: Course, args) -> int:
    """Build every assignment, then grade the reference solutions and the blank release."""
    from autograder.commands.nbgrader_run import generate, scratch_course
    from autograder.commands.rehearsal import BLANK, REFERENCE, reference_and_blank

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


def version() -> str:
    """The installed distribution's version (``pyproject.toml``), or ``unknown`` when not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


DISTRIBUTION = "lora-qlora-course"
# The importable names stay these two: the notebooks students already hold import
# ``autograder.compare``, ``autograder.objects`` and ``course``, and the course runs in an environment
# of its own (its images, ./setup's .venv). Another distribution installing either name is reported.
TOP_LEVEL = ("autograder", "course")


def name_clashes() -> list[str]:
    """Other installed distributions that also install one of :data:`TOP_LEVEL` (one line each)."""
    from importlib.metadata import packages_distributions

    found = packages_distributions()
    return [f"{d} also installs {name!r}" for name in TOP_LEVEL for d in found.get(name, []) if d != DISTRIBUTION]


class _Version(argparse.Action):
    """``--version``: the version, and any distribution that would shadow this one's packages."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {version()} ({DISTRIBUTION})")
        for clash in name_clashes():
            warning = f"{clash}: uninstall it, or give the course an environment of its own"
            print(f"{parser.prog}: warning: {warning}", file=sys.stderr)
        parser.exit()


def _course_assignments() -> str:
    """The assignment folders of the course here, for the help (empty outside a course directory).

    Read from ``source/``, not from ``nbgrader_config.py``: loading the configuration imports the
    grading pipeline (it configures nbgrader's own Autograde), seconds that a help must not take."""
    try:
        source = find_root(Path.cwd()) / "source"
        return ", ".join(sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")))
    except (CourseError, OSError):
        return ""


def parser() -> argparse.ArgumentParser:
    known = _course_assignments()
    one = "an assignment of the course" + (f": {known}" if known else "")
    some = "assignments of the course (default: every one)" + (f": {known}" if known else "")
    p = argparse.ArgumentParser(prog="autograder", description=__doc__.splitlines()[0])
    p.add_argument("--version", action=_Version)
    p.add_argument("--course", help="course directory (default: the one containing the working directory)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="regenerate release/ from source/ with nbgrader")
    b.add_argument("assignments", nargs="*", metavar="A", help=some)
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("check", help="prove solutions earn full marks, stubs zero, and nothing leaks")
    c.add_argument("assignments", nargs="*", metavar="A", help=some)
    c.set_defaults(func=cmd_check)

    g = sub.add_parser("grade", help="autograde submitted/*/A into the gradebook")
    g.add_argument("assignment", metavar="A", help=one)
    g.add_argument("--student", action="extend", nargs="+", metavar="ID", help="grade only these students")
    g.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="grade N submissions at a time (default: 1)")
    g.add_argument("--timeout", type=int, metavar="S", help="seconds per cell (default: c.Execute.timeout)")
    g.add_argument(
        "--time-limit", type=float, metavar="S", help="seconds per submission (default: 4 x timeout, 600 at least)"
    )
    g.add_argument(
        "--disk", type=float, default=4, metavar="GIB", help="disk one submission may write, in GiB (default: 4)"
    )
    g.add_argument(
        "--memory",
        type=float,
        metavar="GIB",
        help="memory limit per kernel, in GiB (default: this machine's memory / --jobs, from 2 to 16)",
    )
    g.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run student code WITHOUT the bubblewrap sandbox (only if it cannot run here)",
    )
    g.set_defaults(func=cmd_grade)

    f = sub.add_parser("feedback", help="per-student HTML feedback (results, points, messages; no hidden tests)")
    f.add_argument("assignment", metavar="A", help=one)
    f.add_argument("--student", action="extend", nargs="+", metavar="ID", help="only these students")
    f.set_defaults(func=cmd_feedback)

    e = sub.add_parser("export", help="write the gradebook's grades as CSV, every enrolled student included")
    e.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    e.add_argument("--assignment", action="extend", nargs="+", metavar="A", help=f"only these ({some.split(' (')[0]})")
    e.add_argument(
        "--format",
        choices=("long", "wide", "canvas"),
        default="long",
        help="long: a row per student and assignment; wide: a row per student, a column per assignment "
        "(Moodle); canvas: Canvas's gradebook layout (default: long)",
    )
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="build, then grade the reference solutions and the blank release")
    d.add_argument("assignments", nargs="*", metavar="A", help=some)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with inert_output():  # student ids and messages are printed: no escape sequence reaches the terminal
        return _run(args)


def _run(args) -> int:
    from autograder.commands.grade import GradingEnvironmentError
    from autograder.commands.nbgrader_run import NbgraderFailed

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
