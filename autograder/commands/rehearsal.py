"""Grade made-up submissions: mock students, regression sets, tests.

Two ways, one result type (:class:`Graded`):

- :func:`grade_submissions`: the whole pipeline, nbgrader's autograde in a scratch course with the
  grading pool, exactly as ``autograder grade`` runs it (30-60 s a run).
- :func:`judge_notebooks`: the judge alone, in this process, against one sandboxed kernel per
  notebook that has run only what the tests need (the first setup cell and the answer cells); for a
  literal-judged assignment no kernel at all. The verdicts are the pipeline's, at a fraction of the
  cost: the test suite's mistake tables use it, and keep whole runs for the pipeline itself.

Nothing here touches the real course's gradebook, ``submitted/`` or ``release/``.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import itertools
import multiprocessing
import os
import shutil
import symtable
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder import notebook as nbu
from autograder.commands.grade import GradeSettings, sandbox_setting
from autograder.commands.grade import grade as grade_course
from autograder.commands.nbgrader_run import generate, scratch_course
from autograder.course import Course
from autograder.gradebook import CellGrade, SubmissionGrade

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
    """Parallel mock students: ``AUTOGRADER_JOBS``, else 3 (a rehearsal grades the reference, the
    blank and at most a few more; their kernels mostly wait on imports)."""
    try:
        return max(1, int(os.environ.get("AUTOGRADER_JOBS", "3")))
    except ValueError:
        return 3


def reference_and_blank(
    course: Course, assignment: str, scratch: Path, also: dict[str, dict[str, object]] | None = None
) -> dict[str, Graded]:
    """The two mock students: the source folder (solutions) and the fresh release (stubs), and the
    submissions in ``also`` (as :func:`grade_submissions` takes them) graded in the same run."""
    generate(scratch, assignment)
    submissions = {REFERENCE: course.path("source", assignment), BLANK: scratch / "release" / assignment}
    return grade_submissions(course, assignment, {**submissions, **(also or {})}, scratch=scratch)


def judge_notebooks(
    course: Course,
    assignment: str,
    notebooks: dict[str, object],
    sandbox: bool = True,
    shared_kernel: bool = True,
    cell_timeout: int | None = None,
    kernels_at_once: int = 2,
    environment: dict[str, str] | None = None,
) -> dict[str, Graded]:
    """Mock students' notebooks (``{student: notebook}``, the assignment's one notebook) judged
    directly: the judge of the course's configuration, the test sources from the instructor's source
    notebook, no nbgrader run and no gradebook.

    A call-judged assignment runs in one guarded, sandboxed kernel (the grading pipeline's own
    executor, probes included) that executes the first setup cell once, then each student's answer
    cells followed by the judge's verdicts on that student's tests: the teaching cells that load
    models, train and plot feed no test. The graded names are forgotten before each student, so
    each verdict is about that student's code alone. With ``shared_kernel=False`` each notebook gets a kernel of its
    own (a hostile notebook's tampering must not reach the next). A literal-judged assignment (04)
    is read, never run. Scores follow nbgrader's rule for a test cell: an error costs all its points.
    ``cell_timeout`` (seconds) replaces the course's ``c.Execute.timeout``. Separate kernels run
    ``kernels_at_once`` at a time, each judged in one of a pool of spawned processes kept between
    calls (a kernel spends most of its life importing on one core while its judge waits; threads will
    not do: two nbclient sessions in one process lose each other's messages). With ``environment``,
    the kernels run with those variables set, judged in a pool process (so that several calls, from
    threads of the caller, can judge at once).
    """
    from autograder.commands.grade import course_config
    from autograder.judge.literal import judge_cell, notebook_answers
    from autograder.judge.sources import TestSources

    (source_path,) = course.source_notebooks(assignment)
    source = nbu.read_notebook(source_path)
    sources = TestSources.from_notebook(source)
    release = nbu.read_notebook(course.path("release", assignment, source_path.name))
    config = course_config(course)
    students = list(notebooks)
    if assignment in config.LiteralJudge.get("assignments", []):
        outcomes = []
        for nb in notebooks.values():
            answers = notebook_answers(nb, sources.tests)  # as LiteralJudge reads them
            errors = {k: m for k, src in sources.tests.items() if (m := judge_cell(src, answers, k)) is not None}
            outcomes.append((errors, []))
    elif assignment in config.GuardedExecute.get("call_judged", []):
        timeout = cell_timeout or int(config.Execute.get("timeout", 30) or 30)
        groups = [list(notebooks.values())] if shared_kernel else [[nb] for nb in notebooks.values()]
        judged = functools.partial(
            _judged_in_one_kernel,
            course,
            assignment,
            source_path.stem,
            sources=sources,
            timeout=timeout,
            sandbox=sandbox,
        )
        if environment is None and (len(groups) == 1 or kernels_at_once <= 1):
            outcomes = [outcome for group in groups for outcome in judged(group)]
        else:
            pool = _judging_pool(max(1, kernels_at_once))
            environ = {**os.environ, **(environment or {})}  # the caller's, now: the pool started earlier
            jobs = [pool.submit(_in_environment, environ, judged, group) for group in groups]
            outcomes = [outcome for job in jobs for outcome in job.result()]
    else:
        raise ValueError(f"{assignment} is judged by neither c.LiteralJudge nor c.GuardedExecute.call_judged")
    return {
        student: Graded(
            _scored(assignment, student, source, source_path.name, errors, notebooks[student], release),
            errors,
            tuple(review),
        )
        for student, (errors, review) in zip(students, outcomes)
    }


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _judging_pool(size: int) -> ProcessPoolExecutor:
    """``size`` spawned processes that judge one kernel each at a time, kept for the next call: each
    imports the judge's libraries once (a fork would copy torch's threads)."""
    if size not in _POOLS:
        _POOLS[size] = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"))
    return _POOLS[size]


def _in_environment(environ: dict[str, str], judged, group: list) -> list:
    """``judged(group)`` in a pool process, with the caller's environment (the kernels inherit it)."""
    os.environ.clear()
    os.environ.update(environ)
    return judged(group)


@contextlib.contextmanager
def _autograde_execution():
    """``NBGRADER_EXECUTION=autograde`` for the kernels started inside (and the processes that start
    them), as nbgrader's Autograde sets it."""
    saved = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = saved


def _judged_in_one_kernel(course, assignment, stem, notebooks, *, sources, timeout, sandbox):
    """``[(errors by test cell, review reasons)]``, one per notebook, all judged in one kernel."""
    from autograder.commands.grade import review_reasons
    from autograder.execute.guarded import GuardedExecute
    from autograder.judge.shortcuts import REFUSED, refusals
    from autograder.judge.sources import defined_names

    class OneKernel(GuardedExecute):
        """GuardedExecute over the students' cells one after another; each student's refused
        shortcuts, flags and events are its own."""

        def preprocess_cell(self, cell, resources, index):
            if index in starts:
                segment = starts[index]
                tampered, events = flags[segment]
                if segment == 0:  # what the setup cells met counts against the first student
                    tampered.update(self._cells)
                    events[:0] = self._events
                self._cells, self._events = tampered, events
                if self._judge is not None:
                    self._judge.refused = refused[segment]
                    self._verdicts = {}
            return super().preprocess_cell(cell, resources, index)

    combined = copy.deepcopy(notebooks[0])
    combined.cells = cells_answers_need(combined, next(iter(sources.first_setup()), None))
    starts, refused, flags = {}, [], []
    table = REFUSED.get(assignment, {})
    # Before each student, the graded names are forgotten: a stub that defines nothing (the blank
    # release) must not inherit the previous student's functions.
    forget = nbformat.v4.new_code_cell(
        f"for __name in {defined_names(sources.answers)!r}:\n    globals().pop(__name, None)\ndel __name"
    )
    for i, nb in enumerate(notebooks):
        cells = [c for c in nb.cells if c.cell_type == "code" and (nbu.is_answer_cell(c) or nbu.is_test_cell(c))]
        starts[len(combined.cells)] = i
        combined.cells += [copy.deepcopy(forget), *copy.deepcopy(cells)]
        answer_sources = [c.source for c in cells if nbu.is_answer_cell(c)]
        refused.append(refusals(answer_sources, table, graded=defined_names(sources.answers)))
        flags.append(({}, []))
    with tempfile.TemporaryDirectory(prefix="autograder-judge-") as tmp:
        executor = OneKernel(
            sandbox=sandbox, call_judged=[assignment], sources=sources, timeout=timeout, scratch_root=tmp
        )
        resources = {
            "nbgrader": {"assignment": assignment, "notebook": stem},
            "metadata": {"path": str(course.path("release", assignment))},
            "unique_key": stem,
        }
        with _autograde_execution():
            executor.preprocess(combined, resources)
    ends = sorted(starts) + [len(combined.cells)]
    outcomes = []
    for i, (start, end) in enumerate(itertools.pairwise(ends)):
        errors = {}
        for cell in combined.cells[start:end]:
            for out in cell.get("outputs", []):
                if nbu.is_test_cell(cell) and out.get("output_type") == "error":
                    errors[nbu.cell_id(cell)] = f"{out.get('ename', '')}: {out.get('evalue', '')}"
        tampered, events = flags[i]
        outcomes.append((errors, review_reasons({stem: {"tampered": tampered, "events": events}})))
    return outcomes


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a cell binds at top level: assignments, definitions, imports."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _global_reads(source: str) -> set[str]:
    """The global names a cell's code reads: at top level, or from inside its functions and classes."""
    try:
        table = symtable.symtable(source, "<cell>", "exec")
    except SyntaxError:
        return set()
    found, tables = set(), [table]
    while tables:
        t = tables.pop()
        top = t.get_type() == "module"
        found |= {s.get_name() for s in t.get_symbols() if s.is_referenced() and (top or s.is_global())}
        tables += t.get_children()
    return found


def cells_answers_need(nb, setup: str | None) -> list:
    """The code cells, besides the answers and tests, that the answer cells' code reads: the setup
    cell ``setup`` (the imports) and every other non-graded cell that binds a global name an answer
    (or a cell already needed) reads, in notebook order. The teaching cells that only use the
    answers stay out."""
    code = [c for c in nb.cells if c.cell_type == "code" and not nbu.is_test_cell(c)]
    binds, reads = {}, {}
    for c in code:
        try:
            binds[id(c)] = _top_level_names(ast.parse(c.source))
        except SyntaxError:
            binds[id(c)] = set()
        reads[id(c)] = _global_reads(c.source)
    chosen = {id(c) for c in code if nbu.cell_id(c) == setup or nbu.is_answer_cell(c)}
    while True:
        wanted = set().union(*(reads[i] for i in chosen)) - set().union(*(binds[i] for i in chosen))
        more = {id(c) for c in code if id(c) not in chosen and binds[id(c)] & wanted}
        if not more:
            return [c for c in code if id(c) in chosen and not nbu.is_answer_cell(c)]
        chosen |= more


def _scored(
    assignment: str, student: str, source, name: str, errors: dict[str, str], submitted, release
) -> SubmissionGrade:
    """The grade nbgrader would record: each test cell its points unless it failed; a hand-graded
    cell left as the release has it scores 0 (nbgrader's rule for an unanswered one), else waits."""
    stubs = {nbu.cell_id(c): c.source for c in release.cells if nbu.cell_id(c)}
    answered = {nbu.cell_id(c): c.source for c in submitted.cells if nbu.cell_id(c)}
    cells = []
    for c in source.cells:
        meta = nbu.nbgrader_meta(c)
        if not meta.get("grade"):
            continue
        cid, points, auto = nbu.cell_id(c), float(meta.get("points", 0)), nbu.is_test_cell(c)
        if auto:
            score = 0.0 if cid in errors else points
        else:
            score = 0.0 if answered.get(cid, stubs.get(cid)) == stubs.get(cid) else None
        cells.append(CellGrade(name, cid, score, points, auto))
    total = sum(c.score or 0.0 for c in cells)
    return SubmissionGrade(assignment, student, total, sum(c.max_score for c in cells), tuple(cells))
