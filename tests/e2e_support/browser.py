"""Support for the end-to-end browser test: a throwaway JupyterLab server and Debian's Chromium.

``JupyterLab(home, scratch)`` starts ``python -m jupyterlab`` (the interpreter running the tests,
so the server, its kernels and nbgrader's Validate all use the course's environment) on
127.0.0.1, a free port and a random token, serving ``home`` as a student would. Everything
Jupyter would read from or write to the user's profile (config, data, runtime, lab settings and
workspaces, IPython) is redirected into ``scratch``, so neither the machine's ``~/.jupyter`` nor a
developer's lab settings change what the test sees, and the test writes nothing outside
``scratch``. Every process it or the browser starts carries ``E2E_MARKER=<random>`` in its
environment, which lets ``reap(marker)`` prove that none outlives the test.

Nothing here downloads anything: the browser is ``/usr/bin/chromium`` (``apt-get install -y
chromium``), never one fetched by Playwright.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home, which on a closed
# network means a stream of failing connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLAYWRIGHT_PIN = "1.65.2"
INSTALL_HINT = (
    "./setup --no-demo, or apt-get install -y chromium && "
    f"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install playwright=={PLAYWRIGHT_PIN}"
)


def missing_requirement() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found; install it with: {INSTALL_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"playwright is not installed; install it with: {INSTALL_HINT}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_env(marker: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["E2E_MARKER"] = marker
    return env


def _marked_pids(marker: str) -> list[int]:
    needle = f"E2E_MARKER={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def reap(marker: str, grace: float = 15.0) -> list[str]:
    """Wait up to ``grace`` seconds for every marked process to end, kill those that do not.

    Returns the command lines of the processes that had to be killed (empty when none).
    """
    deadline = time.monotonic() + grace
    while _marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.25)
    killed = []
    for pid in _marked_pids(marker):
        killed.append(f"{pid}: {_cmdline(pid)}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while killed and _marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return killed


class JupyterLab:
    """A JupyterLab server for one test; use as a context manager."""

    def __init__(
        self,
        home: Path,
        scratch: Path,
        marker: str,
        start_timeout: float = 180.0,
        config_path: list[Path] | tuple[Path, ...] = (),
    ):
        self.home = home
        self.config_path = list(config_path)
        self.scratch = scratch
        self.marker = marker
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(24)
        self.port = 0
        self.log_path = scratch / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def _env(self) -> dict[str, str]:
        jupyter = self.scratch / "jupyter"
        dirs = {
            "JUPYTER_CONFIG_DIR": jupyter / "config",
            "JUPYTER_DATA_DIR": jupyter / "data",
            "JUPYTER_RUNTIME_DIR": jupyter / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": jupyter / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": jupyter / "lab-workspaces",
            "IPYTHONDIR": jupyter / "ipython",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        # The answer a student gives the first time: no news. Otherwise its toast covers the page.
        notification = (
            dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        )
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        bindir = str(Path(sys.executable).parent)
        env = marked_env(
            self.marker,
            **{k: str(v) for k, v in dirs.items()},
            PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
            PYTHONUNBUFFERED="1",
        )
        # Extra config folders (e.g. the hub's students layer), read after JUPYTER_CONFIG_DIR;
        # never whatever the calling shell had.
        env.pop("JUPYTER_CONFIG_PATH", None)
        if self.config_path:
            env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(str(p) for p in self.config_path)
        return env

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.home}",
            # No calls to the internet: no update check, no news feed (and no prompt about it).
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=None",
        ]

    def _request(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()

    def start(self) -> JupyterLab:
        # A free port can be taken between choosing it and binding it: try a few.
        for _attempt in range(3):
            self.port = free_port()
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self.home,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            if self._wait_ready():
                return self
            if "already in use" not in self.log_tail():
                break
        self.stop()
        raise RuntimeError(f"JupyterLab did not come up in {self.start_timeout:.0f}s; log:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, body = self._request("GET", "/api/status", timeout=5)
                if status == 200 and "started" in json.loads(body):
                    return True
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        """Shut the server down through its API (which stops its kernels), then by signal."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self._request("POST", "/api/shutdown", timeout=10)
            except (urllib.error.URLError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
