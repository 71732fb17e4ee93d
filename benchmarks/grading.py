"""Grading throughput: plain serial ``nbgrader autograde`` against ``autograder grade --jobs N``.

    .venv/bin/python benchmarks/grading.py [--copies 40] [--jobs 2] [--designs nbgrader,judged,in-kernel] [A ...]

For each assignment, ``--copies`` students submit the reference solution. The same class is graded
in scratch courses of its own:

- by nbgrader alone (one process, one submission after another, no sandbox, no integrity probes);
- by ``autograder grade --jobs N`` as the course ships it: sandboxed, and judged (hidden tests run
  in the grader's process, the kernel only answers calls);
- by ``autograder grade --jobs N`` with the judge switched off, the design before it: the hidden
  tests run in the student's kernel, between integrity probes.

It prints seconds per submission for each design asked for (``--designs``), the judged design's
speed-up over serial nbgrader, and whether they all gave every student the same score.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.commands.nbgrader_run import clean_env, generate, scratch_course  # noqa: E402
from autograder.course import Course  # noqa: E402
from autograder.gradebook import read_grades  # noqa: E402

CPU_ASSIGNMENTS = ("01_lora_basics", "02_quantization", "03_metrics", "04_practice", "05_qlora_lab")


PLAIN_NBGRADER = """
# The benchmark's baseline: nbgrader's own autograde pipeline, unguarded and unsandboxed.
from nbconvert.preprocessors import ClearMetadataPreprocessor as _Clear
from nbgrader import preprocessors as _p
c.Autograde.autograde_preprocessors = [
    _p.Execute, _p.IgnorePattern, _Clear, _p.LimitOutput, _p.SaveAutoGrades, _p.AssignLatePenalties,
    _p.CheckCellMetadata,
]
"""


# The design before the judge: every test cell runs in the student's kernel, between probes.
IN_KERNEL = """
c.GuardedExecute.call_judged = []
c.LiteralJudge.assignments = []
"""


# Each design's lines appended to the scratch course's nbgrader_config.py.
DESIGNS = {"nbgrader": PLAIN_NBGRADER, "judged": "", "in-kernel": IN_KERNEL}


def classroom(course: Course, assignment: str, where: Path, copies: int, config: str = "") -> Path:
    root = scratch_course(course, where, [assignment])
    if config:
        with open(root / "nbgrader_config.py", "a") as f:
            f.write(config)
    generate(root, assignment, release_dir=where / "_release")
    for i in range(copies):
        shutil.copytree(course.path("source", assignment), root / "submitted" / f"student{i:03d}" / assignment)
    return root


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise SystemExit(f"{' '.join(cmd[:4])} failed in {cwd}:\n" + "\n".join(tail))
    return seconds


def scores(root: Path, assignment: str) -> dict[str, float]:
    return {g.student: g.score for g in read_grades(root, assignment)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("assignments", nargs="*", default=list(CPU_ASSIGNMENTS))
    p.add_argument("--copies", type=int, default=40)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--designs", default=",".join(DESIGNS), help=f"a comma-separated subset of {', '.join(DESIGNS)}")
    args = p.parse_args()
    designs = [d for d in args.designs.split(",") if d]
    if not designs or set(designs) - set(DESIGNS):
        p.error(f"--designs takes a comma-separated subset of {', '.join(DESIGNS)}")
    course = Course.load(ROOT)
    n = args.copies
    print(f"{os.cpu_count()} CPU cores; {n} submissions per assignment; --jobs {args.jobs}")
    print(
        f"{'assignment':<16}"
        + "".join(f"{d:>10}" for d in DESIGNS)
        + "  s per submission; judged vs nbgrader; same scores"
    )
    for assignment in args.assignments:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            seconds: dict[str, float] = {}
            graded: list[dict[str, float]] = []
            for design in designs:
                root = classroom(course, assignment, Path(tmp) / design, n, DESIGNS[design])
                if design == "nbgrader":
                    cmd = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"]
                else:
                    cmd = [sys.executable, "-m", "autograder", "grade", assignment, "--jobs", str(args.jobs)]
                seconds[design] = timed(cmd, root) / n
                graded.append(scores(root, assignment))
            cells = "".join(f"{seconds[d]:10.2f}" if d in seconds else f"{'-':>10}" for d in DESIGNS)
            ratio = f"{seconds['nbgrader'] / seconds['judged']:.2f}x" if {"nbgrader", "judged"} <= set(seconds) else "-"
            same = all(g == graded[0] for g in graded) and len(graded[0]) == n
            print(f"{assignment:<16}{cells}  {ratio}  {'yes' if same else 'NO'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
