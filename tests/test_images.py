"""The two Kubernetes images, built by ./setup (deploy/kubernetes/images.py) and run here as containers.

What is tested is what a site deploys: the images carry the names ``values.yaml`` and
``course-service.yaml`` give them, and the grader's container runs with the security settings that
``course-service.yaml`` declares, translated to docker's options.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tags(images, docker) -> dict[str, str]:
    return images.tags()


def _run(docker: str, image: str, *command: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker, "run", "--rm", "--network", "none", *options, image, *command],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _service_options(images) -> tuple[str, ...]:
    """course-service.yaml's formgrader container, as docker options: its user, its seccomp and AppArmor
    profiles, no privilege escalation, and its /proc mount (Unmasked: docker's systempaths=unconfined).
    Its user namespace (hostUsers: false) has no docker equivalent without a daemon-wide remap."""
    pod = images.service_pod()
    security = pod["containers"][0]["securityContext"]
    options = ["-u", f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"]
    if security["seccompProfile"]["type"] == "Unconfined":
        options += ["--security-opt", "seccomp=unconfined"]
    if security["appArmorProfile"]["type"] == "Unconfined":
        options += ["--security-opt", "apparmor=unconfined"]
    if security["allowPrivilegeEscalation"] is False:
        options += ["--security-opt", "no-new-privileges"]
    if security.get("procMount") == "Unmasked":
        options += ["--security-opt", "systempaths=unconfined"]
    return tuple(options)


def test_the_students_image_holds_no_solution_and_no_hidden_test(images, docker, tags):
    assert images.image_leaks(tags["students"], docker) == []


def test_the_image_scan_finds_a_solution_anywhere_in_a_filesystem(tmp_path, monkeypatch, images, docker):
    """The scan, on the small base image with one instructor notebook dropped somewhere unexpected: in
    the image's layers, and in its exported filesystem (where the layers cannot be read)."""
    (tmp_path / "Dockerfile").write_text(f"FROM {images.BASE}\nCOPY 03_metrics.ipynb /usr/share/misc/notes.txt\n")
    (tmp_path / "03_metrics.ipynb").write_bytes((ROOT / "source/03_metrics/03_metrics.ipynb").read_bytes())
    tag = "lora-qlora-leak-test:latest"
    subprocess.run([docker, "build", "-q", "-t", tag, str(tmp_path)], check=True, capture_output=True)
    try:
        found = ["/usr/share/misc/notes.txt: holds a solution or hidden-test line"]
        assert images.image_leaks(tag, docker) == found
        monkeypatch.setattr(images, "_layers", lambda image, docker: None)
        assert images.image_leaks(tag, docker) == found
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True)


def test_each_image_runs_the_chart_s_jupyterhub_as_jovyan(images, docker, tags):
    want = images.versions()["JUPYTERHUB_VERSION"]
    for image in tags.values():
        assert _run(docker, image, "jupyterhub-singleuser", "--version").stdout.strip() == want
    who = _run(
        docker,
        tags["students"],
        "sh",
        "-c",
        "id -u; id -g; echo $HOME; python -c 'import torch; print(torch.__version__)'",
    )
    assert who.stdout.split() == ["1000", "100", "/home/jovyan", "2.13.0+cpu"], who.stderr[-500:]
    # What the students' image lacks: the grader's code, its sandbox and the sources.
    missing = _run(
        docker,
        tags["students"],
        "sh",
        "-c",
        "python -c 'import autograder.judge' || command -v bwrap || ls /opt/lora-qlora",
    )
    assert "No module named 'autograder.judge'" in missing.stderr and missing.stdout.split() == [
        "LICENSE",
        "environment.yml",
        "lib",
        "release",
    ]


def test_the_grader_grades_in_its_container_with_the_service_s_security_settings(images, docker, tags):
    options = _service_options(images)
    check = _run(
        docker,
        tags["grader"],
        "sh",
        "-c",
        "cp -r /opt/lora-qlora /tmp/c && cd /tmp/c && autograder check 04_practice",
        options=options,
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    lines = {line.split()[1]: line for line in check.stdout.splitlines() if line.startswith("04_practice")}
    assert " ok " in lines["reference-full-marks"] and "23/23" in lines["reference-full-marks"]
    assert " ok " in lines["blank-scores-zero"] and "0/23" in lines["blank-scores-zero"]
    assert " ok " in lines["honest-not-flagged"]
    # Without the unmasked /proc, bubblewrap cannot start: the setting is needed, not decoration.
    at = options.index("systempaths=unconfined")
    masked = options[: at - 1] + options[at + 1 :]
    sandbox = ("bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true")
    assert _run(docker, tags["grader"], *sandbox, options=options).returncode == 0
    failed = _run(docker, tags["grader"], *sandbox, options=masked)
    assert failed.returncode != 0 and "Can't mount proc" in failed.stderr
