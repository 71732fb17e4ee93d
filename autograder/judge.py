"""The judge: test cells graded in the grader's own process, from plain data read out of the submission.

Whatever runs in the student's kernel can be fooled by code that ran there first, so for an
assignment whose answers are literals (``04_practice``: ``answer_q1 = "B"``) nothing the kernel
did decides a grade. The judge

- reads each answer from the submitted notebook's *text* with :mod:`ast` (``ast.literal_eval`` of
  a top-level ``name = <literal>``): the student's code is never run, imported or evaluated;
- takes each test cell's source, hidden tests included, from the gradebook (what the instructor's
  source notebook registered), never from the submitted notebook, whose cells a student can forge;
- runs that source here, with only the literal answers bound, and replaces the test cell's outputs
  with its verdict: nothing when it passes, one ``AssertionError`` with the teaching message when it
  fails. nbgrader's own scoring then reads the judge's outputs only, so an ``execute_result`` or a
  token that student code printed decides nothing.

It sits in the autograde pipeline right after the sandboxed execution, so ``autograder grade`` and
the formgrader's Autograde button both go through it. Which assignments it judges is the course's
configuration (``c.LiteralJudge.assignments`` in ``nbgrader_config.py``), not the notebook's
metadata, which the student controls.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Any

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from . import objects
from .notebook import cell_id, parsed_cells
from .remote import Channel, Execute, Remote

__all__ = [
    "AMBIGUOUS",
    "CallJudge",
    "LiteralJudge",
    "TestSources",
    "defined_names",
    "import_statements",
    "judge_cell",
    "judge_sources",
    "literal_answers",
    "run_test",
]

MAX_CELL_CHARS = 20_000  # an answer cell longer than this is not read
AMBIGUOUS = object()  # a name given two different literal values


def literal_answers(sources: list[str]) -> dict[str, Any]:
    """Every top-level ``name = <literal>`` in ``sources``, read with ``ast.literal_eval``.

    Nothing else in a cell is read or run. A name assigned two different literals maps to
    :data:`AMBIGUOUS`; a cell that does not parse, or is too long, contributes nothing.
    """
    found: dict[str, Any] = {}
    for tree in parsed_cells(sources, MAX_CELL_CHARS):
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                continue
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            name = node.targets[0].id
            if name in found and (
                found[name] is AMBIGUOUS or found[name] != value or type(found[name]) is not type(value)
            ):
                found[name] = AMBIGUOUS
            else:
                found[name] = value
    return found


def judge_cell(source: str, answers: dict[str, Any], cell: str) -> str | None:
    """Run the test ``source`` (the instructor's) with ``answers`` bound; None when it passes, else the message."""
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__judge__"}
    for name, value in answers.items():
        if value is not AMBIGUOUS:
            namespace[name] = value
    return run_test(source, namespace, cell, answers)


def run_test(source: str, namespace: dict, cell: str, answers: dict | None = None) -> str | None:
    """Run the instructor's test ``source`` in ``namespace``; None when it passes, else ``"Ename: message"``.

    ``answers``: the literal answers a :class:`LiteralJudge` read (None for a :class:`CallJudge`); a
    name missing from them gets the literal-answer advice, which means nothing for a function.
    """
    try:
        exec(compile(source, f"<test cell {cell}>", "exec"), namespace)
    except AssertionError as exc:
        return _capped(f"AssertionError: {exc}")
    except NameError as exc:
        name = getattr(exc, "name", None)
        if answers is None or not name:
            # A function's code (run in the student's kernel) read a name its notebook never defined.
            return _capped(
                f"NameError: {exc}. Your code uses a name that does not exist when it runs: define or import "
                "it in a cell above the one that uses it, and check its spelling"
            )
        if answers.get(name) is AMBIGUOUS:
            return f"AssertionError: {name} is given two different values; give it one"
        return (
            f"AssertionError: no answer found for {name}: write it as one plain literal in its answer cell, "
            f'for example {name} = "B" (the grader reads the literal; it does not run the cell)'
        )
    except Exception as exc:  # the instructor's test met a value it did not expect: the answer is wrong
        return _capped(f"{type(exc).__name__}: {exc}")
    return None


def _capped(message: str, limit: int = 2000) -> str:
    # A message may quote a value the student's code returned: keep it to a readable size.
    return message if len(message) <= limit else message[:limit] + " [...]"


def defined_names(sources: list[str]) -> list[str]:
    """The functions and classes the (instructor's) answer cells define at top level, in order."""
    names = []
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names += [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    return names


def import_statements(sources: list[str]) -> list[str]:
    """Every ``import`` and ``from ... import`` statement in ``sources`` (the instructor's cells),
    at any depth, as one line of source each, in order and without repeats: what a judge that
    runs those cells will import."""
    found: list[str] = []
    for tree in parsed_cells(sources, 1_000_000):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "level", 0) == 0:
                line = ast.unparse(node)
                if line not in found:
                    found.append(line)
    return found


def judge_sources(nb) -> list[str]:
    """The cells of an instructor's notebook that a :class:`CallJudge` runs: the first locked code
    cell that is neither an answer nor a test (the notebook's imports), and every test cell."""
    from .notebook import is_test_cell, nbgrader_meta

    code = [c for c in nb.cells if c.cell_type == "code"]
    # As TestSources reads them: locked, neither a solution nor graded.
    setup = [c for c in code if (m := nbgrader_meta(c)).get("locked") and not m.get("solution") and not m.get("grade")]
    return [c.source for c in setup[:1]] + [c.source for c in code if is_test_cell(c)]


class CallJudge:
    """The judge of a function-valued notebook: the instructor's setup cells and test cells run here,
    in one namespace, where each graded name is a :class:`~autograder.remote.Remote` into the
    student's kernel."""

    def __init__(
        self, setup: list[str], names: list[str], execute: Execute, refused: dict[str, str] | None = None
    ) -> None:
        self.namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__judge__"}
        self.setup, self.names = setup, names
        self.refused = refused or {}  # graded name -> why its code is refused (autograder.shortcuts)
        self.channel = Channel(execute)
        self._ready = False

    def _prepare(self) -> None:
        self.remote = {name: Remote(self.channel, {"name": name}) for name in self.names}
        self.namespace.update(self.remote)
        for i, source in enumerate(self.setup):
            # As in the kernel, a setup cell that fails (it may call a student's function) does not
            # stop the cells after it; the tests that need what it made fail on their own.
            try:
                exec(compile(source, f"<setup cell {i}>", "exec"), self.namespace)
            except Exception:
                pass
            self.namespace.update(self.remote)  # a setup cell cannot shadow a graded name
        self._ready = True

    def verdict(self, source: str, cell: str) -> str | None:
        """None when the test ``source`` passes against the student's functions, else its message.

        The test of a function whose code uses a forbidden shortcut (``test_<name>``, or
        ``test_<name>_<part>``) fails with that message whatever it found. It still runs: the
        names it defines (the running example) are what later test cells read.
        """
        refused = [m for n, m in self.refused.items() if cell == f"test_{n}" or cell.startswith(f"test_{n}_")]
        previous, objects._channel = objects._channel, self.channel
        try:
            if not self._ready:
                self._prepare()
            verdict = run_test(source, self.namespace, cell)
            return _capped(f"AssertionError: {refused[0]}") if refused else verdict
        finally:
            objects._channel = previous
            self.channel.release()  # what the kernel kept for this test (models, layers) is freed


@dataclass(frozen=True)
class TestSources:
    """What a judge runs, as the instructor's source notebook has it (never the submission's cells):
    the test cells' sources by grade id, the locked setup cells' by grade id, and the answer
    cells' sources (to know which names are graded)."""

    tests: dict[str, str]
    setup: dict[str, str]
    answers: list[str]

    @classmethod
    def from_gradebook(cls, db_url: str, assignment: str, notebook: str) -> TestSources:
        """What the instructor's source registered in the gradebook (the grading pipeline's way)."""
        from nbgrader.api import Gradebook

        with Gradebook(db_url) as gb:
            nb = gb.find_notebook(notebook, assignment)
            solutions = {c.name for c in nb.solution_cells}
            grades = {c.name for c in nb.grade_cells}
            cells = [
                (c.name, c.source, c.name in grades, c.name in solutions, c.locked)
                for c in nb.source_cells
                if c.cell_type == "code"
            ]
        return cls._sorted(cells)

    @classmethod
    def from_notebook(cls, nb) -> TestSources:
        """The same, read straight from the instructor's source notebook (tests, rehearsals)."""
        from .notebook import cell_id, nbgrader_meta

        cells = []
        for c in nb.cells:
            meta = nbgrader_meta(c)
            if c.cell_type == "code" and cell_id(c):
                cells.append(
                    (
                        cell_id(c),
                        c.source,
                        bool(meta.get("grade")),
                        bool(meta.get("solution")),
                        bool(meta.get("locked")),
                    )
                )
        return cls._sorted(cells)

    @classmethod
    def _sorted(cls, cells: list[tuple[str, str, bool, bool, bool]]) -> TestSources:
        tests, setup, answers = {}, {}, []
        for name, source, graded, solution, locked in cells:
            if graded and not solution:
                tests[name] = source
            elif solution:
                answers.append(source)
            elif locked:
                setup[name] = source
        return cls(tests, setup, answers)


class LiteralJudge(NbGraderPreprocessor):
    """Replace the outputs of every test cell of a judged assignment with the judge's verdict."""

    assignments = List(
        Unicode(), [], help="Assignments whose answers are literals and whose test cells the judge grades"
    ).tag(config=True)

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        if info.get("assignment") not in self.assignments:
            return nb, resources
        tests = TestSources.from_gradebook(info["db_url"], info["assignment"], info["notebook"]).tests
        answer_sources = [
            c.source
            for c in nb.cells
            if c.cell_type == "code" and cell_id(c) not in tests and isinstance(c.source, str)
        ]
        answers = literal_answers(answer_sources)
        for cell in nb.cells:
            name = cell_id(cell)
            if cell.cell_type != "code" or name not in tests:
                continue
            message = judge_cell(tests[name], answers, name)
            if message is None:
                cell.outputs = []
            else:
                ename, _, evalue = message.partition(": ")
                cell.outputs = [new_output("error", ename=ename, evalue=evalue, traceback=[message])]
        return nb, resources
