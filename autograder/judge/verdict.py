"""One test cell's verdict: the instructor's test source run in a judge's namespace, in the grader's process.

A verdict is None (passed) or one line, ``"Ename: message"``, capped to a readable size: what the
judges write into the test cell's outputs, and what nbgrader's scoring then reads.
"""

from __future__ import annotations

import contextlib
import io

AMBIGUOUS = object()  # a literal answer given two different values (see autograder.judge.literal)


def run_test(
    source: str, namespace: dict, cell: str, answers: dict | None = None, printed: list[str] | None = None
) -> str | None:
    """Run the instructor's test ``source`` in ``namespace``; None when it passes, else ``"Ename: message"``.

    ``answers``: the literal answers a :class:`LiteralJudge` read (None for a :class:`CallJudge`); a
    name missing from them gets the literal-answer advice, which means nothing for a function.
    What the test prints (feedback for a right answer too, :func:`autograder.compare.expect_choice`)
    never reaches the grader's terminal: it goes to ``printed``, capped, when given.
    """
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, f"<test cell {cell}>", "exec"), namespace)
    except AssertionError as exc:
        return capped(f"AssertionError: {exc}")
    except NameError as exc:
        name = getattr(exc, "name", None)
        if answers is None or not name:
            # A function's code (run in the student's kernel) read a name its notebook never defined.
            return capped(
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
        return capped(f"{type(exc).__name__}: {exc}")
    finally:
        if printed is not None and out.getvalue():
            printed.append(capped(out.getvalue()))
    return None


def capped(message: str, limit: int = 2000) -> str:
    # A message may quote a value the student's code returned: keep it to a readable size.
    return message if len(message) <= limit else message[:limit] + " [...]"
