"""The judge's line to the student's kernel: one socket session per test cell.

:class:`CallSession` is mixed into :class:`autograder.execute.guarded.GuardedExecute`: during a test
cell the call server (:mod:`autograder.kernel.server`) runs in the kernel as one silent cell,
connected to a Unix socket in the kernel's socket folder; each judge request is one frame
(:mod:`autograder.wire`), each answer one frame back. A call that outlives the cell time limit is
interrupted, and a kernel that ignores the interrupt is given up. Runs in the grader's worker.
"""

from __future__ import annotations

import os
import queue
import secrets
import socket
import time
from pathlib import Path

from jupyter_core.utils import run_sync

from autograder import wire
from autograder.kernel import server

CONNECT_SECONDS = 30  # how long the call server may take to connect, the kernel being idle
# How long an interrupted call may take to stop: an honest one stops at once; never longer than a cell may run.
INTERRUPT_GRACE = 30


class CallSession:
    """The call transport of an nbclient executor: needs its ``km``, ``kc``, ``timeout``, and the
    ``_dead``/``_events``/``_session``/``_serving`` state that :class:`GuardedExecute` keeps."""

    def _kernel_call(self, request: str, hook) -> None:
        """Send one judge request to the kernel's call server; each message back (a dict) reaches
        ``hook``, and what ``hook`` returns (the judge's reply to a callback) goes back, until it
        returns None. The whole exchange has one cell's time limit."""
        if self._dead:
            return  # no answer: the judge says so, at once
        conn = self._session or self._open_session()
        if conn is None:
            return
        deadline = time.monotonic() + self.timeout
        outgoing: str | None = request
        while outgoing is not None:
            try:
                conn.sendall(wire.frame(outgoing.encode()))
                reply = self._receive(conn, deadline)
            except OSError:
                reply = None
            if reply is None:
                self._end_session()
                return
            try:
                answer = wire.parse_json(reply, limit=wire.MAX_FRAME)
            except wire.WireError:
                return  # not an answer: the judge reports none
            outgoing = hook(answer)

    def _open_session(self) -> socket.socket | None:
        """Start the call server in the kernel, connected to a socket only this test cell uses.

        The socket lives in the kernel's socket folder (the only one both sides see, with a short
        path); the server runs as one silent cell until :meth:`_end_session`. The kernel has just
        answered a probe, so it connects at once; one that does not (its server was replaced) is
        given up, rather than waited for again at every call."""
        path = os.path.join(self.km._socket_dir, f"judge-{secrets.token_hex(8)}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(1)
            code = f"__import__({server.__name__!r}, fromlist=['serve']).serve({path!r})"
            self._serving = self.kc.execute(code, silent=True, store_history=False)
            deadline = time.monotonic() + CONNECT_SECONDS
            while time.monotonic() < deadline:
                try:
                    self._session = listener.accept()[0]
                    return self._session
                except TimeoutError:
                    if run_sync(self._await_idle)(self._serving, 0):  # it ended without connecting
                        self._drain_reply(self._serving)
                        self._serving = None
                        break
            self._end_session()
            if not self._dead:
                self._dead = "the kernel's call server did not connect to the grader"
                self._events.append(self._dead)
            return None
        finally:
            listener.close()
            Path(path).unlink(missing_ok=True)

    def _receive(self, conn: socket.socket, deadline: float) -> bytes | None:
        """The answer frame's bytes; None when the kernel hung up, stopped, sent too much or took
        longer than a cell may (``timeout``: ``deadline`` is when its time is up)."""
        data, size = bytearray(), None
        while size is None or len(data) < wire.FRAME.size + size:
            if time.monotonic() > deadline:
                self._events.append(f"a call to the student's code did not return within {self.timeout} s")
                return None
            conn.settimeout(1)
            try:
                chunk = conn.recv(2**20)
            except TimeoutError:
                if not run_sync(self.km.is_alive)():
                    return None
                continue
            if not chunk:
                return None
            data += chunk
            if size is None and len(data) >= wire.FRAME.size:
                size = wire.FRAME.unpack_from(data)[0]
                if size > wire.MAX_FRAME:
                    self._events.append("the kernel's answer to a call was too large")
                    return None
        return bytes(data[wire.FRAME.size :])

    def _end_session(self) -> None:
        """Stop the call server (an empty frame, then hang up) and wait for its cell to end.

        A call still running (it outlived its time) is interrupted; a kernel that ignores the
        interrupt, or died, is stopped for good: the tests after it fail at once."""
        if self._serving is None:
            return
        if self._session is not None:
            try:
                self._session.sendall(wire.frame(b""))
            except OSError:
                pass
            self._session.close()
            self._session = None
        msg_id, self._serving = self._serving, None
        if not run_sync(self._await_idle)(msg_id, 5):
            if self._dead:
                return
            run_sync(self.km.interrupt_kernel)()
            if not run_sync(self._await_idle)(msg_id, min(INTERRUPT_GRACE, self.timeout)) and not self._dead:
                self._dead = "the kernel stopped answering: a call to the student's code ignored its time limit"
                self._events.append(self._dead)
            return
        self._drain_reply(msg_id)

    def _drain_reply(self, msg_id: str) -> None:
        """Read the shell reply to ``msg_id``, so that it does not wait for the next cell."""
        try:
            while run_sync(self.kc.get_shell_msg)(timeout=1).get("parent_header", {}).get("msg_id") != msg_id:
                pass
        except queue.Empty:
            pass

    async def _await_idle(self, msg_id: str, seconds: float) -> bool:
        """Whether the kernel finished ``msg_id`` within ``seconds`` (0: only what has arrived).

        It notices within a second that the kernel died, and says so in ``_dead``."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                msg = await self.kc.get_iopub_msg(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if not await self.km.is_alive():
                    self._dead = "the kernel stopped while answering the grader's calls"
                    self._events.append(self._dead)
                    return False
                if time.monotonic() >= deadline:
                    return False
                continue
            ours = msg.get("parent_header", {}).get("msg_id") == msg_id
            if ours and msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return True
            if time.monotonic() > deadline + 1:  # output that never stops, from a thread it started
                return False
