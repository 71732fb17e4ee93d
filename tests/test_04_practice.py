"""04_practice: every wrong letter loses its point and teaches; a right letter written differently passes.

The grader reads each answer as a literal from the notebook's text (``autograder.judge.literal.LiteralJudge``).
Each wrong letter of each question is one mistake of the shared table (``harness.MistakeTable``): it must
score zero with exactly the hidden test's message for that letter. A lower-case right letter fails the form
check; a computed letter, or one disguised as a ``str`` subclass that always compares equal, is no literal;
a name given two letters is ambiguous: all of them score zero everywhere, and each message says why.
"""

from __future__ import annotations

import re

import pytest

from harness import Mistake, MistakeTable, MistakeTests, assert_loses_and_names, points, source_cell, source_notebook
from practice import A, answer_source, practice_letters, practice_questions, wrong_letters

QUESTIONS = practice_questions()
LETTERS = practice_letters()

# The right letter as a literal written differently: single quotes, parentheses and comments.
RIGHT = {f"answer_q{n}": f"# question {n}: my choice\nanswer_q{n} = ('{LETTERS[n]}')  # final" for n in QUESTIONS}

COMPUTED = 'answer_q{n} = chr(ord("A") + {offset})'
LYING_STR = (
    "class _Yes(str):\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    def __ne__(self, other):\n"
    "        return False\n"
    "    __hash__ = str.__hash__\n"
    'answer_q{n} = _Yes("{letter}")'
)

LETTER_MISTAKES = tuple(
    Mistake(f"q{n}_{letter}", {f"answer_q{n}": answer_source(n, letter)}, {f"test_q{n}": q.mistakes[letter]})
    for n, q in QUESTIONS.items()
    for letter in q.wrong
)

TABLE = MistakeTable(
    assignment=A,
    right=RIGHT,
    mistakes=(
        *LETTER_MISTAKES,
        # The right letter in lower case: fails the visible form check.
        Mistake(
            "lower_case",
            {f"answer_q{n}": answer_source(n, LETTERS[n].lower()) for n in QUESTIONS},
            {f"test_q{n}": "one capital letter" for n in QUESTIONS},
        ),
        # The right letter, but computed: the grader reads literals, it does not run the cell.
        Mistake(
            "computed_letter",
            {f"answer_q{n}": COMPUTED.format(n=n, offset=ord(LETTERS[n]) - 65) for n in QUESTIONS},
            {f"test_q{n}": "write it as one plain literal" for n in QUESTIONS},
        ),
        # A wrong letter disguised as a str subclass whose == always says yes.
        Mistake(
            "lying_str",
            {f"answer_q{n}": LYING_STR.format(n=n, letter=wrong_letters(n)[0]) for n in QUESTIONS},
            {f"test_q{n}": "write it as one plain literal" for n in QUESTIONS},
        ),
        # The right letter, then a wrong one: which one counts is not for the grader to guess.
        Mistake(
            "two_letters",
            {f"answer_q{n}": f'answer_q{n} = "{LETTERS[n]}"\nanswer_q{n} = "{wrong_letters(n)[0]}"' for n in QUESTIONS},
            {f"test_q{n}": f"answer_q{n} is given two different values" for n in QUESTIONS},
        ),
    ),
)


class TestMistakes(MistakeTests):
    table = TABLE

    @pytest.mark.slow
    def test_each_wrong_letter_gets_exactly_its_own_message(self, table_grades):
        for m in LETTER_MISTAKES:
            ((cell, message),) = m.loses.items()
            assert_loses_and_names(table_grades[TABLE.student_of(m.name)], cell, message, m.name, exact=True)


def test_seed_questions_keep_the_seed_letters():
    assert [LETTERS[n] for n in range(1, 6)] == ["B", "A", "A", "D", "C"]
    assert sorted(QUESTIONS) == list(range(1, 12))
    assert all(q.options == ("A", "B", "C", "D") for q in QUESTIONS.values())


