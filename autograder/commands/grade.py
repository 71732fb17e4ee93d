"""``autograder grade`` and ``autograder export``: real submissions into the real gradebook."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from autograder import gradebook
from autograder import notebook as nbu
from autograder.commands.nbgrader_run import clean_env, generate, scratch_course
from autograder.course import Course, CourseError
from autograder.execute import sandbox
from autograder.gradebook import SubmissionGrade, read_grades
from autograder.runner.intake import IntakeError, copy_submission
from autograder.runner.pool import Zygote, run_jobs, start_workers
from autograder.runner.protocol import PRELOAD, WORKER_MEMORY, Job, JobResult

REPORT_FILE = "autograder-report.json"
# The instructor's own solutions, graded beside the students as a check of this environment.
REFERENCE_STUDENT = "autograder-reference-check"


class GradingEnvironmentError(CourseError):
    """The reference solution would not earn full marks here: no grade was written."""


@dataclass
class GradeRun:
    """What one ``grade`` call did: grades written, submissions flagged, problems met on the way."""

    grades: list[SubmissionGrade] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    review: dict[str, list[str]] = field(default_factory=dict)  # student -> why it is flagged
    graded: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def find_students(course: Course, assignment: str, students: list[str] | None, run: GradeRun) -> list[str]:
    submitted = course.path("submitted")
    if not submitted.is_dir():
        raise CourseError(f"no submissions folder {submitted} (collect submissions first)")
    if not students:
        # A linked student folder is still listed, so that intake refuses it by name and flags it.
        found = sorted(p.parent.name for p in submitted.glob(f"*/{assignment}") if p.is_dir() or p.is_symlink())
        if not found:
            raise CourseError(f"no submissions of {assignment} under {submitted}")
        return found
    present = []
    for student in students:
        folder = submitted / student / assignment
        if folder.is_dir() or folder.is_symlink():
            present.append(student)
        else:
            run.problems.append(f"{student}: no submission folder {submitted / student / assignment}")
    return present


def take_in(course: Course, assignment: str, student: str, where: Path) -> Path:
    """The student's submission copied to ``where`` with plain files only (``IntakeError`` otherwise).

    The student's own folder must not be a link either: ``submitted/<student>`` is theirs to shape.
    """
    student_dir = course.path("submitted", student)
    if student_dir.is_symlink():
        raise IntakeError(f"submitted/{student} is a symbolic link")
    where.parent.mkdir(parents=True, exist_ok=True)
    copy_submission(student_dir / assignment, where)
    return where


def inspect_submission(course: Course, assignment: str, student: str, folder: Path) -> tuple[bool, list[str]]:
    """(gradeable, problems) for one submission, taken in at ``folder``, compared with the source notebooks."""
    problems = []
    for source_path in course.source_notebooks(assignment):
        path = folder / source_path.name
        if not path.is_file():
            problems.append(f"{student}: notebook {source_path.name} missing; it scores zero")
            continue
        try:
            submitted = nbu.read_notebook(path)
        except CourseError as exc:
            return False, [str(exc)]
        expected = nbu.graded_cell_ids(nbu.read_notebook(source_path))
        counts = Counter(nbu.graded_cell_ids(submitted))
        missing = [cid for cid in expected if counts[cid] == 0]
        doubled = sorted(cid for cid, n in counts.items() if n > 1)
        if missing:
            problems.append(
                f"{student}: {source_path.name}: cells deleted ({', '.join(missing)}); graded with the originals restored"
            )
        if doubled:
            problems.append(
                f"{student}: {source_path.name}: cells duplicated ({', '.join(doubled)}); only the first counts"
            )
    return True, problems


@dataclass(frozen=True)
class GradeSettings:
    """How submissions are run: sandbox, parallelism and limits."""

    jobs: int = 1
    sandbox: bool = True  # False: student code runs with the grader's rights (explicit opt-out only)
    cell_timeout: int | None = None  # seconds per cell; None: c.Execute.timeout of the course
    time_limit: float | None = None  # seconds per submission; None: derived from the cell timeout
    memory: int = 16 * 2**30
    worker_memory: int = 8 * 2**30  # the grader's own worker (nbgrader and the judge), per job
    cpu: int = 3600
    disk: int = 4 * 2**30  # bytes one submission may write: its working folder, /tmp and /dev/shm
    # A submission that takes longer than slow_factor x the reference's time (and at least
    # slow_floor seconds) is flagged: stalling just under every cell's time limit holds a worker.
    slow_factor: float = 5.0
    slow_floor: float = 60.0
    # Grade the source notebooks too and write nothing unless they earn full marks: a broken
    # environment (a package the kernel cannot import, a sandbox that hides the course) must not
    # give a whole class zero with exit status 0.
    check_reference: bool = True


def sandbox_setting(requested: bool, required: bool = True) -> bool:
    """Whether to sandbox: refuse (``CourseError``) when it is required but bubblewrap cannot run."""
    if not requested:
        return False
    reason = sandbox.unavailable_reason()
    if reason is None:
        return True
    if required:
        raise CourseError(
            f"refusing to run student code outside a sandbox: {reason}. "
            "Pass --unsafe-no-sandbox to grade anyway (student code then runs with your rights)"
        )
    return False


def course_config(course: Course):
    from traitlets.config import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config()


def _cell_timeout(course: Course) -> int:
    return int(course_config(course).Execute.get("timeout", 30) or 30)


def judge_preload(course: Course, assignment: str) -> list[str]:
    """The import lines a worker runs before its first job when ``assignment`` is judged by calls
    (``c.GuardedExecute.call_judged``): those of the cells its judge runs, from the source notebooks."""
    if assignment not in course_config(course).GuardedExecute.get("call_judged", []):
        return []
    from autograder.judge.sources import import_statements, judge_sources

    lines: list[str] = []
    for path in course.source_notebooks(assignment):
        lines += [line for line in import_statements(judge_sources(nbu.read_notebook(path))) if line not in lines]
    return lines


def _template(course: Course, assignment: str, where: Path, registered: Future) -> Path:
    """A scratch course holding only ``assignment``: source, config and a gradebook of its own.

    ``registered`` is the real gradebook's own registration, running meanwhile: the due date is
    copied from the real gradebook once it is done.
    """
    root = scratch_course(course, where, [assignment])
    generate(root, assignment, release_dir=where / "_release")
    shutil.rmtree(where / "_release", ignore_errors=True)
    registered.result()
    gradebook.copy_due_date(course.path("gradebook.db"), root / "gradebook.db", assignment)
    return root


def _job_folder(assignment: str, student: str, taken_in: Path, template: Path, where: Path) -> Path:
    shutil.copytree(template, where)
    shutil.copytree(taken_in, where / "submitted" / student / assignment)
    return where


def reference_problem(assignment: str, result: JobResult) -> str | None:
    """Why the reference solution's grading shows a broken environment, or None when it earned full marks."""
    if not result.ok:
        return f"it could not be graded ({result.error})"
    reasons = review_reasons(integrity(result.root))
    if reasons:
        return f"the integrity probes flagged it ({reasons[0]})"
    graded = read_grades(result.root, assignment, [REFERENCE_STUDENT])
    if not graded:
        return "it has no grade"
    lost = [c for c in graded[0].cells if c.auto and c.score != c.max_score]
    if not lost:
        return None
    errors = {}
    for path in (result.root / "autograded" / REFERENCE_STUDENT / assignment).glob("*.ipynb"):
        errors.update(nbu.cell_errors(path))
    first = lost[0].cell
    return (
        f"it lost points on {len(lost)} cell(s), first {first}: {errors.get(first, 'no error shown')[:300]}. "
        "Is the course installed in this environment (pip install -e . in the course folder), and does "
        "`autograder check` pass?"
    )


