"""A pool of grading workers (:mod:`autograder.runner.worker`), each a long-lived process.

Every submission gets its own time limit: a worker that exceeds it, or dies, is killed with its
sandboxed kernel and replaced, and only that submission is lost. Results come back through a
private pipe, so nothing a student prints can pose as one.

Workers are forked from a :class:`Zygote` that has imported nbgrader and the judge's modules (torch,
transformers, PEFT: several seconds of CPU) once, instead of once per worker.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from autograder.runner import worker as worker_module
from autograder.runner.protocol import RESULT, RESULT_FD, ZYGOTE_FD, Job, JobResult, Reply


def _job_disk_usage(job: Job, cap: int) -> int:
    """Bytes the job's kernel wrote: its folder and its socket folder."""
    used = disk_usage(Path(job.root), cap)
    return used + (disk_usage(Path(job.sockets), cap) if job.sockets and used <= cap else 0)


def disk_usage(root: Path, cap: int, max_files: int = 100_000) -> int:
    """Bytes on disk under ``root`` (links not followed); past ``max_files`` entries, or once over
    ``cap``, it stops counting and returns more than ``cap``."""
    total, seen = 0, 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            seen += 1
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
            if total > cap or seen > max_files:
                return cap + 1
    return total


def _worker_command() -> list[str]:
    # -P: the grader's working folder is not on the path, so nothing there shadows a module.
    return [sys.executable, "-P", "-m", worker_module.__name__]


class Zygote:
    """A ``python -m autograder.runner.worker`` that imports once and forks each worker on request."""

    def __init__(self, env: dict[str, str], log_path: Path):
        # SEQPACKET: each request stays one message, with its own descriptors.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            _worker_command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=dict(env, **{ZYGOTE_FD: str(theirs.fileno())}),
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
        theirs.close()
        self._control = ours
        self._lock = threading.Lock()

    def request(self, stdin_fd: int, log_fd: int, result_fd: int) -> socket.socket | None:
        """Ask for a worker with these descriptors; at once, the socket its pid will arrive on
        (once the zygote's imports are done; 0 if it cannot fork), or None if the zygote is gone."""
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                socket.send_fds(self._control, [b"fork"], [stdin_fd, log_fd, result_fd, theirs.fileno()])
        except OSError:
            reply.close()
            return None
        finally:
            theirs.close()
        return reply

    def stop(self) -> None:
        """End the zygote (the workers it forked live on until their own stdin closes)."""
        self._control.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _read_pid(reply: socket.socket, wait: float = 600.0) -> int:
    """The pid a zygote answered on ``reply``; 0 when it could not fork, died or took too long."""
    answer = b""
    try:
        reply.settimeout(wait)
        while not answer.endswith(b"\n"):
            chunk = reply.recv(64)
            if not chunk:
                return 0
            answer += chunk
        return int(answer)
    except (OSError, ValueError):
        return 0
    finally:
        reply.close()


class _Forked:
    """The parts of :class:`subprocess.Popen` a :class:`Worker` uses, for a worker the zygote forked
    (not this process's child: its end is seen through a pidfd; its exit status is not known)."""

    def __init__(self, pid: int, stdin_fd: int):
        self.pid = pid
        self.stdin = os.fdopen(stdin_fd, "wb")
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # it has already ended
            self._pidfd, self.returncode = None, -1

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self._ended()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            self._ended()
        return self.returncode

    def _ended(self) -> None:
        self.returncode = -1
        os.close(self._pidfd)


