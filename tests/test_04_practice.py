"""04_practice: every wrong letter loses its point and teaches; a right letter written differently passes."""
from __future__ import annotations

import ast
import re

import pytest

from autograder import notebook as nbu
from harness import grade_answers, source_notebook

A = "04_practice"
QUESTIONS = range(1, 11)


def _cells():
    return {nbu.cell_id(c): c for c in source_notebook(A).cells if nbu.cell_id(c)}


def right_letter(n: int) -> str:
    match = re.search(rf'answer_q{n}\s*=\s*"([A-Z])"', _cells()[f"answer_q{n}"].source)
    assert match, f"answer_q{n}'s solution is not a plain letter"
    return match.group(1)


def options(n: int) -> list[str]:
    return re.findall(r"\*\*([A-Z])\.\*\*", _cells()[f"q{n}_question"].source)


def mistakes(n: int) -> dict[str, str]:
    """The hidden test's teaching message for each wrong letter, read from the source."""
    tree = ast.parse(_cells()[f"test_q{n}"].source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and node.targets[0].id == f"_mistake_q{n}":
            return ast.literal_eval(node.value)
    raise AssertionError(f"test_q{n} has no _mistake_q{n} table")


def wrong_letters(n: int) -> list[str]:
    return [letter for letter in options(n) if letter != right_letter(n)]


@pytest.fixture(scope="module")
def graded():
    variants = {
        # The right letter, but computed rather than typed as a literal.
        "right_computed": {f"answer_q{n}": f'answer_q{n} = chr(ord("A") + {ord(right_letter(n)) - 65})' for n in QUESTIONS},
        # The right letter in lower case: fails the visible form check.
        "lower_case": {f"answer_q{n}": f'answer_q{n} = "{right_letter(n).lower()}"' for n in QUESTIONS},
    }
    # A wrong letter disguised as a str subclass whose == always says yes.
    variants["lying_str"] = {
        f"answer_q{n}": (
            "class _Yes(str):\n"
            "    def __eq__(self, other):\n"
            "        return True\n"
            "    def __ne__(self, other):\n"
            "        return False\n"
            "    __hash__ = str.__hash__\n"
            f'answer_q{n} = _Yes("{wrong_letters(n)[0]}")'
        )
        for n in QUESTIONS
    }
    for k in range(3):  # every question has exactly three wrong letters
        variants[f"wrong_{k}"] = {f"answer_q{n}": f'answer_q{n} = "{wrong_letters(n)[k]}"' for n in QUESTIONS}
    return grade_answers(A, variants)


def test_seed_questions_keep_the_seed_letters():
    assert [right_letter(n) for n in range(1, 6)] == ["B", "A", "A", "D", "C"]
    assert all(options(n) == ["A", "B", "C", "D"] for n in QUESTIONS)


def test_every_wrong_letter_has_its_own_message():
    for n in QUESTIONS:
        table = mistakes(n)
        assert sorted(table) == wrong_letters(n), f"q{n}: the table must cover exactly the wrong letters"
        assert len(set(table.values())) == 3, f"q{n}: each wrong letter needs its own message"
        for message in table.values():
            assert len(message) > 60, f"q{n}: a message should explain the misconception"
            assert f'"{right_letter(n)}"' not in message and "correct answer" not in message.lower()


def test_right_letter_written_differently_earns_full_marks(graded):
    g = graded["right_computed"]
    assert g.grade.score == g.grade.max_score == 20


def test_lower_case_letter_fails_the_form_check(graded):
    g = graded["lower_case"]
    assert g.grade.score == 0
    for n in QUESTIONS:
        assert "one capital letter" in g.errors[f"test_q{n}"]


@pytest.mark.parametrize("k", range(3))
def test_each_wrong_letter_loses_its_point_and_teaches(graded, k):
    g = graded[f"wrong_{k}"]
    for n in QUESTIONS:
        cell = f"test_q{n}"
        letter = wrong_letters(n)[k]
        assert g.score(cell) == 0, f"q{n}: wrong letter {letter} earned points"
        assert g.errors[cell] == f"AssertionError: {mistakes(n)[letter]}", f"q{n}/{letter}: {g.errors[cell]}"


def test_a_str_subclass_that_always_compares_equal_scores_zero(graded):
    g = graded["lying_str"]
    assert g.grade.score == 0
    for n in QUESTIONS:
        assert g.score(f"test_q{n}") == 0, f"q{n}: a lying str subclass earned points"
