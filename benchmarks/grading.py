"""Grading throughput: plain serial ``nbgrader autograde`` against ``autograder grade --jobs N``.

    .venv/bin/python benchmarks/grading.py [--copies 40] [--jobs 2] [A ...]

For each assignment (default: every one but the GPU lab), ``--copies`` students submit the
reference solution. The same class is graded twice, each in its own scratch course: once by
nbgrader alone (one process, one submission after another, no sandbox, no integrity probes),
once by ``autograder grade --jobs N`` (sandboxed, probed, N workers). It prints wall time,
seconds per submission and the ratio, and checks both gave every student the same score.
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

from autograder.course import Course  # noqa: E402
from autograder.nbgrader_run import clean_env, generate, read_grades, scratch_course  # noqa: E402

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


def classroom(course: Course, assignment: str, where: Path, copies: int, plain: bool = False) -> Path:
    root = scratch_course(course, where, [assignment])
    if plain:
        with open(root / "nbgrader_config.py", "a") as config:
            config.write(PLAIN_NBGRADER)
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
    args = p.parse_args()
    course = Course.load(ROOT)
    print(f"{os.cpu_count()} CPU cores; {args.copies} submissions per assignment; --jobs {args.jobs}")
    header = f"{'assignment':<16} {'nbgrader s':>10} {'s/sub':>6} {'autograder s':>12} {'s/sub':>6} {'speed-up':>8}  same scores"
    print(header, flush=True)
    for assignment in args.assignments:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            plain = classroom(course, assignment, Path(tmp) / "plain", args.copies, plain=True)
            ours = classroom(course, assignment, Path(tmp) / "ours", args.copies)
            serial = timed([sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"], plain)
            parallel = timed([sys.executable, "-m", "autograder", "grade", assignment, "--jobs", str(args.jobs)], ours)
            same = scores(plain, assignment) == scores(ours, assignment)
            n = args.copies
            print(
                f"{assignment:<16} {serial:10.1f} {serial / n:6.2f} {parallel:12.1f} {parallel / n:6.2f} "
                f"{serial / parallel:7.2f}x  {'yes' if same else 'NO'}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