def test_every_wrong_letter_has_its_own_message():
    for n, q in QUESTIONS.items():
        assert sorted(q.mistakes) == q.wrong, f"q{n}: the table must cover exactly the wrong letters"
        assert len(set(q.mistakes.values())) == 3, f"q{n}: each wrong letter needs its own message"
        for message in q.mistakes.values():
            assert len(message) > 60, f"q{n}: a message should explain the misconception"
            assert f'"{q.right}"' not in message and "correct answer" not in message.lower()


def test_feedback_corrects_what_the_seed_overstates():
    # Q5 keeps the seed's letter (QLoRA), but not its claim that QLoRA trains faster; Q3's snippet
    # compresses the adapters, which real QLoRA does not.
    for message in QUESTIONS[5].mistakes.values():
        assert "slower than LoRA" in message and "dequantized" in message, message
    for message in QUESTIONS[3].mistakes.values():
        assert "adapters stay in 16 or 32 bits" in message, message


def _stated_points() -> tuple[dict[int, float], dict[int, float]]:
    """The points the students read: each question's heading ("Question 3 · medium · 2 points") and the
    introduction's table ("| 3, 4, 7, 8 | medium | 2 |")."""
    text = [c.source for c in source_notebook(A).cells if c.cell_type == "markdown"]
    headings, table = {}, {}
    for source in text:
        for n, p in re.findall(r"^## Question (\d+) · \w+ · (\d+) points?$", source, re.M):
            headings[int(n)] = float(p)
        for numbers, p in re.findall(r"^\| ([\d, ]+) \| \w+ \| (\d+) \|$", source, re.M):
            table.update({int(n): float(p) for n in numbers.split(",")})
    return headings, table


def test_points_the_notebook_states_are_the_points_it_grades():
    headings, table = _stated_points()
    graded = {int(cell.removeprefix("test_q")): p for cell, p in points(A).items()}
    assert headings == graded, f"question headings say {headings}; the test cells grade {graded}"
    assert table == graded, f"the introduction's table says {table}; the test cells grade {graded}"


def _judged(n: int, letter: str) -> tuple[str | None, list[str]]:
    """Question ``n``'s hidden test as the grader runs it, on ``letter``: its message and what it printed."""
    from autograder.judge.literal import judge_cell

    printed: list[str] = []
    source = source_cell(A, f"test_q{n}")
    return judge_cell(source, {f"answer_q{n}": letter}, f"test_q{n}", printed), printed


def test_feedback_reaches_right_answers_too():
    for n, q in QUESTIONS.items():
        message, printed = _judged(n, q.right)
        assert message is None and len(printed) == 1 and printed[0].startswith("Right"), (n, printed)
        assert len(printed[0]) > 60, f"q{n}: the note should say what the right choice rests on"
        for letter in q.wrong:
            message, printed = _judged(n, letter)
            assert message == f"AssertionError: {q.mistakes[letter]}" and printed == [], (n, letter)
    # Q5 keeps the seed's letter but not its claim that QLoRA trains faster, for right answers too.
    assert "slower than LoRA" in _judged(5, "C")[1][0] and "dequantized" in _judged(5, "C")[1][0]


def test_the_speed_question_quotes_the_lab_s_recorded_run():
    from course import lab

    recorded = lab.recorded_results()
    text = source_cell(A, "q11_question")
    for arm, stated in (("full", "full fine-tuning"), ("lora", "LoRA"), ("qlora", "bitsandbytes")):
        assert f"{stated} **{recorded[arm].seconds_per_step:.3f}**" in text, arm
    full, lora, qlora = (recorded[a] for a in ("full", "lora", "qlora"))
    assert full.seconds_per_step > qlora.seconds_per_step > lora.seconds_per_step
    messages = " ".join(QUESTIONS[11].mistakes.values())
    assert f"all {full.trainable_params / 1e6:.1f} million weights" in messages
    assert f"LoRA only {lora.trainable_params / 1e6:.2f} million" in messages
    assert f"{round(100 * (1 - lora.seconds_per_step / full.seconds_per_step), -1):.0f}% and" in messages
    assert f"and {round(100 * (qlora.seconds_per_step / lora.seconds_per_step - 1), -1):.0f}% are not noise" in messages
