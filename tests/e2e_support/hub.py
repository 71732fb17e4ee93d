"""Run the shipped JupyterHub configuration for real, in a scratch folder on 127.0.0.1.

``Hub`` starts ``jupyterhub`` (its own configurable-http-proxy, the course's formgrader service,
people's single-user servers) with ``deploy/jupyterhub/jupyterhub_config.py`` plus a thin test
layer: a shared-password login, home folders under the scratch folder, and a driver service whose
token spawns servers and mints people's API tokens. Every process it causes carries a tag in its
environment, so ``stop()`` finds and kills all of them, orphans included, and can prove it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
CHP_VERSION = "5.2.0"
CHP_INSTALL = f"./setup --no-demo (or: npm install --prefix .e2e/node configurable-http-proxy@{CHP_VERSION})"
TAG = "LORA_QLORA_E2E_HUB"


def find_proxy() -> Path | None:
    """configurable-http-proxy as installed by ``CHP_INSTALL`` (or ``$E2E_CHP`` when set)."""
    explicit = os.environ.get("E2E_CHP")
    candidates = [Path(explicit)] if explicit else []
    candidates.append(ROOT / ".e2e" / "node" / "node_modules" / ".bin" / "configurable-http-proxy")
    return next((p for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def find_jupyterhub() -> Path | None:
    exe = Path(sys.executable).parent / "jupyterhub"
    return exe if exe.is_file() else None


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ok_json(r: requests.Response, what: str):
    """The JSON body of a 200 answer; an nbgrader answer must also say ``success``."""
    assert r.status_code == 200, f"{what}: HTTP {r.status_code} {r.text[:800]}"
    body = r.json()
    if isinstance(body, dict) and "success" in body:
        assert body["success"], f"{what} failed: {json.dumps(body)[:2000]}"
    return body


def feedback_score(page: str) -> tuple[float, float]:
    """(score, max score) as a feedback page shows them."""
    m = re.search(r"Score:?\s*([\d.]+)\s*/\s*([\d.]+)", re.sub(r"<[^>]+>", " ", page))
    assert m, "the feedback shows no total score"
    return float(m.group(1)), float(m.group(2))


# A process is (pid, start time): a pid the kernel reuses for a stranger is not ours.
Proc = tuple[int, int]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def identity(pid: int) -> Proc | None:
    fields = _stat(pid)
    return (pid, int(fields[19])) if fields else None  # field 22 of stat: start time


def alive(proc: Proc) -> bool:
    """The very process ``proc`` still runs (not exited, not a zombie, pid not reused)."""
    fields = _stat(proc[0])
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == proc[1]


def tagged(tag_value: str) -> set[Proc]:
    """Live processes whose environment carries ``TAG=tag_value``."""
    needle = f"{TAG}={tag_value}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.add(identity(int(entry.name)))
        except OSError:
            continue
    return found - {None}


def descendants(pid: int) -> set[Proc]:
    """Every live process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return {identity(p) for p in out} - {None}


def kill(proc: Proc) -> None:
    """SIGKILL ``proc``, and its process group when it leads one (servers and kernels do)."""
    if not alive(proc):
        return
    pid = proc[0]
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(
        f"gave up after {timeout:.0f} s waiting for {what}" + (f" (last error: {last!r})" if last else "")
    )


TEST_LAYER = """\
# The shipped configuration, then only what a test machine without Unix accounts needs.
import json, os
c = get_config()
load_subconfig({shipped!r})
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["E2E_PASSWORD"]
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(os.environ["E2E_HOMES"], "{{username}}")
# Every process the hub starts carries the run's tag, so the test can find strays.
tag = {{{tag!r}: os.environ[{tag!r}]}}
c.Spawner.environment = dict(tag)
root = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.args = root
# A loaded two-core machine: be patient with start-ups.
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240
c.JupyterHub.init_spawners_timeout = 60
service = c.JupyterHub.services[0]
service["command"] = service["command"] + root
service["environment"].update(tag, HOME=os.path.join(os.environ["E2E_HOMES"], "grader"))
# One Unix user runs every server here, so collect cannot tell students apart by uid (tests/test_collect.py
# and tests/test_kubernetes_hub.py test that it does where they differ).
service["environment"]["COURSE_STUDENT_UIDS"] = "anyone"
# The test's driver: spawns servers and mints each person's API token.
c.JupyterHub.services.append({{"name": "e2e-driver", "api_token": os.environ["E2E_DRIVER_TOKEN"]}})
c.JupyterHub.load_roles.append({{
    "name": "e2e-driver",
    "services": ["e2e-driver"],
    "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups", "list:services", "read:services"],
}})
"""


