"""The judge: test cells graded in the grader's own process, from plain data read out of the submission.

Whatever runs in the student's kernel can be fooled by code that ran there first, so for an
assignment whose answers are literals (``04_practice``: ``answer_q1 = "B"``) nothing the kernel
did decides a grade. The judge

- reads each answer from the submitted notebook's *text* with :mod:`ast` (``ast.literal_eval`` of
  a top-level ``name = <literal>``): the student's code is never run, imported or evaluated;
- takes each test cell's source, hidden tests included, from the gradebook (what the instructor's
  source notebook registered), never from the submitted notebook, whose cells a student can forge;
- runs that source here, with only the literal answers bound, and replaces the test cell's outputs
  with its verdict: what the test printed (a note on a right answer), then one ``AssertionError``
  with the teaching message when it fails. nbgrader's own scoring then reads the judge's outputs
  only, so an ``execute_result`` or a token that student code printed decides nothing.

It sits in the autograde pipeline right after the sandboxed execution, so ``autograder grade`` and
the formgrader's Autograde button both go through it. Which assignments it judges is the course's
configuration (``c.LiteralJudge.assignments`` in ``nbgrader_config.py``), not the notebook's
metadata, which the student controls.
"""

from __future__ import annotations

import ast
import builtins
from typing import Any

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from autograder.judge.sources import TestSources
from autograder.judge.verdict import AMBIGUOUS, run_test
from autograder.notebook import cell_id, parsed_cells

__all__ = ["AMBIGUOUS", "LiteralJudge", "judge_cell", "literal_answers"]

MAX_CELL_CHARS = 20_000  # an answer cell longer than this is not read


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


def judge_cell(source: str, answers: dict[str, Any], cell: str, printed: list[str] | None = None) -> str | None:
    """Run the test ``source`` (the instructor's) with ``answers`` bound; None when it passes, else the message.
    What the test prints goes to ``printed``."""
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__judge__"}
    for name, value in answers.items():
        if value is not AMBIGUOUS:
            namespace[name] = value
    return run_test(source, namespace, cell, answers, printed)


def notebook_answers(nb, tests: dict[str, str]) -> dict[str, Any]:
    """The literal answers of a submitted notebook: read from every code cell that is not a test."""
    sources = [
        c.source for c in nb.cells if c.cell_type == "code" and cell_id(c) not in tests and isinstance(c.source, str)
    ]
    return literal_answers(sources)


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
        answers = notebook_answers(nb, tests)
        for cell in nb.cells:
            name = cell_id(cell)
            if cell.cell_type != "code" or name not in tests:
                continue
            printed: list[str] = []
            message = judge_cell(tests[name], answers, name, printed)
            cell.outputs = [new_output("stream", name="stdout", text=text) for text in printed]
            if message is not None:
                ename, _, evalue = message.partition(": ")
                cell.outputs.append(new_output("error", ename=ename, evalue=evalue, traceback=[message]))
        return nb, resources
