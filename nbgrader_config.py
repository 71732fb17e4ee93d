"""nbgrader configuration for the LoRA/QLoRA course.

The repository root is the nbgrader course directory: ``source/`` holds the
instructor notebooks, ``release/`` the generated student versions, and
``submitted/``, ``autograded/``, ``feedback/`` and ``gradebook.db`` are created
by grading (and ignored by git).
"""

import os

c = get_config()  # noqa: F821 -- injected by traitlets when this file is loaded

# The course directory is wherever this file lives, so the commands work from any
# working directory and a copy of this file makes a self-contained scratch course.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "lora-qlora"

# The course's assignments, in teaching order. `autograder` reads this list;
# building an assignment registers it in the gradebook for the formgrader.
c.Course.assignments = [
    "01_lora_basics",
    "02_quantization",
    "03_metrics",
    "04_practice",
    "05_qlora_lab",
]

# Seconds one cell may run while grading; the QLoRA lab's training cell is the
# longest (about three minutes on a CPU grading machine).
c.Execute.timeout = 300

# A student who deletes a test cell gets it back (and is graded by it); the
# grader also reports the deletion.
c.OverwriteCells.add_missing_cells = True

# Never let a dropped file from a student break grading of their notebook.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".git", "tweet_embeddings.npz"]

# nbgrader's own autograde (the formgrader's Autograde button, `nbgrader autograde`) executes
# through the course's guarded executor too: each kernel in the bubblewrap sandbox, integrity
# probes around every test cell. `autograder grade` adds parallel workers and review flags.
try:
    from autograder.commands.collect import CheckedCollect
    from autograder.commands.feedback import FeedbackExporter
    from autograder.execute.late import DailyPenalty
    from autograder.execute.pipeline import guarded_autograde_preprocessors
except ImportError:  # the course package is not installed here: plain nbgrader
    pass
else:
    c.Autograde.autograde_preprocessors = guarded_autograde_preprocessors()
    # The formgrader's Generate Feedback button (and `nbgrader generate_feedback`) writes the page
    # `autograder feedback` writes: results, points and messages, never the hidden tests.
    c.GenerateFeedback.exporter_class = FeedbackExporter
    # The late policy, once an assignment has a due date (see docs/instructor.md, "Due dates"): each
    # day or part of one past it costs 10 % of the score; the first 15 minutes cost nothing.
    c.AssignLatePenalties.plugin_class = DailyPenalty
    c.DailyPenalty.per_day = 0.10
    c.DailyPenalty.grace_minutes = 15
    # Collect (the formgrader's button, `nbgrader collect`) takes a submission only from the student it
    # names: the folder must belong to that student's uid. COURSE_STUDENT_UIDS says how a name becomes a
    # uid: "accounts" (Unix accounts, the one-server hub), "derived" (containers: course-service.yaml sets
    # it), "anyone" (no check).
    c.ExchangeFactory.collect = CheckedCollect
    c.CheckedCollect.student_uids = os.environ.get("COURSE_STUDENT_UIDS", "accounts")

# Assignments whose answers are literals: the judge reads them from the notebook's text and runs
# the hidden tests in the grader's own process, so nothing the student's kernel does decides the grade.
c.LiteralJudge.assignments = ["04_practice"]
# Assignments whose answers are functions of plain data: the judge runs the hidden tests in the
# grader's own process and calls the student's functions in their kernel for plain data only.
c.GuardedExecute.call_judged = ["01_lora_basics", "02_quantization", "03_metrics", "05_qlora_lab"]