class Worker:
    """One grading worker process and the read end of its result pipe.

    With a :class:`Zygote`, the worker is requested from it at once and known by its pid when first
    used; where the zygote cannot fork, it is started as ``python -m autograder.runner.worker`` instead."""

    def __init__(self, env: dict[str, str], log_path: Path, zygote: Zygote | None = None):
        self._env = env
        self._log = open(log_path, "ab")
        self.proc: subprocess.Popen | _Forked | None = None
        self._pending = self._request(zygote) if zygote is not None else None
        if self._pending is None:
            self._start()

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            _worker_command(),
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=self._log,
            env=dict(self._env, **{RESULT_FD: str(write_fd)}),
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        os.close(write_fd)
        self._results = os.fdopen(read_fd, "rb")
        self._buffer = b""

    def _request(self, zygote: Zygote) -> tuple[socket.socket, int, int] | None:
        read_fd, write_fd = os.pipe()
        stdin_read, stdin_write = os.pipe()
        reply = zygote.request(stdin_read, self._log.fileno(), write_fd)
        os.close(stdin_read)
        os.close(write_fd)
        if reply is None:
            os.close(stdin_write)
            os.close(read_fd)
            return None
        return reply, stdin_write, read_fd

    def _ensure(self) -> None:
        """Wait for the zygote's answer, once; start the worker afresh if it did not fork one."""
        if self._pending is None:
            return
        reply, stdin_write, read_fd = self._pending
        self._pending = None
        pid = _read_pid(reply)
        if not pid:
            os.close(stdin_write)
            os.close(read_fd)
            self._start()
            return
        self.proc = _Forked(pid, stdin_write)
        self._results = os.fdopen(read_fd, "rb")
        self._buffer = b""

    def run(self, job: Job, limit: float, disk_limit: int | None = None) -> Reply:
        """Send ``job``; its result, or ``{"ok": False, ...}`` after ``limit`` seconds, a crash, or more
        than ``disk_limit`` bytes (or files) written under the job's folder."""
        self._ensure()
        try:
            self.proc.stdin.write((job.to_line() + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            return Reply(ok=False, error="the grading worker had stopped", crashed=True)
        deadline = time.monotonic() + limit
        while True:
            if b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(RESULT):
                    try:
                        return Reply.from_line(text[len(RESULT) :])
                    except (ValueError, TypeError):
                        return Reply(
                            ok=False, error="the grading worker answered something that is no reply", crashed=True
                        )
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Reply(ok=False, error=f"exceeded its time limit of {limit:g} s", timed_out=True)
            if disk_limit is not None and _job_disk_usage(job, disk_limit) > disk_limit:
                return Reply(ok=False, error=f"wrote more than {disk_limit / 2**30:g} GiB to disk", crashed=True)
            ready, _, _ = select.select([self._results], [], [], min(remaining, 2.0))
            if ready:
                chunk = os.read(self._results.fileno(), 65536)
                if not chunk:
                    code = self.proc.wait()
                    why = f" (exit {code})" if code >= 0 else ""
                    return Reply(ok=False, error=f"the grading worker died{why}", crashed=True)
                self._buffer += chunk

    def stop(self, kill: bool = False) -> None:
        self._ensure()
        if self.proc.poll() is None:
            if not kill:
                try:
                    self.proc.stdin.close()
                    self.proc.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    kill = True
            if kill:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the sandbox dies with its parent
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self._results.close()
        self._log.close()


def run_jobs(
    jobs: list[tuple[str, Path]],
    make_job: Callable[[str, Path], Job],
    on_result: Callable[[JobResult], None],
    workers: int,
    limit: float,
    env: dict[str, str],
    log_dir: Path,
    started: list[Worker] | None = None,
    stop: threading.Event | None = None,
    disk_limit: int | None = None,
    zygote: Zygote | None = None,
) -> list[JobResult]:
    """Grade ``jobs`` (student, scratch root) on ``workers`` processes; ``on_result`` runs serially.

    ``started``: workers already launched (see :func:`start_workers`), used before new ones.
    ``stop``: once set, no further job is started (those running finish).
    ``disk_limit``: bytes a job may write under its folder (the kernel's working folder, /tmp and
    /dev/shm live there); a job past it is killed with its sandbox.
    ``zygote``: where new workers are forked from (else each starts afresh).
    """
    spare = list(started or [])
    todo: queue.Queue = queue.Queue()
    for item in jobs:
        todo.put(item)
    results: list[JobResult] = []
    lock = threading.Lock()

    def slot(number: int) -> None:
        with lock:
            worker = spare.pop() if spare else None
        try:
            while not (stop is not None and stop.is_set()):
                try:
                    student, root = todo.get_nowait()
                except queue.Empty:
                    return
                if worker is None:
                    worker = Worker(env, log_dir / f"worker-{number}.log", zygote)
                start = time.monotonic()
                sockets = tempfile.mkdtemp(prefix="ag-")
                try:
                    answer = worker.run(
                        dataclasses.replace(make_job(student, root), sockets=sockets), limit, disk_limit
                    )
                finally:  # whatever the kernel left there, killed or not
                    shutil.rmtree(sockets, ignore_errors=True)
                if answer.timed_out or answer.crashed:
                    worker.stop(kill=True)
                    worker = None
                result = JobResult(
                    student,
                    root,
                    answer.ok,
                    answer.error,
                    time.monotonic() - start,
                    answer.timed_out,
                )
                with lock:
                    results.append(result)
                    on_result(result)
        finally:
            if worker is not None:
                worker.stop()

    threads = [threading.Thread(target=slot, args=(n,), daemon=True) for n in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in spare:  # more workers were started than there were jobs
        worker.stop()
    return results


def start_workers(count: int, env: dict[str, str], log_dir: Path, zygote: Zygote | None = None) -> list[Worker]:
    """Launch ``count`` workers now, so their imports overlap with the caller's preparations."""
    return [Worker(env, log_dir / f"worker-early-{n}.log", zygote) for n in range(count)]
