"""The graded names the autograder enforces are those of the exercise contract."""
from __future__ import annotations

import re

import pytest

from autograder.contract import GRADED_NAMES
from harness import ROOT, course

CONTRACT = ROOT.parent / "shared" / "exercise-contract.md"


def test_every_course_assignment_has_contract_names():
    assert set(GRADED_NAMES) == set(course().assignments)


@pytest.mark.skipif(not CONTRACT.is_file(), reason="the contract document lies beside the repository only in the workshop")
def test_names_agree_with_the_contract_document():
    text = CONTRACT.read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    for section in sections:
        assignment = section.split()[0]
        names = re.findall(r"^\| `(?:class )?(\w+)", section, flags=re.M)
        if assignment == "04_practice":
            names = [f"answer_q{i}" for i in range(1, 11)]
        assert tuple(names) == GRADED_NAMES[assignment], assignment
