"""A grading worker: ``python -m autograder.runner.worker`` autogrades one scratch course per job.

The parent (:mod:`autograder.runner.pool`) writes one :class:`~autograder.runner.protocol.Job` per
line on stdin; the worker answers one :class:`~autograder.runner.protocol.Reply` line per job on its
result pipe, prefixed by ``RESULT``. Each job is a throw-away course directory
holding the assignment's source, a gradebook with only that assignment, and one submission:
the worker never sees the real gradebook, and nbgrader's own autograde pipeline (sanitize,
restore locked cells, execute, score) runs unchanged except that execution is
:class:`autograder.execute.guarded.GuardedExecute`. nbgrader is imported once per worker, not per student.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import signal
import socket
import sys
import traceback

from autograder.runner.protocol import PRELOAD, RESULT, RESULT_FD, WORKER_MEMORY, ZYGOTE_FD, Job, Reply


def preload(lines: list[str]) -> None:
    """Import what the judge will (each line an import statement of the instructor's), then move
    everything alive so far out of the garbage collector's sight.

    A judge imports torch, transformers and PEFT: hundreds of thousands of objects that live as
    long as the worker. Frozen, they are no longer walked by every full collection during grading
    (about 0.3 s each). A line that fails is skipped: the judge meets and reports the same error.
    """
    namespace: dict = {}
    for line in lines:
        try:
            exec(compile(line, "<judge imports>", "exec"), namespace)
        except Exception:
            continue
    gc.collect()
    gc.freeze()


def job_config(job: Job):
    """The nbgrader configuration that grades ``job``: the course's own, inside the job's folder, with
    the guarded pipeline and the job's limits."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config, PyFileConfigLoader

    from autograder.execute.pipeline import guarded_autograde_preprocessors

    root = job.root
    cfg = Config()
    loader = PyFileConfigLoader("nbgrader_config.py", path=root)
    cfg.merge(loader.load_config())
    cfg.CourseDirectory.root = root
    cfg.CourseDirectory.assignment_id = job.assignment
    cfg.CourseDirectory.student_id = job.student
    cfg.BaseConverter.force = True
    cfg.Autograde.autograde_preprocessors = guarded_autograde_preprocessors()
    if job.timeout:
        cfg.Execute.timeout = int(job.timeout)
    cfg.GuardedExecute.sandbox = bool(job.sandbox)
    cfg.GuardedExecute.report_file = os.path.join(root, "integrity.json")
    cfg.GuardedExecute.scratch_root = root  # the pool watches this folder's disk use
    if job.sockets:
        cfg.GuardedExecute.socket_root = job.sockets  # and this one's
    if job.memory:
        cfg.GuardedExecute.memory_limit = int(job.memory)
    if job.cpu:
        cfg.GuardedExecute.cpu_limit = int(job.cpu)
    # The instructor's notebooks set the order in which the judge runs the tests.
    source = CourseDirectory(config=cfg).source_directory
    cfg.GuardedExecute.source_dir = os.path.join(root, source, job.assignment)
    return cfg


def grade_job(job: Job) -> Reply:
    """Autograde ``job.student``'s ``job.assignment`` inside ``job.root``."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory

    cfg = job_config(job)
    log = logging.getLogger(f"{__name__}.{job.student}")
    log.handlers[:] = [logging.FileHandler(os.path.join(job.root, "autograde.log"))]
    log.propagate = False
    log.setLevel(logging.INFO)
    cwd = os.getcwd()
    os.chdir(job.root)  # nbgrader resolves some paths against the working directory
    try:
        coursedir = CourseDirectory(config=cfg)
        converter = Autograde(coursedir=coursedir, config=cfg, log=log)
        converter.start()
    finally:
        os.chdir(cwd)
    return Reply(ok=True, student=job.student)


def _log_cause(root: str, fallback: str) -> str:
    """The telling error of a failed autograde, from its log (nbgrader's exception only says 'see above')."""
    from autograder.commands.nbgrader_run import _cause

    try:
        text = open(os.path.join(root, "autograde.log"), encoding="utf-8", errors="replace").read()
    except OSError:
        return fallback
    lines = [ln for ln in text.splitlines() if ln.strip() and "Please see" not in ln]
    return _cause("\n".join(lines[-60:])) if lines else fallback


def serve(out) -> int:
    """Grade the jobs read from stdin, one result line each on ``out``, until stdin ends."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = Job.from_line(line)
        except (ValueError, TypeError) as exc:
            out.write(RESULT + Reply(ok=False, error=f"not a job: {exc}").to_line() + "\n")
            out.flush()
            continue
        try:
            result = grade_job(job)
        except BaseException as exc:  # one bad submission must not end the worker
            if isinstance(exc, KeyboardInterrupt):
                raise
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            result = Reply(ok=False, error=_log_cause(job.root, detail), student=job.student)
        out.write(RESULT + result.to_line() + "\n")
        out.flush()
    return 0


def _single_threaded() -> bool:
    # fork() copies only the calling thread: a lock another thread held would stay locked forever.
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def zygote(control: socket.socket) -> int:
    """Import once, then fork each worker from this process on request (:class:`autograder.runner.pool.Zygote`).

    A request is one message carrying four file descriptors: the new worker's stdin, its log, its
    result pipe, and a socket for the answer: the worker's pid, or 0 when this process cannot fork
    safely (the pool then starts that worker the ordinary way). Workers are reaped by the kernel
    (SIGCHLD is ignored here); each runs in a session of its own, as a directly started one does.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 4)
        except OSError:
            return 0
        if not message:
            return 0
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            continue
        stdin_fd, log_fd, result_fd, reply_fd = fds
        forking = _single_threaded()
        pid = os.fork() if forking else 0
        if forking and pid == 0:  # the worker
            code = 1
            try:
                control.close()
                os.close(reply_fd)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.setsid()
                for target, fd in ((0, stdin_fd), (1, log_fd), (2, log_fd)):
                    os.dup2(fd, target)
                os.close(stdin_fd)
                os.close(log_fd)
                sys.stdin = open(0, encoding="utf-8", closefd=False)
                sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)
                sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)
                code = serve(os.fdopen(result_fd, "w"))
            finally:
                os._exit(code)
        try:
            os.write(reply_fd, f"{pid}\n".encode())
        except OSError:
            pass
        for fd in fds:
            os.close(fd)


def limit_memory(limit: str | None) -> None:
    """This process's data (heap and private mappings) capped at ``limit`` bytes; forked workers inherit it.

    Only the soft limit: the kernels this worker starts inherit it, and the sandbox must be able to
    give them their own (``--memory``), which may be larger."""
    if limit:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (int(limit), hard))


def main() -> int:
    os.environ.pop("NBGRADER_EXECUTION", None)
    limit_memory(os.environ.pop(WORKER_MEMORY, None))
    control = os.environ.pop(ZYGOTE_FD, None)
    # Results go to a private pipe, never to stdout, which anything might write to.
    out = None if control else os.fdopen(int(os.environ.pop(RESULT_FD, "1")), "w")
    import nbgrader.converters  # noqa: F401 -- the slow import, done before the first job arrives

    preload(json.loads(os.environ.pop(PRELOAD, "[]")))
    if control:
        return zygote(socket.socket(fileno=int(control)))
    return serve(out)


if __name__ == "__main__":
    sys.exit(main())