def integrity(job_root: Path) -> dict:
    path = job_root / "integrity.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def review_reasons(report: dict) -> list[str]:
    """Why a submission needs the instructor's eyes, from its integrity report."""
    reasons = []
    for notebook, entry in sorted(report.items()):
        for cell, why in sorted(entry.get("tampered", {}).items()):
            reasons.append(f"{notebook}/{cell}: {'; '.join(why)}")
        reasons += [f"{notebook}: {event}" for event in entry.get("events", [])]
    return reasons


def _merge(course: Course, assignment: str, student: str, job_root: Path, reasons: list[str]) -> None:
    """Copy one student's grades from a scratch gradebook into the real one (the only writer)."""
    tampered = {reason.split("/", 1)[0].split(":", 1)[0] for reason in reasons}
    gradebook.merge_submission(
        course.path("gradebook.db"), course.course_id, job_root / "gradebook.db", assignment, student, tampered
    )
    dest = course.path("autograded", student, assignment)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(job_root / "autograded" / student / assignment, dest)
    (dest / REPORT_FILE).write_text(json.dumps({"review": reasons, "integrity": integrity(job_root)}, indent=1))


def _record_failure(course: Course, assignment: str, student: str, why: str) -> None:
    """A submission that could not be graded: zero on every autograded cell, flagged for review."""
    gradebook.record_failure(course.path("gradebook.db"), course.course_id, assignment, student)
    dest = course.path("autograded", student, assignment)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / REPORT_FILE).write_text(json.dumps({"review": [why], "integrity": {}}, indent=1))