class Hub:
    """One JupyterHub run in ``where``; ``base`` is the public (proxy) URL."""

    def __init__(self, where: Path, course_dir: Path, instructors: list[str], students: list[str]):
        self.where = where
        self.course_dir = course_dir
        self.exchange = where / "exchange"
        self.homes = where / "home"
        self.data = where / "hub"
        for folder in (self.exchange, self.homes, self.data):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.exchange, 0o777)  # what nbgrader expects of an exchange root
        self.password = secrets.token_hex(8)
        self.driver_token = secrets.token_hex(16)
        self.tag_value = secrets.token_hex(8)
        self.instructors, self.students = instructors, students
        public, proxy_api, hub, service = free_ports(4)
        self.base = f"http://127.0.0.1:{public}"
        self.config = where / "jupyterhub_test_config.py"
        self.config.write_text(TEST_LAYER.format(shipped=str(SHIPPED_CONFIG), tag=TAG))
        self.env = dict(
            os.environ,
            COURSE_DIR=str(course_dir),
            NBGRADER_EXCHANGE_ROOT=str(self.exchange),
            COURSE_HUB_DATA_DIR=str(self.data),
            COURSE_HUB_BIND_URL=self.base,
            COURSE_HUB_HUB_BIND_URL=f"http://127.0.0.1:{hub}",
            COURSE_HUB_PROXY_API_URL=f"http://127.0.0.1:{proxy_api}",
            COURSE_SERVICE_URL=f"http://127.0.0.1:{service}",
            COURSE_HUB_PROXY_CMD=str(find_proxy()),
            COURSE_GRADER_USER="",
            COURSE_INSTRUCTORS=",".join(instructors),
            COURSE_STUDENTS=",".join(students),
            E2E_PASSWORD=self.password,
            E2E_HOMES=str(self.homes),
            E2E_DRIVER_TOKEN=self.driver_token,
            **{TAG: self.tag_value},
        )
        self.jupyterhub = find_jupyterhub()
        self.proc: subprocess.Popen | None = None
        self.seen: set[Proc] = set()
        self.hub_proc: Proc | None = None
        self.log = where / "jupyterhub.log"
        self.tokens: dict[str, str] = {}
        self.state: dict[str, bool] = {}  # which steps of a multi-test scenario succeeded

    # -- processes ---------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.jupyterhub), "-f", str(self.config)],
                cwd=self.data,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.hub_proc = identity(self.proc.pid)
        if self.hub_proc:
            self.seen.add(self.hub_proc)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            return requests.get(f"{self.base}/hub/api/", timeout=10).status_code == 200

        wait_for("the hub to answer through its proxy", up, timeout)

    def track(self) -> set[Proc]:
        """Remember every process this run has started so far."""
        if self.proc is not None and self.hub_proc is not None and alive(self.hub_proc):
            self.seen |= descendants(self.proc.pid)
        self.seen |= tagged(self.tag_value)
        return self.seen

    def stop(self, grace: float = 60) -> set[Proc]:
        """Stop the hub, giving it ``grace`` seconds to stop its servers, services and proxy, then kill
        whatever of the run is left; return the processes seen."""
        self.track()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for _ in range(10):
            left = {p for p in self.track() if alive(p)}
            if not left:
                break
            for proc in left:
                kill(proc)
            time.sleep(0.5)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return set(self.seen)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- HTTP ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, token: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token}", **kw.pop("headers", {})}
        kw.setdefault("timeout", 300)
        return requests.request(method, self.base + path, headers=headers, **kw)

    def hub_api(self, method: str, path: str, **kw) -> requests.Response:
        r = self.request(method, "/hub/api" + path, self.driver_token, **kw)
        assert r.ok, f"{method} /hub/api{path}: {r.status_code} {r.text[:500]}"
        return r

    def login(self, user: str, password: str) -> requests.Response:
        """Sign in through the hub's login form, as a browser does."""
        s = requests.Session()
        s.get(f"{self.base}/hub/login", timeout=60)
        return s.post(
            f"{self.base}/hub/login",
            data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf", "")},
            allow_redirects=False,
            timeout=60,
        )

    def spawn(self, user: str) -> None:
        r = self.hub_api("POST", f"/users/{user}/server")
        assert r.status_code in (201, 202), r.text

    def wait_ready(self, user: str, timeout: float = 300) -> None:
        def ready():
            model = self.hub_api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if server is None and not model.get("pending"):
                raise RuntimeError(f"{user}'s server stopped while starting:\n{self.log_tail()}")
            return bool(server and server.get("ready"))

        wait_for(f"{user}'s server", ready, timeout, interval=1)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            r = self.hub_api("POST", f"/users/{user}/tokens", json={"note": "e2e test", "expires_in": 3600})
            self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def home(self, user: str) -> Path:
        return self.homes / user
