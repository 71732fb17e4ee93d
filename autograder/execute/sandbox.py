"""Student kernels in a bubblewrap sandbox.

The kernel sees a read-only system (``/usr``, a few files of ``/etc``, the Python installation,
the virtual environment and the ``course``/``autograder`` packages), a private ``/tmp`` and one
writable folder: a scratch copy of the submission's data files. The course directory, the
gradebook, the source notebooks, other submissions and every home directory are simply absent.
It has no network (its own empty network namespace), its own process tree, and resource limits
on memory, CPU time, file size and open files, and on processes where the grader may make a pids
cgroup. Its ``/tmp`` and ``/dev/shm`` are folders on disk beside its working folder (a tmpfs would
hold files in memory outside the memory limit); the grading pool caps their disk use. The grader talks to it over Unix sockets in
a private folder, so no TCP port is opened either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Dict, Integer, Unicode

BWRAP = "bwrap"
SYSTEM_DIRS = ("/usr", "/opt/conda")  # /opt/conda: the course image's environment
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/fonts",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/matplotlibrc",
)
# Only these exact names reach the kernel from the grader's environment: a prefix would let in
# whatever an instructor's shell happens to hold (HF_TOKEN, COURSE_DB_PASSWORD), and a student's
# exception message could carry it back onto their feedback page.
ENV_KEEP = (
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "MPLBACKEND",
    "PYTHONHASHSEED",
    "NBGRADER_EXECUTION",
    "PYDEVD_DISABLE_FILE_VALIDATION",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "HF_HOME",
    "HF_HUB_CACHE",
)
# Never passed on, whatever the name around them (a later addition to ENV_KEEP included).
SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


@dataclass(frozen=True)
class Limits:
    """Per-kernel resource limits (memory and file size in bytes, CPU in seconds)."""

    memory: int = 16 * 2**30
    cpu_seconds: int = 3600
    file_size: int = 1 * 2**30
    open_files: int = 1024
    # Processes and threads together (torch's thread pools count): enforced through a pids cgroup
    # where the grader may make one (see pids_cgroup_root).
    tasks: int = 512


PIDS_CGROUP_V1 = Path("/sys/fs/cgroup/pids")


def pids_cgroup_root() -> Path | None:
    """A cgroup (v1 pids controller) under which each kernel gets a group of its own, or None.

    RLIMIT_NPROC is no substitute: it counts every process of the user across the machine, and
    root ignores it. Without such a cgroup a kernel's process count is bounded only by its time
    and memory limits.
    """
    own = PIDS_CGROUP_V1
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                own = PIDS_CGROUP_V1 / path.lstrip("/")
    except OSError:
        return None
    if (own / "cgroup.procs").is_file() and os.access(own, os.W_OK):
        return own
    return None


def pids_group(limit: int) -> Path | None:
    """A fresh pids cgroup capped at ``limit`` tasks, or None where none can be made."""
    root = pids_cgroup_root()
    if root is None:
        return None
    _sweep_groups(root)
    try:
        group = Path(tempfile.mkdtemp(prefix="autograder-kernel-", dir=root))
        (group / "pids.max").write_text(str(limit))
    except OSError:
        return None
    return group


STALE_GROUP_SECONDS = 300


def _sweep_groups(root: Path) -> None:
    """Remove the empty kernel groups left by workers that were killed before their clean-up ran.

    Only groups older than :data:`STALE_GROUP_SECONDS` are touched: a new group is empty for the
    moment between its creation and its kernel's start. A group with a process in it cannot be
    removed, so a running kernel's group is safe."""
    now = time.time()
    for group in root.glob("autograder-kernel-*"):
        with contextlib.suppress(OSError):
            if now - group.stat().st_mtime > STALE_GROUP_SECONDS:
                group.rmdir()


