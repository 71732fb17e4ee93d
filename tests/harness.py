"""What the tests share: the course, its points, and one way to prove that tests can fail.

Importable from any test file (``from harness import ...``); the pytest plumbing that goes with it
(parametrizing a table's cases, its class-scoped grading run, the sandbox requirement) lives in
``conftest.py``.

The mistake table
-----------------
Each assignment's test file declares its answers once::

    TABLE = MistakeTable(
        assignment="01_lora_basics",
        right={"full_param_count": "def full_param_count(...): ...", ...},   # right, written differently
        mistakes=(
            Mistake("full_no_bias", {"full_param_count": "def ..."}, {"test_full_param_count": "bias"}),
            ...
        ),
        uses={"LoRALinear": ("test_inject_lora", "test_inject_lora_minilm")},  # cells that also run it
    )

    class TestMistakes(MistakeTests):
        table = TABLE

and inherits the standard tests: the table is complete (every answer cell has a right answer
written differently and at least one mistake; every test cell is shown failing); the
right-differently student earns full marks on every autograded cell; each (mistake, cell) scores
zero with an ``AssertionError`` whose message contains the words (test ids ``mistake-cell``); and a
mistake costs nothing it does not list: every other cell of its mock student keeps its points.

A test cell *uses* an answer when it is named ``test_<answer>`` or ``test_<answer>_...``, when a
mistake in that answer is expected to lose it, or when the table declares it in ``uses`` (a
wrong ``LoRALinear`` also changes what ``test_inject_lora`` sees). :meth:`MistakeTable.students`
packs the mistakes into as few mock students as it can, such that no student holds two mistakes
in the same answer, nor a mistake that touches (uses) a cell another one of its mistakes is
expected to lose: every failure is the doing of the mistake it is blamed on. All of them are judged
through the judge's seam (:func:`autograder.commands.rehearsal.judge_notebooks`: the hidden tests run by the
judge in this process, against one sandboxed kernel that has run only the setup and answer cells),
with the right-differently student and the blank release. One whole nbgrader run per assignment
proves the seam is the pipeline: the run ``autograder check`` makes (reference and blank) grades
the right-differently student too, and it and the blank get exactly the seam's scores and messages.

A cell that loses its points to a mistake through a bare exception instead of a teaching message is
listed in ``untaught``: it must still score zero, and its (mistake, cell) case is a strict xfail that
turns red once the hidden test names the mistake. Every table is judged with one math thread
(``OMP_NUM_THREADS=1``); ``FloatMistakeTests`` judges a table's float-valued mistakes with two as
well. 04_practice's letters and messages come from ``practice.py``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path

import pytest

from autograder import notebook as nbu
from autograder.commands.check import CheckResult
from autograder.commands.nbgrader_run import scratch_course
from autograder.commands.rehearsal import BLANK, Graded, judge_notebooks, with_answers
from autograder.course import Course

ROOT = Path(__file__).resolve().parents[1]
RIGHT_STUDENT = "right_differently"


@cache
def course() -> Course:
    return Course.load(ROOT)


def source_notebook(assignment: str):
    return nbu.read_notebook(ROOT / "source" / assignment / f"{assignment}.ipynb")


def source_cell(assignment: str, cell: str) -> str:
    """The source of the cell of the instructor's notebook with this id or grade id."""
    (found,) = [c.source for c in source_notebook(assignment).cells if cell in (c.get("id"), nbu.cell_id(c))]
    return found


def cell_text(assignment: str, cell: str) -> str:
    """That cell's text with its whitespace made single spaces (a statement may wrap anywhere)."""
    return " ".join(source_cell(assignment, cell).split())


@cache
def points(assignment: str) -> dict[str, float]:
    """``{autograded test cell id: points}``, in notebook order, from the source's nbgrader metadata."""
    return {
        nbu.cell_id(c): float(nbu.nbgrader_meta(c)["points"])
        for c in source_notebook(assignment).cells
        if nbu.is_test_cell(c)
    }


@cache
def max_score(assignment: str) -> float:
    """Every graded cell's points, the autograded tests and what a human grades (05's reflection)."""
    return sum(
        float(nbu.nbgrader_meta(c).get("points", 0))
        for c in source_notebook(assignment).cells
        if nbu.nbgrader_meta(c).get("grade")
    )


