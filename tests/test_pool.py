"""The worker pool's zygote: workers forked from one process that imported once, and a plain
start wherever it cannot fork safely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from autograder.commands.grade import worker_env
from autograder.runner.pool import Worker, Zygote, _Forked
from autograder.runner.protocol import PRELOAD, Job, Reply

# A job the worker can only fail: its answer proves the worker's loop runs.
BAD_JOB = Job(root="/nonexistent-course", assignment="a", student="s")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _zygote(tmp_path, preload: list[str]) -> Zygote:
    return Zygote(dict(worker_env(2), **{PRELOAD: json.dumps(preload)}), tmp_path / "zygote.log")


def test_workers_are_forked_from_the_zygote_each_in_a_session_of_its_own(tmp_path):
    zygote = _zygote(tmp_path, ["import email.message"])
    workers = [Worker({}, tmp_path / f"w{i}.log", zygote) for i in range(2)]
    try:
        for worker in workers:
            answer = worker.run(BAD_JOB, limit=120)
            assert answer.ok is False and "nbgrader_config.py" in answer.error
            assert type(worker.proc) is _Forked
            assert _parent(worker.proc.pid) == zygote.proc.pid
            assert os.getpgid(worker.proc.pid) == worker.proc.pid  # killpg reaches its sandbox
        os.killpg(workers[1].proc.pid, signal.SIGKILL)
        # Seen on its stdin (the write fails) or on its result pipe (it closed), whichever comes first.
        answer = workers[1].run(BAD_JOB, limit=60)
        assert answer.error in ("the grading worker died", "the grading worker had stopped"), answer
        assert answer == Reply(ok=False, error=answer.error, crashed=True)
        workers[0].stop()
        assert workers[0].proc.returncode is not None  # it saw its stdin close and ended
    finally:
        for worker in workers:
            worker.stop(kill=True)
        zygote.stop()


def test_a_zygote_that_cannot_fork_safely_gives_a_plainly_started_worker(tmp_path):
    # fork() would copy only one of its two threads: it refuses, and the worker starts afresh.
    threaded = _zygote(tmp_path, ["import threading, time; threading.Thread(target=time.sleep, args=(600,)).start()"])
    gone = _zygote(tmp_path, [])
    gone.proc.kill()
    gone.proc.wait()
    try:
        for zygote in (threaded, gone):
            worker = Worker({}, tmp_path / f"w{zygote.proc.pid}.log", zygote)
            try:
                assert worker.run(BAD_JOB, limit=120).ok is False
                assert type(worker.proc) is subprocess.Popen
            finally:
                worker.stop(kill=True)
    finally:
        for zygote in (threaded, gone):
            zygote.proc.kill()
            zygote.stop()


def test_jobs_and_replies_cross_as_one_typed_json_line_each():
    job = Job(root="/r", assignment="a", student="s", timeout=5, memory=2**30)
    assert Job.from_line(job.to_line()) == job
    reply = Reply(ok=False, error="why", student="s", crashed=True)
    assert Reply.from_line(reply.to_line()) == reply
    for bad in ("[1]", '{"root": "/r"}', '{"root": "/r", "assignment": "a", "student": "s", "evil": 1}'):
        with pytest.raises((ValueError, TypeError)):
            Job.from_line(bad)


def test_a_worker_holds_no_more_memory_than_it_is_given(tmp_path):
    """The judge runs in the worker: its data is capped (RLIMIT_DATA), in the zygote's forks too."""
    zygote = Zygote(dict(worker_env(1, memory=3 * 2**30), **{PRELOAD: "[]"}), tmp_path / "zygote.log")
    worker = Worker({}, tmp_path / "w.log", zygote)
    try:
        worker.run(BAD_JOB, limit=120)
        limits = Path(f"/proc/{worker.proc.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max data size"))
        assert line.split()[3] == str(3 * 2**30), line  # the soft limit; the kernel's own is the sandbox's
    finally:
        worker.stop(kill=True)
        zygote.stop()
