"""04_practice's answers, read once from the source notebook: the one place tests learn them.

``practice_letters()`` gives the right letter of every question; ``practice_questions()`` also the
offered letters, the hidden test's teaching message for each wrong letter and the points; and
``practice_notebook(letters)`` a filled-in copy of the released notebook, as a student would submit it.
Light to import (no grader, no nbgrader): the end-to-end tests use it too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nbformat

from autograder import notebook as nbu

ROOT = Path(__file__).resolve().parents[1]
A = "04_practice"
NB = f"{A}.ipynb"


@dataclass(frozen=True)
class Question:
    number: int
    right: str  # the solution's letter
    options: tuple[str, ...]  # the letters offered, in order
    mistakes: Mapping[str, str]  # wrong letter -> the hidden test's teaching message
    points: float

    @property
    def wrong(self) -> list[str]:
        return [letter for letter in self.options if letter != self.right]


def _notebook(folder: str) -> nbformat.NotebookNode:
    return nbu.read_notebook(ROOT / folder / A / NB)


def _mistake_table(source: str, n: int) -> dict[str, str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == f"_mistake_q{n}":
            return ast.literal_eval(node.value)
    raise AssertionError(f"test_q{n} has no _mistake_q{n} table")


@cache
def practice_questions() -> dict[int, Question]:
    """Every question of the source notebook, by number (1-11)."""
    cells = {nbu.cell_id(c): c for c in _notebook("source").cells if nbu.cell_id(c)}
    found = {}
    for cid in cells:
        if not cid.startswith("answer_q"):
            continue
        n = int(cid.removeprefix("answer_q"))
        match = re.search(rf'answer_q{n}\s*=\s*"([A-Z])"', cells[cid].source)
        assert match, f"answer_q{n}'s solution is not a plain letter"
        found[n] = Question(
            number=n,
            right=match.group(1),
            options=tuple(re.findall(r"\*\*([A-Z])\.\*\*", cells[f"q{n}_question"].source)),
            mistakes=_mistake_table(cells[f"test_q{n}"].source, n),
            points=float(nbu.nbgrader_meta(cells[f"test_q{n}"])["points"]),
        )
    return dict(sorted(found.items()))


def practice_letters() -> dict[int, str]:
    """``{question number: the right letter}``."""
    return {n: q.right for n, q in practice_questions().items()}


def wrong_letters(n: int) -> list[str]:
    """The offered letters of question ``n`` other than the right one, in order."""
    return practice_questions()[n].wrong


def answer_source(n: int, letter: str) -> str:
    return f'answer_q{n} = "{letter}"'


def practice_answer_sources(letters: Mapping[int, str] | Callable[[int], str]) -> dict[str, str]:
    """``{answer grade id: cell source}`` answering question n with ``letters[n]`` (or ``letters(n)``)."""
    pick = letters if callable(letters) else letters.__getitem__
    return {f"answer_q{n}": answer_source(n, pick(n)) for n in practice_questions()}


def practice_notebook(
    letters: Mapping[int, str] | Callable[[int], str], before_q1: str = "", base: str = "release"
) -> nbformat.NotebookNode:
    """The ``base`` notebook (release/ or source/) with every answer cell set; ``before_q1`` runs first in answer 1."""
    sources = practice_answer_sources(letters)
    nb = _notebook(base)
    for cell in nb.cells:
        cid = nbu.cell_id(cell)
        if cid in sources:
            cell.source = sources[cid]
            if cid == "answer_q1" and before_q1:
                cell.source = before_q1 + "\n" + cell.source
    return nb
