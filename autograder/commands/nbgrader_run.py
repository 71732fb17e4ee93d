"""Running nbgrader's own commands, and reading its gradebook."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from autograder.course import CONFIG_FILE, Course


class NbgraderFailed(Exception):
    """An nbgrader command exited non-zero; ``str()`` is one line, ``.log`` the whole log."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


def _cause(log: str) -> str:
    """The most telling line of a failed nbgrader log: its last exception, else its last error."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for pattern in (r"^[\w.]*(Error|Exception|Exit)\b.*", r"\[\w+ \| ERROR\](?!.*Please see).*"):
        found = [ln for ln in lines if re.search(pattern, ln)]
        if found:
            return found[-1]
    return lines[-1] if lines else "no output"


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    # Grading kernels must not inherit a half-set grading flag or a notebook's
    # plotting backend from the caller.
    env.pop("NBGRADER_EXECUTION", None)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYTHONHASHSEED", "0")
    # nbgrader shells out to `alembic` for its gradebook: it must be this environment's.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    return env


def run_nbgrader(root: Path, *args: str, timeout: float | None = None) -> str:
    """Run ``nbgrader ARGS`` in course directory ``root``; return its log."""
    cmd = [sys.executable, "-P", "-m", "nbgrader", *args]  # -P: nothing in the course folder shadows a module
    proc = subprocess.run(cmd, cwd=root, env=clean_env(), capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise NbgraderFailed(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}): {_cause(log)}", log)
    return log


def generate(root: Path, assignment: str, release_dir: Path | None = None) -> None:
    """Build ``release/A`` (or ``release_dir/A``) from ``source/A`` and register A in the gradebook."""
    args = ["generate_assignment", assignment, "--force"]
    if release_dir is not None:
        args.append(f"--CourseDirectory.release_directory={release_dir}")
    run_nbgrader(root, *args)


def scratch_course(course: Course, where: Path, assignments: list[str]) -> Path:
    """A throw-away copy of the course (config and sources only) under ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy2(course.root / CONFIG_FILE, where / CONFIG_FILE)
    for assignment in assignments:
        shutil.copytree(course.path("source", assignment), where / "source" / assignment)
    return where