@cache
def answer_cells(assignment: str) -> tuple[str, ...]:
    """Grade ids of the autograded answer cells (the names students implement), in notebook order."""
    return tuple(nbu.cell_id(c) for c in source_notebook(assignment).cells if nbu.is_answer_cell(c))


def variant_notebooks(assignment: str, variants: dict[str, dict[str, str]]) -> dict:
    """``{student: notebook}``: the source notebook (reference solutions) with each variant's answers
    (``{answer grade id: replacement source}``) in place; answers a variant leaves out stay right."""
    nb = source_notebook(assignment)
    return {student: with_answers(nb, answers) for student, answers in variants.items()}


@dataclass(frozen=True)
class PipelineRun:
    """An assignment's one whole nbgrader run: ``autograder check``'s results by check name, and
    every student it graded (reference, blank and the table's witnesses) by id."""

    checks: dict[str, CheckResult]
    graded: dict[str, Graded]


_PIPELINES: dict[str, Future] = {}
# The tables are judged with one math thread, as ``autograder grade --jobs 2`` runs each kernel on a
# 2-core machine; FloatMistakeTests judges its float-valued mistakes with two as well.
TABLE_THREADS = "1"
_GRADED: dict[tuple[int, str], dict[str, Graded]] = {}  # (id(table), OMP_NUM_THREADS) -> grades
_SCRATCH = tempfile.TemporaryDirectory(prefix="autograder-tests-")  # removed when the session ends
# The whole runs are made one after another in this thread, while the tests go on: a run spends much
# of its time in nbgrader's and the kernels' start-up, when a core is free for the seam's work.
_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")


def pipeline(table: MistakeTable) -> PipelineRun:
    """The assignment's checks and its table's witnesses from one nbgrader run, made once per session.

    The reference, the blank release and the right-differently student (the table's witnesses,
    :meth:`MistakeTable.witnesses`, with the blank) are graded together by
    :func:`autograder.commands.check.assignment_checks`, the very run ``autograder check`` makes, so
    the suite pays for one whole run per assignment. Waits for the run when
    :func:`start_pipelines` began it in the background."""
    start_pipelines([table])
    return _PIPELINES[table.assignment].result()


def start_pipelines(tables: list[MistakeTable]) -> None:
    """Begin the whole runs of these tables' assignments in the background, in this order (the
    collected tests that need them call it: see ``conftest.py``)."""
    for table in tables:
        if table.assignment not in _PIPELINES:
            _PIPELINES[table.assignment] = _BACKGROUND.submit(_pipeline_run, table)


def stop_pipelines() -> None:
    """Start no more background runs (the session is ending); the one running finishes."""
    _BACKGROUND.shutdown(wait=False, cancel_futures=True)


def _pipeline_run(table: MistakeTable) -> PipelineRun:
    from autograder.commands.check import assignment_checks

    a = table.assignment
    right = variant_notebooks(a, {RIGHT_STUDENT: table.variants()[RIGHT_STUDENT]})
    also = {RIGHT_STUDENT: {f"{a}.ipynb": right[RIGHT_STUDENT]}}
    scratch = scratch_course(course(), Path(_SCRATCH.name) / a, [a])
    results, graded = assignment_checks(course(), a, scratch, also)
    return PipelineRun({r.check: r for r in results}, graded)


def require_sandbox() -> None:
    """Fail (never skip) when bubblewrap cannot build the grading sandbox: the machine is not set up."""
    from autograder.execute import sandbox

    reason = sandbox.unavailable_reason()
    if reason is not None:
        pytest.fail(f"the grading sandbox is missing: {reason}. Run ./setup (it installs bubblewrap).", pytrace=False)


def assert_loses_and_names(graded: Graded, cell: str, words: str, label: str, exact: bool = False) -> None:
    """A wrong answer scores zero on ``cell`` and its assertion message contains ``words`` (or is exactly it)."""
    assert graded.score(cell) == 0, f"{label}: {cell} still earned {graded.score(cell)}"
    error = graded.errors.get(cell, "")
    assert error.startswith("AssertionError: "), f"{label}: {cell} failed without a teaching message: {error!r}"
    if exact:
        assert error == f"AssertionError: {words}", f"{label}: {cell} says {error!r}, not {words!r}"
    else:
        assert words in error, f"{label}: {cell} should name the mistake with {words!r}; it says {error!r}"