def worker_env(jobs: int, memory: int | None = None) -> dict[str, str]:
    """The workers' environment: with N jobs, each kernel's math libraries get cores / N threads
    (unless OMP_NUM_THREADS is set), so parallel torch kernels do not oversubscribe the CPU; each
    worker holds at most ``memory`` bytes of data."""
    env = clean_env()
    if memory:
        env[WORKER_MEMORY] = str(memory)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def grade(
    course: Course, assignment: str, students: list[str] | None = None, settings: GradeSettings | None = None
) -> GradeRun:
    """Autograde submissions of ``assignment``, ``settings.jobs`` at a time, each in its own sandbox.

    Each submission is graded in a scratch course of its own by a worker process; only this
    process writes the real gradebook, one submission at a time. A broken, crashing or hanging
    submission costs only itself.
    """
    settings = settings or GradeSettings()
    (assignment,) = course.resolve([assignment])
    run = GradeRun()
    candidates = find_students(course, assignment, students, run)
    cell_timeout = settings.cell_timeout or _cell_timeout(course)
    limit = settings.time_limit or max(600.0, 4.0 * cell_timeout)
    with tempfile.TemporaryDirectory(prefix="autograder-grade-") as tmp:
        tmp_path = Path(tmp)
        gradeable, taken_in, refused = [], {}, {}
        for student in candidates:
            # Whatever one submission does to intake or inspection costs that student alone.
            try:
                taken_in[student] = take_in(course, assignment, student, tmp_path / "intake" / student)
                ok, problems = inspect_submission(course, assignment, student, taken_in[student])
            except IntakeError as exc:
                refused[student] = f"not graded: the submission folder was refused: {exc}"
                continue
            except (Exception, RecursionError) as exc:
                refused[student] = f"not graded: the submission could not be read ({type(exc).__name__})"
                continue
            if not ok:  # an unreadable notebook: zero and flagged, like a refused folder
                refused[student] = f"not graded: {'; '.join(problems)}"
                continue
            run.problems += problems
            gradeable.append(student)
        env = worker_env(settings.jobs, settings.worker_memory)
        env[PRELOAD] = json.dumps(judge_preload(course, assignment))
        check = settings.check_reference and bool(gradeable)
        zygote = Zygote(env, tmp_path / "zygote.log")
        workers = start_workers(min(settings.jobs, len(gradeable) + check), env, tmp_path, zygote)
        try:
            # Register the current source (cells, points, hidden tests) in the real gradebook,
            # without touching the committed release/; meanwhile build the scratch template.
            with ThreadPoolExecutor(max_workers=1) as background:
                registered = background.submit(generate, course.root, assignment, tmp_path / "release")
                template = _template(course, assignment, tmp_path / "template", registered)
            students = tmp_path / "jobs" / "students"
            jobs = []
            for s in gradeable:
                try:
                    jobs.append((s, _job_folder(assignment, s, taken_in[s], template, students / s)))
                except OSError as exc:  # this student's files alone
                    refused[s] = f"not graded: the submission could not be copied for grading ({type(exc).__name__})"
            # The reference job is known by the folder the grader made for it, never by a student
            # id: a submission filed under REFERENCE_STUDENT is graded as anyone else's.
            reference_root = tmp_path / "jobs" / "reference"
            if check:  # first in the queue, so that a broken environment stops the run early
                reference = course.path("source", assignment)
                jobs.insert(
                    0,
                    (
                        REFERENCE_STUDENT,
                        _job_folder(assignment, REFERENCE_STUDENT, reference, template, reference_root),
                    ),
                )
        except BaseException:
            for worker in workers:
                worker.stop(kill=True)
            zygote.stop()
            raise

        def make_job(student: str, root: Path) -> Job:
            return Job(
                root=str(root),
                assignment=assignment,
                student=student,
                timeout=cell_timeout,
                sandbox=settings.sandbox,
                memory=settings.memory,
                cpu=settings.cpu,
            )

        finished: list[JobResult] = []

        def record(result: JobResult) -> None:
            try:
                if result.ok:
                    reasons = review_reasons(integrity(result.root)) + slow_reasons(result.seconds)
                    _merge(course, assignment, result.student, result.root, reasons)
                else:
                    reasons = [f"not graded: {result.error}"]
                    _record_failure(course, assignment, result.student, reasons[0])
                    run.problems.append(f"{result.student}: {result.error}; scored zero and flagged")
                if reasons:
                    run.review[result.student] = reasons
                run.graded.append(result.student)
                run.seconds[result.student] = result.seconds
            except Exception as exc:  # the gradebook write failed: say so, keep going
                run.problems.append(f"{result.student}: could not record the grade: {exc}")

        broken: list[str] = []
        stop = threading.Event()
        reference_seconds: list[float] = []

        def collect(result: JobResult) -> None:
            if result.root != reference_root:
                finished.append(result)
                return
            reference_seconds.append(result.seconds)
            problem = reference_problem(assignment, result)
            if problem:
                broken.append(problem)
                stop.set()

        try:
            run_jobs(
                jobs,
                make_job,
                collect,
                settings.jobs,
                limit,
                env,
                tmp_path,
                started=workers,
                stop=stop,
                disk_limit=settings.disk,
                zygote=zygote,
            )
        finally:
            zygote.stop()
        # Nothing reaches the gradebook unless the reference solution earned full marks here.
        if broken:
            raise GradingEnvironmentError(
                f"the reference solution of {assignment} does not earn full marks in this grading environment: "
                f"{broken[0]} No grade was written."
            )
        for student, why in refused.items():
            _record_failure(course, assignment, student, why)
            run.problems.append(f"{student}: {why}; scored zero and flagged")
            run.review[student] = [why]
            run.graded.append(student)

        def slow_reasons(seconds: float) -> list[str]:
            if not reference_seconds:
                return []
            allowed = max(settings.slow_floor, settings.slow_factor * reference_seconds[0])
            if seconds <= allowed:
                return []
            return [
                f"{nb.stem}: took {seconds:.0f} s to grade, the reference solution {reference_seconds[0]:.0f} s "
                f"(more than {allowed:.0f} s): look for deliberate stalling"
                for nb in course.source_notebooks(assignment)
            ]

        for result in finished:
            record(result)
    run.grades = read_grades(course.root, assignment, sorted(run.graded))
    return run


def saved_review(course: Course, assignment: str, student: str) -> list[str]:
    """The review reasons ``grade`` stored beside the autograded notebook (empty when none)."""
    return review_beside(course.path("autograded", student, assignment))


def review_beside(folder: Path) -> list[str]:
    """The review reasons ``grade`` stored in an autograded submission's folder (empty when none)."""
    try:
        return [str(r) for r in json.loads((folder / REPORT_FILE).read_text()).get("review", [])]
    except (OSError, ValueError, AttributeError):
        return []
