"""Reading notebooks and their nbgrader cell markup."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.course import CourseError

SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def parsed_cells(sources: Iterable[object], max_chars: int) -> Iterator[ast.Module]:
    """Each cell source parsed as Python, never run; a cell that is not a string, longer than
    ``max_chars``, not valid Python or nested too deep for the parser (a hostile cell can make
    ``ast.parse`` itself fail) is skipped."""
    for source in sources:
        if not isinstance(source, str) or len(source) > max_chars:
            continue
        try:
            yield ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Load a notebook, turning any malformed file into a one-line ``CourseError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CourseError(f"{path}: cannot be read ({exc})") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise CourseError(f"{path}: not a valid notebook (invalid JSON at line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # a student's file nested thousands of levels deep
        raise CourseError(f"{path}: not a valid notebook (nested too deeply)") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except (Exception, RecursionError) as exc:  # nbformat raises several unrelated types for bad structure
        raise CourseError(f"{path}: not a valid notebook ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(nb.get("cells"), list):
        raise CourseError(f"{path}: not a valid notebook (no list of cells)")
    return nb


def nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def cell_id(cell) -> str | None:
    """The cell's nbgrader grade id; None when it has none, or one that is not a string (a
    student's edited metadata can hold any JSON there)."""
    grade_id = nbgrader_meta(cell).get("grade_id")
    return grade_id if isinstance(grade_id, str) else None


def is_test_cell(cell) -> bool:
    """An autograded test cell: graded, not a solution, code."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def is_answer_cell(cell) -> bool:
    """An autograded answer cell: a solution the tests grade, not graded by hand."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("solution")) and not meta.get("grade") and cell.get("cell_type") == "code"


def graded_cell_ids(nb) -> list[str]:
    """Ids of the cells nbgrader tracks (graded, solution, locked or task cells)."""
    return [cid for cid in (cell_id(c) for c in nb.cells) if cid]


def split_regions(source: str) -> tuple[list[str], list[str], list[str]]:
    """(solution lines, hidden-test lines, all other lines) of a cell's source, by position."""
    parts: dict[str, list[str]] = {"solution": [], "hidden": [], "public": []}
    inside = "public"
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(SOLUTION[0]):
            inside = "solution"
        elif stripped.startswith(HIDDEN[0]):
            inside = "hidden"
        elif stripped.startswith((SOLUTION[1], HIDDEN[1])):
            inside = "public"
        else:
            parts[inside].append(line)
    return parts["solution"], parts["hidden"], parts["public"]


@dataclass
class SecretLines:
    """Lines of a source notebook that must never reach students."""

    solution: set[str]
    hidden: set[str]

    def find_in(self, text: str) -> list[str]:
        """Secret lines that occur (stripped) as lines of ``text``."""
        secret = self.solution | self.hidden
        return [line.strip() for line in text.splitlines() if line.strip() in secret]


# Lines too short or too generic to be a leak on their own (a lone bracket, "else:").
_MIN_SECRET_LENGTH = 4


def secret_lines(nb) -> SecretLines:
    """Solution and hidden-test lines of a source notebook.

    A line that also appears outside every secret region (shared boilerplate such as
    ``import torch``) is not a secret: finding it in the release proves nothing.
    """
    solution: set[str] = set()
    hidden: set[str] = set()
    public: set[str] = set()
    for cell in nb.cells:
        source = cell.get("source", "")
        if cell.get("cell_type") == "markdown" and nbgrader_meta(cell).get("solution"):
            solution.update(line.strip() for line in source.splitlines())
            continue
        sol, hid, pub = split_regions(source)
        solution.update(line.strip() for line in sol)
        hidden.update(line.strip() for line in hid)
        public.update(line.strip() for line in pub)

    def keep(lines: set[str]) -> set[str]:
        return {ln for ln in lines if len(ln) >= _MIN_SECRET_LENGTH and ln not in public and not ln.startswith("###")}

    return SecretLines(solution=keep(solution), hidden=keep(hidden))


def defines(cell, name: str) -> bool:
    """Whether an answer cell defines ``name``: starts with its def/class, or assigns it."""
    source = cell.get("source", "")
    first = next((ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if re.match(rf"(def|class)\s+{re.escape(name)}\b", first):
        return True
    return re.search(rf"^\s*{re.escape(name)}\s*=", source, flags=re.MULTILINE) is not None


def mentions(cell, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", cell.get("source", "")) is not None


def has_outputs(nb) -> bool:
    return any(
        c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count") is not None) for c in nb.cells
    )


def cell_errors(path: Path) -> dict[str, str]:
    """Each graded cell's error in an executed notebook: ``"Ename: message"``, or ``"stderr: ..."``."""
    nb = nbformat.read(path, as_version=4)
    found = {}
    for cell in nb.cells:
        cid = cell_id(cell)
        for out in cell.get("outputs", []):
            if cid and out.get("output_type") == "error":
                found[cid] = f"{out.get('ename', '')}: {out.get('evalue', '')}"
            elif cid and out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.setdefault(cid, "stderr: " + out.get("text", "")[:500])
    return found
