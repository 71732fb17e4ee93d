"""What a judge runs, and where it comes from: the instructor's cells, never the submission's.

:class:`TestSources` holds the test cells, the locked setup cells and the answer cells' sources, read
from the gradebook (what the instructor's source registered: the grading pipeline's way) or straight
from the instructor's source notebook (rehearsals and tests). The rule for which setup cell a judge
runs (:meth:`TestSources.first_setup`) lives here and nowhere else.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from autograder import gradebook
from autograder.course import CourseError
from autograder.notebook import cell_id, nbgrader_meta, parsed_cells, read_notebook


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
    """The cells of an instructor's notebook that a call judge runs: its first setup cell (the
    notebook's imports) and every test cell."""
    sources = TestSources.from_notebook(nb)
    return [sources.setup[k] for k in sources.first_setup()] + list(sources.tests.values())


@dataclass(frozen=True)
class TestSources:
    """What a judge runs, as the instructor's source notebook has it (never the submission's cells):
    the test cells' sources by grade id, the locked setup cells' by grade id, and the answer
    cells' sources (to know which names are graded)."""

    tests: dict[str, str]
    setup: dict[str, str]
    answers: list[str]

    @classmethod
    def from_gradebook(cls, db_url: str, assignment: str, notebook: str, order_from: Path | None = None) -> TestSources:
        """What the instructor's source registered in the gradebook (the grading pipeline's way), in
        the order of the cells of the instructor's notebook at ``order_from`` when it can be read
        (the gradebook keeps no order)."""
        sources = cls._sorted(gradebook.source_code_cells(db_url, assignment, notebook))
        if order_from is None:
            return sources
        try:
            nb = read_notebook(order_from)
        except CourseError:
            return sources
        return sources.in_order([cell_id(c) for c in nb.cells])

    @classmethod
    def from_notebook(cls, nb) -> TestSources:
        """The same, read straight from the instructor's source notebook (tests, rehearsals)."""
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

    def in_order(self, order: list[str]) -> TestSources:
        """The same cells, tests and setup cells sorted by their grade ids' places in ``order`` (the
        instructor's notebook): the order in which a judge runs the tests, whatever the submission's
        layout. Cells ``order`` leaves out keep their order, after the rest."""
        place = {name: i for i, name in reversed(list(enumerate(order)))}

        def sort(cells: dict[str, str]) -> dict[str, str]:
            return {name: cells[name] for name in sorted(cells, key=lambda n: place.get(n, len(place)))}

        return TestSources(sort(self.tests), sort(self.setup), self.answers)

    def first_setup(self, order: dict[str, int] | None = None) -> list[str]:
        """The grade id of the one setup cell a judge runs (the notebook's imports), as a list (empty
        when there is none): the first in ``order`` (grade id -> position), else in reading order.
        The later setup cells load models, train and plot for the student to read."""
        if order is None:
            return list(self.setup)[:1]
        return sorted(self.setup, key=lambda k: (order.get(k, len(order)), k))[:1]
