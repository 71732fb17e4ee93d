"""nbgrader's autograde pipeline as the course runs it: the guarded executor, the literal judge, and
the autograded notebook made inert for the instructor's browser.

``nbgrader_config.py`` installs it for nbgrader's own commands (the formgrader's Autograde button);
the grading workers (:mod:`autograder.runner.worker`) install it for ``autograder grade``.
"""

from __future__ import annotations


def guarded_autograde_preprocessors() -> list:
    """nbgrader's autograde pipeline with :class:`GuardedExecute` in place of ``Execute``, followed by
    the judge (:class:`autograder.judge.literal.LiteralJudge`), which re-grades the assignments it is
    configured for without trusting anything the kernel did."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    from autograder.execute.guarded import GuardedExecute
    from autograder.execute.inert import InertContent
    from autograder.judge.literal import LiteralJudge

    return [
        GuardedExecute,
        LiteralJudge,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        InertContent,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
