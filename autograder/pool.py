"""A pool of grading workers (:mod:`autograder.worker`), each a long-lived process.

Every submission gets its own time limit: a worker that exceeds it, or dies, is killed with its
sandboxed kernel and replaced, and only that submission is lost. Results come back through a
private pipe, so nothing a student prints can pose as one.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .worker import RESULT


@dataclass(frozen=True)
class JobResult:
    student: str
    root: Path
    ok: bool
    error: str = ""
    seconds: float = 0.0
    timed_out: bool = False


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


class Worker:
    """One ``python -m autograder.worker`` process and the read end of its result pipe."""

    def __init__(self, env: dict[str, str], log_path: Path):
        read_fd, write_fd = os.pipe()
        env = dict(env, AUTOGRADER_RESULT_FD=str(write_fd))
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            # -P: the grader's working folder is not on the path, so nothing there shadows a module.
            [sys.executable, "-P", "-m", "autograder.worker"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=self._log,
            env=env,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        os.close(write_fd)
        self._results = os.fdopen(read_fd, "rb")
        self._buffer = b""

    def run(self, job: dict, limit: float, disk_limit: int | None = None) -> dict:
        """Send ``job``; its result, or ``{"ok": False, ...}`` after ``limit`` seconds, a crash, or more
        than ``disk_limit`` bytes (or files) written under the job's folder."""
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            return {"ok": False, "error": "the grading worker had stopped", "crashed": True}
        deadline = time.monotonic() + limit
        while True:
            if b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(RESULT):
                    return json.loads(text[len(RESULT) :])
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {"ok": False, "error": f"exceeded its time limit of {limit:g} s", "timed_out": True}
            if disk_limit is not None and disk_usage(Path(job["root"]), disk_limit) > disk_limit:
                return {"ok": False, "error": f"wrote more than {disk_limit / 2**30:g} GiB to disk", "crashed": True}
            ready, _, _ = select.select([self._results], [], [], min(remaining, 2.0))
            if ready:
                chunk = os.read(self._results.fileno(), 65536)
                if not chunk:
                    code = self.proc.wait()
                    return {"ok": False, "error": f"the grading worker died (exit {code})", "crashed": True}
                self._buffer += chunk

    def stop(self, kill: bool = False) -> None:
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
    make_job: Callable[[str, Path], dict],
    on_result: Callable[[JobResult], None],
    workers: int,
    limit: float,
    env: dict[str, str],
    log_dir: Path,
    started: list[Worker] | None = None,
    stop: threading.Event | None = None,
    disk_limit: int | None = None,
) -> list[JobResult]:
    """Grade ``jobs`` (student, scratch root) on ``workers`` processes; ``on_result`` runs serially.

    ``started``: workers already launched (see :func:`start_workers`), used before new ones.
    ``stop``: once set, no further job is started (those running finish).
    ``disk_limit``: bytes a job may write under its folder (the kernel's working folder, /tmp and
    /dev/shm live there); a job past it is killed with its sandbox.
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
                    worker = Worker(env, log_dir / f"worker-{number}.log")
                start = time.monotonic()
                answer = worker.run(make_job(student, root), limit, disk_limit)
                if answer.get("timed_out") or answer.get("crashed"):
                    worker.stop(kill=True)
                    worker = None
                result = JobResult(
                    student,
                    root,
                    bool(answer.get("ok")),
                    answer.get("error", ""),
                    time.monotonic() - start,
                    bool(answer.get("timed_out")),
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


def start_workers(count: int, env: dict[str, str], log_dir: Path) -> list[Worker]:
    """Launch ``count`` workers now, so their imports overlap with the caller's preparations."""
    return [Worker(env, log_dir / f"worker-early-{n}.log") for n in range(count)]