# --- the mistake table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Mistake:
    """One plausible wrong answer: the answer cells it replaces and what each test cell must say."""

    name: str
    answers: Mapping[str, str]  # answer grade id -> wrong source
    loses: Mapping[str, str]  # test cell id -> words its AssertionError must contain


@dataclass(frozen=True)
class Case:
    """One (mistake, test cell) pair: the cell must score zero and its message contain ``words``."""

    mistake: str
    cell: str
    words: str

    @property
    def id(self) -> str:
        return f"{self.mistake}-{self.cell}"


@dataclass(frozen=True)
class MistakeTable:
    """An assignment's right-differently answers and its plausible mistakes."""

    assignment: str
    right: Mapping[str, str]  # answer grade id -> a right answer written differently
    mistakes: tuple[Mistake, ...]
    # answer grade id -> test cells that run it too (beyond test_<answer>* and the cells its mistakes lose)
    uses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # (mistake, cell) -> what the cell raises today instead of a teaching message: a known gap in the
    # hidden tests. The cell must still score zero; the teaching-message case is a strict xfail.
    untaught: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # The table this one was cut from with ``only``: its grades serve this one's at the tables' thread count.
    whole: MistakeTable | None = field(default=None, compare=False, repr=False)

    # -- reading the table --

    def only(self, names: list[str] | tuple[str, ...]) -> MistakeTable:
        """The same table with only the named mistakes (a smaller run)."""
        missing = set(names) - {m.name for m in self.mistakes}
        assert not missing, f"no such mistakes: {sorted(missing)}"
        return replace(self, mistakes=tuple(m for m in self.mistakes if m.name in names), whole=self.whole or self)

    def cases(self) -> list[Case]:
        return [Case(m.name, cell, words) for m in self.mistakes for cell, words in m.loses.items()]

    def params(self) -> list:
        """``cases()`` as pytest parameters, id ``mistake-cell``; an untaught pair is a strict xfail.

        Strict: the day the hidden test gives that cell a teaching message, the xfail turns red and
        the pair leaves ``untaught``.
        """
        params = []
        for case in self.cases():
            raises = self.untaught.get((case.mistake, case.cell))
            why = f"no teaching message yet: the cell raises {raises}"
            marks = [pytest.mark.xfail(strict=True, reason=why)] if raises else []
            params.append(pytest.param(case, id=case.id, marks=marks))
        return params

    def cells_using(self, answer: str) -> set[str]:
        own = {c for c in points(self.assignment) if c == f"test_{answer}" or c.startswith(f"test_{answer}_")}
        # A mistake in several answers (04's lower-case letters) says nothing about which one costs what.
        lost = {c for m in self.mistakes if set(m.answers) == {answer} for c in m.loses}
        return own | lost | set(self.uses.get(answer, ()))

    def touches(self, mistake: Mistake) -> set[str]:
        """Test cells whose outcome the mistake can change."""
        cells = set(mistake.loses)
        for answer in mistake.answers:
            cells |= self.cells_using(answer)
        return cells

    def conflict(self, a: Mistake, b: Mistake) -> str | None:
        """Why ``a`` and ``b`` cannot be held by one mock student, or None."""
        shared = set(a.answers) & set(b.answers)
        if shared:
            return f"both answer {sorted(shared)}"
        for x, y in ((a, b), (b, a)):
            blurred = self.touches(x) & set(y.loses)
            if blurred:
                return f"{x.name} changes {sorted(blurred)}, where {y.name} is expected to fail"
        return None

    def students(self) -> dict[str, tuple[Mistake, ...]]:
        """The mock students: ``{student id: its mistakes}``."""
        return self._packed

    @cached_property
    def _packed(self) -> dict[str, tuple[Mistake, ...]]:
        """The mistakes packed into as few mock students as a greedy colouring finds (most constrained first)."""
        degree = {
            m.name: sum(self.conflict(m, o) is not None for o in self.mistakes if o is not m) for m in self.mistakes
        }
        order = sorted(self.mistakes, key=lambda m: -degree[m.name])  # stable: ties keep the table's order
        packed: list[list[Mistake]] = []
        for m in order:
            home = next((s for s in packed if all(self.conflict(m, o) is None for o in s)), None)
            if home is None:
                packed.append([m])
            else:
                home.append(m)
        return {f"wrong_{i}": tuple(s) for i, s in enumerate(packed, 1)}

    def student_of(self, mistake: str) -> str:
        return next(s for s, ms in self.students().items() if any(m.name == mistake for m in ms))

    # -- grading --

    def variants(self) -> dict[str, dict[str, str]]:
        """``{student id: {answer grade id: source}}``: the right-differently student, then the mock students."""
        right = {RIGHT_STUDENT: {a: src.strip("\n") for a, src in self.right.items()}}
        wrong = {
            s: {a: src.strip("\n") for m in ms for a, src in m.answers.items()} for s, ms in self.students().items()
        }
        return {**right, **wrong}

    def grade(self, environment: dict[str, str] | None = None) -> dict[str, Graded]:
        """Every mock student, the right-differently one and the blank release (``BLANK``: every
        graded name a stub), judged through the judge's seam in one kernel (with ``environment``'s
        variables set in it)."""
        notebooks = variant_notebooks(self.assignment, self.variants())
        notebooks[BLANK] = nbu.read_notebook(ROOT / "release" / self.assignment / f"{self.assignment}.ipynb")
        return judge_notebooks(course(), self.assignment, notebooks, environment=environment)

    def graded(self, threads: str = TABLE_THREADS) -> tuple[MistakeTable, dict[str, Graded]]:
        """``(table, grades)``: :meth:`grade` with ``OMP_NUM_THREADS=threads``, once per session, and the
        table whose students the grades name. A part of a table (:meth:`only`) at the tables' own thread
        count reads the whole table's grades: each of its mistakes is there, held by another student."""
        if self.whole is not None and threads == TABLE_THREADS:
            return self.whole.graded(threads)
        key = (id(self), threads)
        if key not in _GRADED:
            _GRADED[key] = self.grade({"OMP_NUM_THREADS": threads})
        return self, _GRADED[key]

    def witnesses(self) -> tuple[str, ...]:
        """The students the whole pipeline grades besides the reference: the right-differently one
        (every cell passing) and the blank release (every cell failing, each with its message),
        which ``autograder check`` grades anyway."""
        return RIGHT_STUDENT, BLANK


