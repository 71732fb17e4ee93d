"""Executing a submission so that a test cell's verdict can be trusted.

Student cells run before and between the test cells, in the same Python process. This executor
(a drop-in replacement for nbgrader's ``Execute``) therefore:

- runs every kernel through :class:`autograder.execute.sandbox.SandboxedKernelManager`, in a working
  folder that holds the assignment's data files but never the notebook being graded;
- before any student code, imports the modules the test cells use and takes a *baseline*: the
  identity of every builtin and of every attribute of those modules, IPython's input
  transformers, AST transformers and event callbacks, the kernel's and shell's methods,
  ``sys`` hooks and tracing, import hooks;
- before each test cell, probes the kernel again. If anything differs from the baseline, the
  hidden test is never sent (a tampered kernel must not see it): the cell fails and is flagged;
- appends to each test cell an end-of-cell token, fresh and random for every cell of every run,
  that only the grader knows. A cell whose reply says "ok" but whose output lacks the token did
  not really run to its end (it was rewritten, blanked or its output faked): failed, flagged;
- probes again after the cell, so a test cell that was interfered with while running is flagged;
- caps each cell's output, and survives a kernel that exits or dies (later cells score zero).

A probe runs in the student's own interpreter, so a determined student who has read this file
could still write code that fools it; what it rules out is every generic trick (see the catalogue
in ``tests/test_hostile.py``), and the sandbox bounds what any code can reach.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Any, Bool, Dict, Enum, Integer, List, Unicode

from autograder.execute.calls import CallSession
from autograder.execute.probes import PROBE_MARK, differences, probe_code, watched_modules
from autograder.execute.sandbox import SandboxedKernelManager, unavailable_reason
from autograder.notebook import cell_id, is_test_cell


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class GuardedExecute(CallSession, Execute):
    """nbgrader's ``Execute`` with a sandboxed kernel, integrity probes and end-of-cell tokens."""

    sandbox = Bool(True, help="Run kernels in bubblewrap; False only for notebooks the instructor trusts.").tag(
        config=True
    )
    memory_limit = Integer(16 * 2**30, help="Kernel memory (data) limit, bytes.").tag(config=True)
    cpu_limit = Integer(3600, help="Kernel CPU-time limit, seconds.").tag(config=True)
    max_output_bytes = Integer(200_000, help="Output kept per cell; the rest is dropped.").tag(config=True)
    report_file = Unicode("", help="Where to write the integrity report (JSON), per notebook.").tag(config=True)
    probe_timeout = Integer(120).tag(config=True)
    scratch_root = Unicode(
        "",
        help="Where the kernel's working, /tmp and /dev/shm folders are made (the job's folder, watched for disk use).",
    ).tag(config=True)
    socket_root = Unicode(
        "", help="Where the kernel's socket folder is made (short, watched for disk use); empty: the system's /tmp."
    ).tag(config=True)
    call_judged = List(
        Unicode(),
        [],
        help="Assignments whose test cells the judge runs in the grader's process, calling the student's "
        "functions in the kernel for plain data (see autograder.judge.call.CallJudge)",
    ).tag(config=True)
    shortcuts = Dict(
        help="Per judged assignment, {module: what to use instead}: a graded function whose code (read from "
        "the student's cells, never run) uses one of these modules fails its tests with that message "
        "(see autograder.judge.shortcuts; its REFUSED table is the default)",
    ).tag(config=True)
    source_dir = Unicode(
        "",
        help="The assignment's folder of instructor notebooks (the course's source/<assignment>): a judged "
        "notebook's tests run in the order its instructor's notebook has them, whatever the submission's layout",
    ).tag(config=True)
    # Not configuration: the judge's test sources handed in directly (see autograder.judge.TestSources);
    # None reads them from the gradebook, as nbgrader's pipeline registered them.
    sources = Any(None, allow_none=True)
    # Once the last cell is judged the kernel holds nothing anyone needs: kill it rather than ask it
    # to stop (a graceful stop cost about 2.5 s per notebook, waiting on the kernel to exit).
    shutdown_kernel = Enum(["graceful", "immediate"], default_value="immediate").tag(config=True)
    data_ignore = List(["*.ipynb", "timestamp.txt", "submission_secret.txt", ".ipynb_checkpoints"]).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        if self.sandbox:
            reason = unavailable_reason()
            if reason:
                raise RuntimeError(
                    f"refusing to run student code outside a sandbox: {reason} "
                    "(c.GuardedExecute.sandbox = False runs it unsandboxed, with the grader's rights)"
                )
        self._cells: dict[str, list[str]] = {}
        self._events: list[str] = []
        self._dead: str | None = None
        self._token: str | None = None
        self._token_seen = False
        self._out_bytes: dict[int, int] = {}
        self._truncated: set[int] = set()
        tests = [c.source for c in nb.cells if is_test_cell(c)]
        self._watched = watched_modules(tests)
        self._judge = self._call_judge(nb, resources or {})
        self._session: socket.socket | None = None  # the call server's connection, during a test cell
        self._serving: str | None = None  # the msg_id of the cell that runs the call server
        self._baseline = None
        self._workdir = tempfile.mkdtemp(prefix="autograder-work-", dir=self.scratch_root or None)
        try:
            source_dir = Path((resources or {}).get("metadata", {}).get("path") or ".")
            self._copy_data(source_dir, Path(self._workdir))
            return super().preprocess(nb, resources, km)
        finally:
            for path in (self._workdir, f"{self._workdir}.tmp", f"{self._workdir}.shm"):
                shutil.rmtree(path, ignore_errors=True)
            self._write_report(nb, resources)

    def _call_judge(self, nb, resources: dict):
        """A :class:`CallJudge` when this notebook's assignment is judged by calls, else None.

        Its test sources are :attr:`sources` when given (a rehearsal hands in the instructor's
        notebook), else what the instructor's source registered in the gradebook."""
        info = resources.get("nbgrader", {})
        if info.get("assignment") not in self.call_judged:
            return None
        from autograder.judge.call import CallJudge
        from autograder.judge.shortcuts import REFUSED, UNIMPORTABLE, refusals
        from autograder.judge.sources import TestSources, defined_names

        sources, order = self.sources, None
        if sources is None:
            if "db_url" not in info:
                return None
            mine = Path(self.source_dir, f"{info['notebook']}.ipynb") if self.source_dir else None
            sources = TestSources.from_gradebook(info["db_url"], info["assignment"], info["notebook"], mine)
            if mine is None:  # the gradebook keeps no order: the submission's is all there is
                order = {cell_id(c): i for i, c in enumerate(nb.cells)}
        self._judged_tests, setup, answers = sources.tests, sources.setup, sources.answers
        self._verdicts: dict[str, tuple[str | None, list[str]]] = {}
        # The judge runs the notebook's imports, its first read-only code cell, and nothing else of
        # the notebook's: the later cells load models, train and plot for the student to read.
        first = sources.first_setup(order)
        instructor = set(self._judged_tests.values()) | set(setup.values())
        student = [c.source for c in nb.cells if c.cell_type == "code" and c.source not in instructor]
        return CallJudge(
            [setup[k] for k in first],
            defined_names(answers),
            self._kernel_call,
            refused=refusals(
                student,
                self.shortcuts.get(info["assignment"], REFUSED.get(info["assignment"], {})),
                graded=defined_names(answers),
            ),
            unimportable=UNIMPORTABLE.get(info["assignment"], ()),
        )

    def _copy_data(self, src: Path, dest: Path) -> None:
        """The assignment's data files, so relative paths work; never the notebook itself."""
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*self.data_ignore))

    def create_kernel_manager(self):
        self.kernel_manager_class = SandboxedKernelManager
        km = super().create_kernel_manager()
        km.sandbox = self.sandbox
        km.workdir = self._workdir
        if self.socket_root:
            km.use_socket_root(self.socket_root)
        km.memory_limit = self.memory_limit
        km.cpu_limit = self.cpu_limit
        return km

    # -- probes -------------------------------------------------------------------------------
    async def _async_probe(self) -> dict | None:
        chunks: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                chunks.append(msg["content"].get("text", ""))

        try:
            await self.kc.execute_interactive(
                probe_code(self._watched),
                silent=True,
                store_history=False,
                output_hook=hook,
                timeout=self.probe_timeout,
            )
        except (TimeoutError, DeadKernelError, RuntimeError):
            return None
        text = "".join(chunks)
        start = text.find(PROBE_MARK)
        end = text.find(PROBE_MARK, start + len(PROBE_MARK))
        if start < 0 or end < 0:
            return None
        try:
            return json.loads(text[start + len(PROBE_MARK) : end])
        except ValueError:
            return None

    def _probe(self) -> dict | None:
        return run_sync(self._async_probe)()

    def _bootstrap(self) -> None:
        """Import what the tests use, before any student code, and record the pristine state."""
        imports = "\n".join(f"try:\n    import {m}\nexcept Exception:\n    pass" for m in self._watched)
        run_sync(self.kc.execute_interactive)(
            imports, silent=True, store_history=False, output_hook=lambda m: None, timeout=self.probe_timeout
        )
        self._baseline = self._probe()
        if self._baseline is None:
            self._dead = "the kernel did not answer the grader's first integrity probe"

    # -- cells --------------------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream" and self._token:
            text = msg["content"].get("text", "")
            line = f"\n{self._token}\n"
            if self._token in text:
                self._token_seen = True
                msg["content"]["text"] = text.replace(line, "").replace(self._token, "")
        size = len(json.dumps(msg.get("content", {})))
        total = self._out_bytes.get(cell_index, 0) + size
        self._out_bytes[cell_index] = total
        if total > self.max_output_bytes:
            if cell_index not in self._truncated:
                self._truncated.add(cell_index)
                outs.append(
                    NotebookNode(
                        output_type="stream",
                        name="stdout",
                        text=f"\n[autograder: output beyond {self.max_output_bytes} bytes dropped]\n",
                    )
                )
            return None
        return super().output(outs, msg, display_id, cell_index)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._baseline is None and self._dead is None:
            self._bootstrap()
        if self._dead:
            cell.outputs = [_error("KernelStopped", f"not run: {self._dead}")]
            return cell, resources
        if not is_test_cell(cell):
            return self._run(cell, resources, index)
        grade_id = cell.metadata["nbgrader"].get("grade_id", f"cell {index}")
        if self._judge is not None:
            # Judged, the test never enters the kernel: a probe before it would guard nothing. The
            # probe after it still compares the kernel with its first state, so tampering done
            # earlier is flagged all the same; the verdict rests on the data, not on the probes.
            return self._judged(cell, grade_id, resources)
        before = self._probe()
        if before is None:
            return self._flag(
                cell, grade_id, ["the kernel did not answer the integrity probe before this test"], resources
            )
        reasons = differences(self._baseline, before)
        if reasons:
            # The hidden test is never sent to a kernel that has been tampered with.
            return self._flag(cell, grade_id, reasons, resources)
        original = cell.source
        self._token, self._token_seen = f"autograder-end-{secrets.token_hex(16)}", False
        # The trailing ';' keeps the write's return value from becoming an execute_result, which
        # nbgrader would read as partial credit.
        cell.source = f"{original}\n__import__('sys').stdout.write('\\n{self._token}\\n');"
        try:
            cell, resources = self._run(cell, resources, index)
        finally:
            cell.source = original
            token_seen, self._token = self._token_seen, None
        if self._dead:
            return cell, resources
        failed = any(o.get("output_type") == "error" for o in cell.outputs)
        reasons = []
        if not failed and not token_seen:
            reasons.append(
                "the test cell did not run to its end (its code was rewritten or cut short, or its output was faked)"
            )
        after = self._probe()
        if after is None:
            reasons.append("the kernel did not answer the integrity probe after this test")
        else:
            reasons += differences(self._baseline, after)
        if reasons:
            return self._flag(cell, grade_id, reasons, resources)
        return cell, resources

    def _judged(self, cell, grade_id, resources):
        """The test's verdict from the judge, run here; the kernel only answers calls.

        Tests are judged in the instructor's order, whatever the submission's: the tests that come
        before this one and that the submission has not reached yet (it moved them further down)
        are judged first, so that no test sees what the kernel kept from a later one."""
        if grade_id not in self._judged_tests:  # not a test cell of the instructor's: it earns nothing
            cell.outputs = [_error("AssertionError", "this cell is not one of the assignment's tests")]
            return cell, resources
        for earlier in self._judged_tests:
            if earlier not in self._verdicts:
                self._verdicts[earlier] = self._verdict(earlier)
            if earlier == grade_id:
                break
        message, reasons = self._verdicts[grade_id]
        if message is None:
            cell.outputs = []
        else:
            ename, _, evalue = message.partition(": ")
            cell.outputs = [_error(ename, evalue)]
        if reasons:
            return self._flag(cell, grade_id, reasons, resources)
        return cell, resources

    def _verdict(self, grade_id: str) -> tuple[str | None, list[str]]:
        """One test judged now: its message (None when it passed), and why the kernel cannot be
        trusted after it (the probe's findings), if so."""
        try:
            message = self._judge.verdict(self._judged_tests[grade_id], grade_id)
        finally:
            self._end_session()
        if self._dead:
            return message, []  # the judge got no answers: the test failed, nothing to probe
        after = self._probe()
        if after is None:
            return message, ["the kernel did not answer the integrity probe after this test"]
        return message, differences(self._baseline, after)

    def _run(self, cell, resources, index):
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError as exc:
            self._dead = f"the kernel stopped while running cell {index} ({' '.join(str(exc).split())[:120]})"
            cell.outputs.append(_error("KernelStopped", self._dead))
            self._events.append(self._dead)
            return cell, resources
        except CellTimeoutError:
            # The cell outlived its time limit and ignored the interrupt: the kernel is stuck.
            self._dead = f"the kernel stopped answering: cell {index} ignored its time limit of {self.timeout} s"
            cell.outputs.append(_error("KernelStopped", self._dead))
            self._events.append(self._dead)
            return cell, resources

    def _flag(self, cell, grade_id, reasons, resources):
        self._cells[grade_id] = reasons
        cell.outputs.append(
            _error(
                "AutograderTamperError",
                "this test's result cannot be trusted and earns no points: "
                + "; ".join(reasons)
                + ". The submission is flagged for the instructor's review.",
            )
        )
        return cell, resources

    def _write_report(self, nb, resources) -> None:
        if not self.report_file:
            return
        name = (resources or {}).get("unique_key", "notebook")
        path = Path(self.report_file)
        report = json.loads(path.read_text()) if path.is_file() else {}
        report[name] = {
            "tampered": self._cells,
            "events": self._events,
            "truncated_cells": sorted(self._truncated),
            "sandbox": self.sandbox,
        }
        path.write_text(json.dumps(report, indent=1, sort_keys=True))