def release_group(group: Path, patience: float = 2.0) -> bool:
    """Kill whatever is left in a kernel's pids cgroup and remove the group; True once it is gone.

    A killed sandbox's processes take a moment to die, and a group with a process in it cannot be
    removed: a bare ``rmdir`` right after the kill left one group behind per kernel."""
    deadline = time.monotonic() + patience
    while True:
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:  # only the sandbox's own processes are ever placed in its group
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when bubblewrap can build a sandbox here, else why not (one line)."""
    exe = shutil.which(BWRAP)
    if exe is None:
        return "bubblewrap (bwrap) is not installed; on Debian/Ubuntu: apt-get install bubblewrap"
    probe = [
        exe,
        "--ro-bind",
        "/usr",
        "/usr",
        *_merged_usr_links(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--die-with-parent",
        "--",
        "/usr/bin/true",
    ]
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if proc.returncode != 0:
        err = " ".join(proc.stderr.split()) or f"exit {proc.returncode}"
        if "mount proc" in err:  # namespaces work; the container's masked /proc is what stops it
            return (
                f"bubblewrap cannot mount its own /proc here ({err}): in a container, unmask /proc "
                "(docker run --security-opt systempaths=unconfined; Kubernetes: procMount: Unmasked with "
                "hostUsers: false), or grade outside the container"
            )
        return f"bubblewrap cannot create a sandbox here ({err}); unprivileged user namespaces may be disabled"
    return None


def _merged_usr_links() -> list[str]:
    args = []
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _package_dirs(names: tuple[str, ...] = ("course", "autograder")) -> list[str]:
    """Where the grader's own ``course`` and ``autograder`` packages live (both are mounted for the kernel).

    Found beside this very file, never through ``sys.path``: a grader started from a folder that
    holds a subfolder named ``course`` would otherwise mount that folder into every kernel.
    """
    here = Path(__file__).resolve().parents[2]  # autograder/execute/sandbox.py -> the packages' folder
    dirs = []
    for name in names:
        package = here / name
        if not (package / "__init__.py").is_file():
            raise RuntimeError(f"the grader's package {name!r} is not installed beside {here / 'autograder'}")
        dirs.append(str(package))
    return dirs


def readonly_paths() -> list[str]:
    """Everything the kernel may read, in mount order (parents before children)."""
    paths = [p for p in SYSTEM_DIRS if Path(p).is_dir()]
    paths += [p for p in ETC_FILES if Path(p).exists()]
    for prefix in {sys.base_prefix, sys.prefix, os.path.realpath(sys.base_prefix)}:
        if not any(prefix == p or prefix.startswith(p + "/") for p in paths):
            paths.append(prefix)
    paths += _package_dirs()
    return sorted(set(paths), key=lambda p: (p.count("/"), p))


def kernel_env(env: dict[str, str], home: str) -> dict[str, str]:
    kept = {k: v for k, v in env.items() if k in ENV_KEEP and not any(w in k.upper() for w in SECRET_WORDS)}
    kept.update(
        HOME=home,
        PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        MPLCONFIGDIR=f"{home}/.matplotlib",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONDONTWRITEBYTECODE="1",
        # The working folder holds the student's files: it must never shadow a module on the path
        # (a folder named autograder/ beside the notebook would replace the grader's checks).
        PYTHONSAFEPATH="1",
    )
    kept.setdefault("MPLBACKEND", "Agg")
    return kept


def scratch_dir(workdir: str, name: str) -> str:
    """The kernel's private ``/tmp`` or ``/dev/shm``: a fresh folder beside its working folder."""
    path = f"{workdir}.{name}"
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def wrap(
    cmd: list[str], workdir: str, socket_dir: str, env: dict[str, str], limits: Limits, group: Path | None = None
) -> list[str]:
    """``cmd`` run inside the sandbox with ``workdir`` (its cwd) and ``socket_dir`` writable.

    With ``group`` (a pids cgroup), the launcher joins it before anything else starts, so that
    every process the kernel makes counts against its limit.
    """
    home = "/tmp/home"
    join = ["/bin/sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec "$@"', "join-cgroup"] if group else []
    args = [
        *join,
        # RLIMIT_DATA, not RLIMIT_AS: it caps what the kernel can really allocate, while CUDA's
        # huge PROT_NONE address-space reservations (the GPU lab) stay possible.
        "prlimit",
        f"--data={limits.memory}",
        f"--cpu={limits.cpu_seconds}",
        f"--fsize={limits.file_size}",
        f"--nofile={limits.open_files}",
        "--core=0",
        "--",
        shutil.which(BWRAP) or BWRAP,
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--clearenv",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        *_merged_usr_links(),
    ]
    # /tmp and /dev/shm are folders on disk beside the working folder, not tmpfs: a tmpfs would hold
    # its files in memory outside the kernel's memory limit; the pool watches their disk use. They
    # come first, so that the mounts below land inside them: the venv or the course may live in /tmp.
    args += [
        "--bind",
        scratch_dir(workdir, "tmp"),
        "/tmp",
        "--dir",
        home,
        "--bind",
        scratch_dir(workdir, "shm"),
        "/dev/shm",
    ]
    for path in readonly_paths():
        args += ["--ro-bind", path, path]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # the lab's GPU, where there is one
        args += ["--dev-bind", str(dev), str(dev)]
    if Path("/sys").is_dir():
        args += ["--ro-bind", "/sys", "/sys"]
    args += ["--bind", workdir, workdir, "--bind", socket_dir, socket_dir, "--chdir", workdir]
    for key, value in sorted(kernel_env(env, home).items()):
        args += ["--setenv", key, value]
    return [*args, "--", *cmd]


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start inside :func:`wrap`'s sandbox."""

    sandbox = Bool(True, help="Run the kernel in bubblewrap (False only for trusted notebooks).").tag(config=True)
    memory_limit = Integer(Limits.memory).tag(config=True)
    cpu_limit = Integer(Limits.cpu_seconds).tag(config=True)
    workdir = Unicode("", help="The kernel's writable working folder (defaults to the launch cwd).").tag(config=True)
    extra_env = Dict().tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._set_socket_dir(tempfile.mkdtemp(prefix="autograder-kernel-"))
        if self.sandbox:
            # Unix sockets: the kernel has no network namespace in common with the grader.
            self.transport = "ipc"
            self.ip = os.path.join(self._socket_dir, "kernel")
        self.connection_file = os.path.join(self._socket_dir, "connection.json")

    def use_socket_root(self, root: str) -> None:
        """Keep the kernel's sockets in a folder made inside ``root`` (before the kernel starts)."""
        self._remove_socket_dir()
        self._set_socket_dir(tempfile.mkdtemp(prefix="k-", dir=root))
        if self.sandbox:
            self.ip = os.path.join(self._socket_dir, "kernel")
        self.connection_file = os.path.join(self._socket_dir, "connection.json")

    def _set_socket_dir(self, path: str) -> None:
        # Removed with the manager even when no kernel ever starts (or its clean-up never runs).
        self._socket_dir = path
        self._socket_dir_finalizer = weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)

    def _remove_socket_dir(self) -> None:
        self._socket_dir_finalizer()

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw):
        env = dict(kw.get("env") or os.environ)
        env.update(self.extra_env)
        if self.sandbox:
            workdir = self.workdir or kw.get("cwd") or os.getcwd()
            limits = Limits(memory=self.memory_limit, cpu_seconds=self.cpu_limit)
            self._group = pids_group(limits.tasks)
            kernel_cmd = wrap(kernel_cmd, str(Path(workdir).resolve()), self._socket_dir, env, limits, self._group)
            kw["cwd"] = workdir
            # A SIGINT to the process group would end bwrap itself (and so the kernel): ask the
            # kernel to interrupt itself over its control channel instead.
            self.kernel_spec.interrupt_mode = "message"
        kw["env"] = env
        # The kernel's own stdout is not the grader's: what it prints must reach nobody but iopub.
        kw["stdin"] = kw["stdout"] = kw["stderr"] = subprocess.DEVNULL
        return await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self._remove_socket_dir()
            if getattr(self, "_group", None) is not None:
                release_group(self._group)
                self._group = None