class MistakeTests:
    """The standard tests of a :class:`MistakeTable`; subclass as ``TestX`` and set ``table``.

    ``table_grades`` (conftest.py) grades the table once per session; ``case`` is parametrized by
    conftest.py's ``pytest_generate_tests`` over ``table.cases()`` with ids ``mistake-cell``.
    """

    table: MistakeTable

    def test_table_is_complete(self):
        t = self.table
        answers, tests = answer_cells(t.assignment), points(t.assignment)
        names = [m.name for m in t.mistakes]
        assert len(names) == len(set(names)), "two mistakes share a name"
        assert set(t.right) == set(answers), f"right-differently answers: {sorted(t.right)}; graded: {answers}"
        wrong = {a for m in t.mistakes for a in m.answers}
        assert set(answers) <= wrong, f"no wrong answer for {sorted(set(answers) - wrong)}"
        assert wrong <= set(answers), f"not answer cells: {sorted(wrong - set(answers))}"
        for m in t.mistakes:
            assert m.loses, f"{m.name} is expected to lose nothing"
            assert set(m.loses) <= set(tests), f"{m.name}: not test cells: {sorted(set(m.loses) - set(tests))}"
            empty = [c for c, words in m.loses.items() if not words.strip()]
            assert not empty, f"{m.name}: {empty} expect an empty phrase, which any message contains"
        shown = {c.cell for c in t.cases()}
        assert set(tests) <= shown, f"no mistake shows these cells failing: {sorted(set(tests) - shown)}"
        used = set().union(*(t.cells_using(a) for a in answers))
        assert set(tests) <= used, f"cells that use no answer (declare them in `uses`): {sorted(set(tests) - used)}"
        assert {(c.mistake, c.cell) for c in t.cases()} >= set(t.untaught), "untaught pairs must be cases"

    def test_students_hold_no_two_mistakes_that_blur_each_other(self):
        students = self.table.students()
        held = sorted(m.name for ms in students.values() for m in ms)
        assert held == sorted(m.name for m in self.table.mistakes), "every mistake is held by exactly one student"
        for student, ms in students.items():
            for i, a in enumerate(ms):
                for b in ms[i + 1 :]:
                    assert self.table.conflict(a, b) is None, f"{student}: {self.table.conflict(a, b)}"

    @pytest.mark.slow
    def test_right_answers_written_differently_earn_full_marks(self, table_grades):
        g = table_grades[RIGHT_STUDENT]
        lost = {c.cell: (c.score, g.errors.get(c.cell)) for c in g.grade.cells if c.auto and c.score != c.max_score}
        assert not lost, lost
        assert {c.cell: c.max_score for c in g.grade.cells if c.auto} == points(self.table.assignment)
        assert g.grade.score == sum(points(self.table.assignment).values())
        assert g.grade.max_score == max_score(self.table.assignment)
        assert not g.review, g.review

    @pytest.mark.slow
    def test_the_whole_pipeline_gives_the_seams_verdicts(self, table_grades):
        """The seam is the pipeline: the right-differently student and the blank release, graded
        by the assignment's one whole nbgrader run (pool, sandbox, gradebook; the run ``autograder
        check`` makes, see :func:`pipeline`), get the seam's scores and messages."""
        t = self.table
        graded = pipeline(t).graded
        for student in t.witnesses():
            seam, whole = table_grades[student], graded[student]
            assert {c.cell: c.score for c in whole.grade.cells} == {c.cell: c.score for c in seam.grade.cells}, student
            assert whole.grade.score == seam.grade.score and whole.grade.max_score == seam.grade.max_score, student
            tests = points(t.assignment)  # the pipeline also records an answer cell's own error (a stub's)
            assert {c: e for c, e in whole.errors.items() if c in tests} == seam.errors, student
            assert whole.review == seam.review == (), student

    @pytest.mark.slow
    def test_each_mistake_loses_its_points_and_is_named(self, table_grades, case):
        t = self.table
        graded = table_grades[t.student_of(case.mistake)]
        assert_loses_and_names(graded, case.cell, case.words, case.mistake)

    @pytest.mark.slow
    def test_untaught_cells_still_score_zero(self, table_grades):
        """A cell that fails through a bare exception (a known gap, a strict xfail above) still earns nothing."""
        t = self.table
        kept = {
            (mistake, cell): table_grades[t.student_of(mistake)].score(cell)
            for mistake, cell in t.untaught
            if table_grades[t.student_of(mistake)].score(cell) != 0
        }
        assert not kept, f"these mistakes kept points: {kept}"

    @pytest.mark.slow
    def test_wrong_answers_do_not_spill_over(self, table_grades):
        """Every point a mistake costs is listed in its ``loses``: each other cell keeps its points.

        Nobody is flagged for review either: these are honest, if wrong, notebooks.
        """
        t = self.table
        spilled = []
        for student, ms in t.students().items():
            g = table_grades[student]
            assert not g.review, f"{student} was flagged: {g.review}"
            listed = set().union(*(m.loses for m in ms))
            for cell in points(t.assignment):
                if cell not in listed and not g.full_marks(cell):
                    spilled.append(f"{student} ({', '.join(m.name for m in ms)}): {cell} {g.errors.get(cell)!r}")
        assert not spilled, "wrong answers cost cells their mistakes do not list:\n" + "\n".join(spilled)


class FloatMistakeTests:
    """A table of float-valued mistakes graded with one math thread and with two: each is still named.

    Reductions in several threads add in another order; a message that picks the mistake by comparing
    floats must not change with ``OMP_NUM_THREADS`` (the sandbox passes it through to the kernel).
    Subclass as ``TestX`` and set ``table`` (``TABLE.only([...])``: only array-valued mistakes). ``threaded_grades``
    (conftest.py) gives ``(table, grades)`` per thread count: at one thread the whole table's (``TestMistakes``
    judged them so), at two this part's own.
    """

    table: MistakeTable

    @pytest.mark.slow
    def test_each_mistake_is_named_whatever_the_thread_count(self, threaded_grades, case):
        table, grades = threaded_grades
        graded = grades[table.student_of(case.mistake)]
        assert_loses_and_names(graded, case.cell, case.words, case.mistake)

    @pytest.mark.slow
    def test_right_answers_earn_full_marks_whatever_the_thread_count(self, threaded_grades):
        g = threaded_grades[1][RIGHT_STUDENT]
        lost = {c.cell: g.errors.get(c.cell) for c in g.grade.cells if c.auto and c.score != c.max_score}
        assert not lost, lost
