"""The one rule for what goes into each course image, and the check that the students' leaks nothing.

Two images (issue: no solutions in the students' image):

- ``students``: what a student's pod runs (``values.yaml``'s ``singleuser.image``): JupyterLab and
  nbgrader's student extensions from ``environment.yml``, the ``course`` library, the two grader
  modules the notebooks import (``autograder.compare`` and ``autograder.objects``), the released
  notebooks and the hub's role layers. Nothing from ``source/`` (solutions, hidden tests) or ``tests/``.
- ``grader``: the course service's (``course-service.yaml``): the whole repository but what
  ``Dockerfile.grader.dockerignore`` leaves out, solutions included, with bubblewrap for the sandbox.

The students' build context is assembled from an allow-list, never from the repository minus a
deny-list, so a file added to the repository later stays out until it is named here::

    python deploy/kubernetes/build_context.py students /tmp/students-context
    docker build -f /tmp/students-context/deploy/kubernetes/Dockerfile.students /tmp/students-context

The grader's context is the repository itself (``docker build -f deploy/kubernetes/Dockerfile.grader .``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Repository paths (files, or folders taken whole) that the students' image holds.
STUDENTS = (
    "LICENSE",
    "environment.yml",
    "course",
    "autograder/__init__.py",
    "autograder/compare.py",
    "autograder/objects.py",
    "release",
    "deploy/jupyterhub/config",
    "deploy/kubernetes/Dockerfile.students",
)
# Text that marks a solution or a hidden test (nbgrader's markers), and paths that hold them.
SECRET_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
SECRET_FOLDERS = ("source", "tests", ".git")
NEVER_COPIED = ("__pycache__", ".ipynb_checkpoints")


def tracked_files(root: Path = ROOT) -> list[str]:
    """The repository's files as git tracks them (what a clone has), relative to ``root``."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name]


def students_files(root: Path = ROOT, allowed: tuple[str, ...] = STUDENTS) -> list[str]:
    """The tracked files that the allow-list names (a folder names everything under it)."""
    chosen = []
    for name in tracked_files(root):
        named = any(name == entry or name.startswith(entry.rstrip("/") + "/") for entry in allowed)
        if named and not any(part in NEVER_COPIED for part in Path(name).parts):
            chosen.append(name)
    missing = [entry for entry in allowed if not any(f == entry or f.startswith(entry + "/") for f in chosen)]
    if missing:
        raise FileNotFoundError(f"the students' image names paths the repository lacks: {', '.join(missing)}")
    return chosen


def assemble(
    dest: Path, root: Path = ROOT, allowed: tuple[str, ...] = STUDENTS, wheels: Path | None = None
) -> list[str]:
    """Copy the students' files into ``dest`` (made empty first), and the ``*.whl`` files of ``wheels``
    into its ``wheels/`` folder (which the Dockerfile's pip reads first; empty without); the copied names."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    names = students_files(root, allowed)
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    (dest / "wheels").mkdir()
    for wheel in sorted(Path(wheels).glob("*.whl")) if wheels else ():
        shutil.copy2(wheel, dest / "wheels" / wheel.name)
        names.append(f"wheels/{wheel.name}")
    return names


def leaks(folder: Path) -> list[str]:
    """Every file under ``folder`` that holds a solution or hidden-test marker, or sits in a folder of
    them (``source/``, ``tests/``, ``.git``): one line each. Empty for a clean image or context."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder)
        if any(part in SECRET_FOLDERS for part in relative.parts):
            found.append(f"{relative}: a path under {'/'.join(SECRET_FOLDERS)}")
            continue
        if path.is_file():
            text = path.read_bytes()
            for marker in SECRET_MARKERS:
                if marker.encode() in text:
                    found.append(f"{relative}: contains {marker!r}")
                    break
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", choices=["students"])
    p.add_argument("dest", type=Path)
    p.add_argument("--wheels", type=Path, help="a folder of wheels for pip to prefer (a CPU build of torch)")
    args = p.parse_args(argv)
    names = assemble(args.dest, wheels=args.wheels)
    found = leaks(args.dest)
    for line in found:
        print(f"build_context: leak: {line}", file=sys.stderr)
    print(f"{len(names)} files in {args.dest}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
