"""Shared helpers for the tests: the course, and grading made-up answers through nbgrader.

``grade_answers("03_metrics", {"wrong_f1": {"answer_f1": "def f1(p, r):\\n    return (p + r) / 2"}})``
copies the source notebook, swaps in the given answer-cell sources (by nbgrader grade id),
autogrades every variant as a mock student in a scratch course, and returns
``{variant: Graded}`` with per-cell scores and each failing test cell's error message.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from autograder.course import Course
from autograder.notebook import read_notebook
from autograder.rehearsal import Graded, grade_submissions, with_answers

ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def course() -> Course:
    return Course.load(ROOT)


def source_notebook(assignment: str):
    return read_notebook(ROOT / "source" / assignment / f"{assignment}.ipynb")


def grade_answers(assignment: str, variants: dict[str, dict[str, str]]) -> dict[str, Graded]:
    """Grade each variant: ``{student id: {answer grade id: replacement source}}``."""
    nb = source_notebook(assignment)
    submissions = {
        student: {f"{assignment}.ipynb": with_answers(nb, answers)} for student, answers in variants.items()
    }
    return grade_submissions(course(), assignment, submissions)


def assert_loses_and_names(graded: Graded, cell: str, words: str, label: str) -> None:
    """A wrong answer scores zero on ``cell`` and its assertion message contains ``words``."""
    assert graded.score(cell) == 0, f"{label}: {cell} still earned {graded.score(cell)}"
    error = graded.errors.get(cell, "")
    assert error.startswith("AssertionError"), f"{label}: {cell} failed without a teaching message: {error}"
    assert words in error, f"{label}: {cell} says {error!r}"
