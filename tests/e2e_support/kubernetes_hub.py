"""values.yaml's hub on this machine: the chart's JupyterHub spawning the students' image in containers.

``KubernetesHub`` is ``Hub`` with ``values_hub_config.py`` in place of the one-server configuration and
the ``jupyterhub`` of ``.e2e/hub`` (the chart's version, with DockerSpawner), which ``./setup`` installs.
The grader's pod is played by ``grader()``: the grader's image run with ``course-service.yaml``'s user,
environment and volumes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from e2e_support.hub import TAG, Hub

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
HUB_VENV = ROOT / ".e2e" / "hub"
CONFIG = Path(__file__).with_name("values_hub_config.py")


def chart_jupyterhub() -> Path | None:
    """``.e2e/hub/bin/jupyterhub``, where ``./setup`` installs the chart's JupyterHub and DockerSpawner."""
    exe = HUB_VENV / "bin" / "jupyterhub"
    return exe if exe.is_file() else None


class KubernetesHub(Hub):
    def __init__(
        self, where: Path, instructors: list[str], students: list[str], docker: str, grader_image: str, service: dict
    ):
        """``grader_image`` and ``service`` (course-service.yaml's pod spec) make the grader's pod."""
        course = where / "course"
        course.mkdir()
        super().__init__(where, course, instructors, students)
        self.docker = docker
        self.grader_image, self.service = grader_image, service
        self.jupyterhub = chart_jupyterhub()
        self.config = CONFIG
        os.chmod(self.homes, 0o755)
        # Fresh volumes as the pod's fsGroup leaves them: group-owned, group-writable, setgid.
        for volume in (self.course_dir, self.exchange):
            os.chown(volume, 0, service["securityContext"]["fsGroup"])
            os.chmod(volume, 0o2775)
        self.env.update(
            E2E_VALUES=str(K8S / "values.yaml"),
            E2E_EXCHANGE=str(self.exchange),
            E2E_TAG_NAME=TAG,
            E2E_TAG_VALUE=self.tag_value,
        )

    def container(self, user: str) -> str:
        out = subprocess.run(
            [self.docker, "ps", "-q", "--filter", f"name=e2e-jupyter-{user}-{self.tag_value[:8]}"],
            capture_output=True,
            text=True,
            check=True,
        )
        [container] = out.stdout.split()
        return container

    def in_server(self, user: str, *command: str, cwd: str = "/home/jovyan") -> subprocess.CompletedProcess:
        """``command`` in ``user``'s server, as their own terminal runs it (their uid, their environment)."""
        return subprocess.run(
            [self.docker, "exec", "-w", cwd, self.container(user), *command],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def pod(self, container: dict, command: list[str], options: tuple[str, ...] = ()):
        """``command`` in one of the grader pod's containers as course-service.yaml declares it: its user,
        environment, working folder and volumes (the course directory and the exchange), no network."""
        pod = self.service
        security = {**pod["securityContext"], **container.get("securityContext", {})}
        user = f"{security['runAsUser']}:{security.get('runAsGroup', pod['securityContext']['runAsGroup'])}"
        volumes = {"course": self.course_dir, "nbgrader-exchange": self.exchange}
        args = [self.docker, "run", "--rm", "--network", "none", "-u", user, *options]
        for e in container.get("env", []):
            if "value" in e:
                args += ["-e", f"{e['name']}={e['value']}"]
        for mount in container["volumeMounts"]:
            args += ["-v", f"{volumes[mount['name']]}:{mount['mountPath']}"]
        if "workingDir" in container:
            args += ["-w", container["workingDir"]]
        return subprocess.run([*args, self.grader_image, *command], capture_output=True, text=True, timeout=300)

    def init_pod(self) -> None:
        """The grader pod's init containers, as declared: the exchange's mode, the course seeded."""
        for container in self.service["initContainers"]:
            done = self.pod(container, container["command"])
            assert done.returncode == 0, f"init container {container['name']}: {done.stderr[-2000:]}"

    def grader(self, *command: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """``command`` in the grader pod's formgrader container (an instructor's terminal there)."""
        return self.pod(self.service["containers"][0], list(command), options)
