"""The judge of a function-valued notebook (01, 02, 03, 05), in the grader's process.

The instructor's setup cell and test cells run here, in one namespace, where each graded name is a
:class:`~autograder.judge.remote.Remote` into the student's kernel: calling it sends plain data in
and reads plain data back, through the executor's call session (:mod:`autograder.execute.calls`).
"""

from __future__ import annotations

import builtins
from typing import Any

from autograder import objects
from autograder.judge.remote import Channel, Execute, Remote
from autograder.judge.verdict import capped, run_test


class CallJudge:
    """The judge of a function-valued notebook: the instructor's setup cells and test cells run here,
    in one namespace, where each graded name is a :class:`~autograder.judge.remote.Remote` into the
    student's kernel."""

    def __init__(
        self,
        setup: list[str],
        names: list[str],
        execute: Execute,
        refused: dict[str, str] | None = None,
        unimportable: tuple[str, ...] = (),
    ) -> None:
        self.namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__judge__"}
        self.setup, self.names = setup, names
        self.refused = refused or {}  # graded name -> why its code is refused (autograder.judge.shortcuts)
        self.channel = Channel(execute, unimportable)
        self._ready = False

    def _prepare(self) -> None:
        self.remote = {name: Remote(self.channel, {"name": name}) for name in self.names}
        self.namespace.update(self.remote)
        for i, source in enumerate(self.setup):
            # As in the kernel, a setup cell that fails (it may call a student's function) does not
            # stop the cells after it; the tests that need what it made fail on their own.
            try:
                exec(compile(source, f"<setup cell {i}>", "exec"), self.namespace)
            except Exception:
                pass
            self.namespace.update(self.remote)  # a setup cell cannot shadow a graded name
        self._ready = True

    def verdict(self, source: str, cell: str) -> str | None:
        """None when the test ``source`` passes against the student's functions, else its message.

        The test of a function whose code uses a forbidden shortcut (``test_<name>``, or
        ``test_<name>_<part>``) fails with that message whatever it found. It still runs: the
        names it defines (the running example) are what later test cells read.
        """
        refused = [m for n, m in self.refused.items() if cell == f"test_{n}" or cell.startswith(f"test_{n}_")]
        previous, objects._channel = objects._channel, self.channel
        try:
            if not self._ready:
                self._prepare()
            verdict = run_test(source, self.namespace, cell)
            return capped(f"AssertionError: {refused[0]}") if refused else verdict
        finally:
            objects._channel = previous
            self.channel.release()  # what the kernel kept for this test (models, layers) is freed
