"""The course's two images: the one rule for what goes into each, their build, and the scan that
proves the students' holds no solution.

Two images (issue: no solutions in the students' image):

- ``students``: what a student's pod runs (``values.yaml``'s ``singleuser.image``): JupyterLab and
  nbgrader's student extensions from ``environment.yml``, the ``course`` library, the two grader
  modules the notebooks import (``autograder.compare`` and ``autograder.objects``), the released
  notebooks and the hub's role layers. Nothing from ``source/`` (solutions, hidden tests) or ``tests/``.
- ``grader``: the course service's (``course-service.yaml``): the whole repository but what
  ``Dockerfile.grader.dockerignore`` leaves out, solutions included, with bubblewrap for the sandbox.

The students' build context is assembled from an allow-list, never from the repository minus a
deny-list, so a file added to the repository later stays out until it is named here::

    python deploy/kubernetes/images.py context /tmp/students-context
    docker build -f /tmp/students-context/deploy/kubernetes/Dockerfile.students /tmp/students-context

The grader's context is the repository itself (``docker build -f deploy/kubernetes/Dockerfile.grader .``).
Both, built here from Debian's packages and PyPI alone (no image registry), tagged as ``values.yaml``
and ``course-service.yaml`` name them, then the students' scanned::

    python deploy/kubernetes/images.py build
    python deploy/kubernetes/images.py scan registry.example.org/lora-qlora-students:0.1.0
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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


# Where the students' image keeps the course's own files: a solution marker there is the course's.
OWN_PLACES = ("opt/lora-qlora", "etc/jupyter/lora-qlora", "home/jovyan")


def secret_patterns(root: Path = ROOT, min_length: int = 60) -> list[str]:
    """The solution and hidden-test lines of the instructor's notebooks
    (:func:`autograder.notebook.secret_lines`) of at least ``min_length`` characters that appear in
    none of the files the students are given (the released notebooks and the library share some
    lines with the solutions: an import, a call; those prove nothing)."""
    sys.path.insert(0, str(root))
    import nbformat

    from autograder.notebook import secret_lines

    lines: set[str] = set()
    for path in sorted((root / "source").glob("*/*.ipynb")):
        secrets = secret_lines(nbformat.read(path, as_version=4))
        lines |= {line for line in secrets.solution | secrets.hidden if len(line) >= min_length}
    given = "\n".join((root / name).read_text(encoding="utf-8", errors="replace") for name in students_files(root))
    return sorted(line for line in lines if line not in given)


def _layers(image: str, docker: str) -> list[Path] | None:
    """The folders of the image's layers where the daemon keeps them readable (overlay2, as root), top
    first; None elsewhere. Every layer ships, so a file a later layer deletes still counts."""
    import json

    out = subprocess.run([docker, "image", "inspect", image], capture_output=True, text=True, check=True)
    driver = json.loads(out.stdout)[0]["GraphDriver"]
    if driver["Name"] != "overlay2":
        return None
    data = driver["Data"]
    folders = [Path(data["UpperDir"]), *map(Path, filter(None, data.get("LowerDir", "").split(":")))]
    return folders if all(os.access(f, os.R_OK | os.X_OK) for f in folders) else None


def _exported(image: str, docker: str, tree: Path) -> None:
    """The image's filesystem written out into ``tree`` (``docker export``), for daemons whose layers
    this process cannot read."""
    container = subprocess.run([docker, "create", image, "true"], capture_output=True, text=True, check=True)
    try:
        export = subprocess.Popen([docker, "export", container.stdout.strip()], stdout=subprocess.PIPE)
        subprocess.run(
            ["tar", "-x", "-C", str(tree), "--no-same-owner", "--exclude=dev/*"], stdin=export.stdout, check=True
        )
        if export.wait():
            raise RuntimeError(f"docker export of {image} failed")
    finally:
        subprocess.run([docker, "rm", container.stdout.strip()], capture_output=True)


def image_leaks(image: str, docker: str = "docker", root: Path = ROOT) -> list[str]:
    """Scan every layer of ``image``: any file holding one of the course's solution or hidden-test lines
    (:func:`secret_patterns`), and any solution marker or ``source``/``tests`` folder among the course's
    own files (:data:`OWN_PLACES`; nbgrader's own package has markers of its own)."""
    with tempfile.TemporaryDirectory() as scratch:
        trees = _layers(image, docker)
        if trees is None:
            trees = [Path(scratch) / "fs"]
            trees[0].mkdir()
            _exported(image, docker, trees[0])
        listed = Path(scratch) / "patterns"
        listed.write_text("\n".join(secret_patterns(root)) + "\n", encoding="utf-8")
        found = []
        for tree in trees:
            found += [f"/{line}" for place in OWN_PLACES if (tree / place).is_dir() for line in leaks(tree / place)]
            grep = subprocess.run(
                ["grep", "-rlF", "--binary-files=without-match", "-f", str(listed), "."],
                cwd=tree,
                capture_output=True,
                text=True,
            )
            found += [
                f"/{name.removeprefix('./')}: holds a solution or hidden-test line" for name in grep.stdout.split()
            ]
    return sorted(set(found))


BASE = "lora-qlora-base:bookworm"  # Debian bookworm from debootstrap: python3 is 3.11, as environment.yml pins
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's, lent to pip as a build secret


def docker_cli() -> str:
    """Debian's docker client (docker.io) where there is one: it drives BuildKit itself, where a newer
    client without the buildx plugin cannot (the Dockerfiles use RUN --mount)."""
    return os.environ.get("DOCKER") or ("/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker")


def versions(root: Path = ROOT) -> dict[str, str]:
    """``versions.env``: the chart's version and the JupyterHub it ships, which both images carry."""
    lines = (root / "deploy/kubernetes/versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def service_pod(root: Path = ROOT) -> dict:
    """The grader's pod spec: ``course-service.yaml``'s Deployment template."""
    import yaml

    docs = [d for d in yaml.safe_load_all((root / "deploy/kubernetes/course-service.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def tags(root: Path = ROOT) -> dict[str, str]:
    """``{"students": ..., "grader": ...}``: the image names the deployment pulls, so that what is built
    and tested here is what a site deploys."""
    import yaml

    image = yaml.safe_load((root / "deploy/kubernetes/values.yaml").read_text())["singleuser"]["image"]
    return {"students": f"{image['name']}:{image['tag']}", "grader": service_pod(root)["containers"][0]["image"]}


def _exists(image: str, docker: str) -> bool:
    return subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode == 0


def build_base(docker: str, image: str = BASE) -> None:
    """Debian bookworm, minbase, from Debian's mirror by debootstrap (about 30 s), once per machine."""
    if _exists(image, docker):
        return
    with tempfile.TemporaryDirectory() as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs)], check=True, capture_output=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([docker, "import", "-", image], stdin=tar.stdout, check=True, capture_output=True)
        if tar.wait():
            raise RuntimeError("tar of the debootstrap root failed")


def build(root: Path = ROOT, wheels: Path | None = None) -> dict[str, str]:
    """Both images, on the Debian base; BuildKit's layer cache makes a rebuild of unchanged files quick."""
    docker, names = docker_cli(), tags(root)
    build_base(docker)
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    hub = ["--build-arg", f"JUPYTERHUB_VERSION={versions(root)['JUPYTERHUB_VERSION']}"]
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch) / "students"
        assemble(context, root, wheels=wheels)
        found = leaks(context)
        if found:
            raise RuntimeError(f"the students' build context leaks: {found[:3]}")
        secret = ["--secret", f"id=pip-ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
        # GPU_MODEL empty: no Hugging Face hub from here (a site's build bakes the lab's GPU model in).
        subprocess.run(
            [docker, "build", "--network", "host", *secret, *hub, "--build-arg", f"BASE_IMAGE={BASE}",
             "--build-arg", "GPU_MODEL=", "-f", str(context / "deploy/kubernetes/Dockerfile.students"),
             "-t", names["students"], str(context)],
            env=env, check=True,
        )  # fmt: skip
    subprocess.run(
        [docker, "build", "--network", "host", *hub, "--build-arg", f"STUDENTS_IMAGE={names['students']}",
         "-f", str(root / "deploy/kubernetes/Dockerfile.grader"), "-t", names["grader"], str(root)],
        env=env, check=True,
    )  # fmt: skip
    return names


def _find_links() -> Path | None:
    """pip's own local wheel folder, where this machine keeps its CPU build of torch."""
    folder = os.environ.get("PIP_FIND_LINKS", "").split()
    return Path(folder[0]) if folder and Path(folder[0]).is_dir() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ctx = sub.add_parser("context", help="assemble the students' build context in DEST and scan it")
    ctx.add_argument("dest", type=Path)
    ctx.add_argument("--wheels", type=Path, help="a folder of wheels for pip to prefer (a CPU build of torch)")
    bld = sub.add_parser("build", help="build both images, tagged as the deployment names them")
    bld.add_argument("--wheels", type=Path, default=_find_links(), help="default: pip's find-links folder")
    scan = sub.add_parser("scan", help="scan an image's whole filesystem for the course's solutions")
    scan.add_argument("image")
    args = p.parse_args(argv)
    if args.command == "build":
        for image, name in build(wheels=args.wheels).items():
            print(f"{image}: {name}")
        return 0
    if args.command == "scan":
        found = image_leaks(args.image, docker_cli())
    else:
        names = assemble(args.dest, wheels=args.wheels)
        print(f"{len(names)} files in {args.dest}")
        found = leaks(args.dest)
    for line in found:
        print(f"images: leak: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
