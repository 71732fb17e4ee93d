"""The course's late policy: a share of the score lost for each day (or part of one) past the due date.

nbgrader's autograde (in a worker, as ``AssignLatePenalties``) stores a late submission's penalty
in the gradebook; this plugin says how much. Configured in ``nbgrader_config.py``::

    from autograder.execute.late import DailyPenalty
    c.AssignLatePenalties.plugin_class = DailyPenalty
    c.DailyPenalty.per_day = 0.10        # 10 % of the score per day late
    c.DailyPenalty.grace_minutes = 15    # a submission this late is on time

nbgrader's own ``LateSubmissionPlugin`` (``penalty_method = "none"`` or ``"zero"``) stays available.
"""

from __future__ import annotations

import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float, TraitError, validate


class DailyPenalty(LateSubmissionPlugin):
    """``per_day`` of the notebook's score lost per started day late, never below zero."""

    per_day = Float(0.10, help="Share of the score lost per started day late (0.1: 10 %).").tag(config=True)
    grace_minutes = Float(0.0, help="Minutes late that cost nothing (clock skew, a slow upload).").tag(config=True)

    @validate("per_day")
    def _share(self, proposal):
        if not 0 <= proposal["value"] <= 1:
            raise TraitError(f"DailyPenalty.per_day is a share of the score, from 0 to 1; not {proposal['value']}")
        return proposal["value"]

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        late = total_seconds_late - 60 * self.grace_minutes
        if late <= 0:
            return None
        days = math.ceil(late / 86400)
        return min(score, score * self.per_day * days)
