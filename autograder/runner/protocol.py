"""What crosses between ``autograder grade`` (the pool, :mod:`autograder.runner.pool`) and a grading
worker (:mod:`autograder.runner.worker`): one :class:`Job` line on the worker's stdin, one
:class:`Reply` line on its private result pipe, each JSON. This module owns both formats and the
environment variables that start a worker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

RESULT = "AUTOGRADER-RESULT "  # the prefix of a reply line on the result pipe
RESULT_FD = "AUTOGRADER_RESULT_FD"  # set: the descriptor of the worker's result pipe
ZYGOTE_FD = "AUTOGRADER_ZYGOTE_FD"  # set: this process forks the workers (see worker.zygote)
# bytes of data a worker (the judge included) may hold: what a kernel's answers make it build is capped
WORKER_MEMORY = "AUTOGRADER_WORKER_MEMORY"
PRELOAD = "AUTOGRADER_PRELOAD"  # the judge's import lines (JSON list), from the instructor's notebook


class _Line:
    """One message as one JSON line: every field of the dataclass, and nothing else on the way back."""

    def to_line(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_line(cls, line: str):
        data = json.loads(line)
        if type(data) is not dict:
            raise ValueError(f"a {cls.__name__} line must hold a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"a {cls.__name__} line has unknown fields {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Job(_Line):
    """Autograde ``student``'s ``assignment`` in the scratch course ``root`` (a folder of its own,
    holding the assignment's source, a gradebook with only that assignment and one submission)."""

    root: str
    assignment: str
    student: str
    timeout: int | None = None  # seconds per cell; None: the course's c.Execute.timeout
    sandbox: bool = True
    memory: int | None = None  # bytes the kernel may use; None: GuardedExecute's default
    cpu: int | None = None  # CPU seconds the kernel may use; None: GuardedExecute's default
    # The folder for the kernel's sockets: short (a Unix socket path has ~100 bytes), made and
    # removed by the pool, and counted in the job's disk use (the kernel can write there).
    sockets: str | None = None


@dataclass(frozen=True)
class Reply(_Line):
    """How one job ended: from the worker, or from the pool when the worker could not answer."""

    ok: bool
    error: str = ""
    student: str | None = None
    timed_out: bool = False  # the pool stopped it at its time limit
    crashed: bool = False  # the worker died, or broke a limit: it is replaced


@dataclass(frozen=True)
class JobResult:
    """One graded submission as the pool hands it to ``autograder grade``."""

    student: str
    root: Path
    ok: bool
    error: str = ""
    seconds: float = 0.0
    timed_out: bool = False
