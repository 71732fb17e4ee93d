"""The graded names the autograder enforces are those of the exercise contract (docs/exercise-contract.md)."""

from __future__ import annotations

import re

from autograder.contract import GRADED_NAMES
from harness import ROOT, course

CONTRACT = ROOT / "docs" / "exercise-contract.md"

# Names the contract already lists that the course does not grade yet, with the issue that adds them.
# An implemented name must leave this table (the test below then demands it in GRADED_NAMES).
PENDING: dict[str, tuple[str, ...]] = {}


def contract_names() -> dict[str, tuple[str, ...]]:
    """Each assignment's graded names, in the document's order."""
    sections = re.split(r"^## ", CONTRACT.read_text(), flags=re.M)[1:]
    names = {}
    for section in sections:
        assignment = section.split()[0]
        found = re.findall(r"^\| `(?:class )?(\w+)", section, flags=re.M)
        if assignment == "04_practice":
            found = [f"answer_q{i}" for i in range(1, 12)]
        names[assignment] = tuple(found)
    return names


def test_every_course_assignment_has_contract_names():
    assert set(GRADED_NAMES) == set(course().assignments)


def test_names_agree_with_the_contract_document():
    listed = contract_names()
    assert set(listed) == set(GRADED_NAMES), "the document and the autograder name different assignments"
    for assignment, names in listed.items():
        pending = PENDING.get(assignment, ())
        assert set(pending) <= set(names), f"{assignment}: PENDING names a name the contract does not list"
        graded = tuple(n for n in names if n not in pending)
        assert graded == GRADED_NAMES[assignment], assignment
