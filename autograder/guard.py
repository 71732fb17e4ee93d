"""Executing a submission so that a test cell's verdict can be trusted.

Student cells run before and between the test cells, in the same Python process. This executor
(a drop-in replacement for nbgrader's ``Execute``) therefore:

- runs every kernel through :class:`autograder.sandbox.SandboxedKernelManager`, in a working
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

import ast
import json
import os
import queue
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Any, Bool, Dict, Integer, List, Unicode

from . import wire
from .notebook import cell_id
from .sandbox import SandboxedKernelManager, unavailable_reason

ALWAYS_WATCHED = ("builtins", "math", "numpy", "numpy.testing", "autograder.compare")
# Builtins a test may call directly; a student's own function of that name hides the real one.
JUDGING_BUILTINS = (
    "isinstance",
    "issubclass",
    "type",
    "len",
    "abs",
    "round",
    "float",
    "int",
    "str",
    "bool",
    "all",
    "any",
    "repr",
    "print",
    "min",
    "max",
    "sum",
    "sorted",
    "hasattr",
    "getattr",
    "set",
    "list",
    "dict",
    "tuple",
    "zip",
    "range",
    "enumerate",
    "iter",
    "next",
    "id",
    "callable",
    "vars",
    "__import__",
    "compile",
    "exec",
    "eval",
    "AssertionError",
    "Exception",
)
SHELL_METHODS = (
    "run_cell",
    "run_cell_async",
    "run_ast_nodes",
    "run_code",
    "transform_cell",
    "transform_ast",
    "showtraceback",
    "_showtraceback",
    "showsyntaxerror",
    "user_expressions",
    "ex",
    "ev",
    "should_run_async",
    "_run_cell",
    "get_exception_only",
    "init_user_ns",
)
KERNEL_METHODS = ("do_execute", "execute_request", "send_response", "_publish_execute_input", "_publish_status")
PROBE_MARK = "AUTOGRADER-PROBE"
# The kernel itself rebinds these for every request (stdin forwarding); they judge nothing.
PER_REQUEST = {("builtins", "input"), ("builtins", "raw_input"), ("getpass", "getpass")}

# The probe is sent as source every time (nothing of it lives in the kernel between probes) and
# prints one JSON line between two marks.
PROBE_CODE = r"""
def __autograder_probe(watched, judging, shell_methods, kernel_methods, mark):
    import sys, json, builtins, threading
    def ids(d):
        return {str(k): id(v) for k, v in list(d.items())}
    def method_ids(obj, names):
        out = {}
        for name in names:
            owner = next((k for k in type(obj).__mro__ if name in vars(k)), None)
            out[name] = [name in getattr(obj, "__dict__", {}), id(vars(owner)[name]) if owner else 0]
        return out
    report = {"modules": {}, "trace": [sys.gettrace() is None, sys.getprofile() is None,
              getattr(threading, "_trace_hook", None) is None, getattr(threading, "_profile_hook", None) is None]}
    for name in watched:
        module = sys.modules.get(name)
        if module is not None:
            report["modules"][name] = [id(module), ids(vars(module))]
    hooks = {}
    for name in ("displayhook", "stdout", "stderr", "breakpointhook", "settrace", "setprofile",
                 "gettrace", "exit", "modules"):
        hooks[name] = id(getattr(sys, name, None))
    report["sys"] = hooks
    report["import_hooks"] = [id(x) for x in sys.meta_path] + [id(x) for x in sys.path_hooks]
    import os
    trusted = []
    for pkg in ("IPython", "ipykernel", "matplotlib_inline", "matplotlib", "comm"):
        module = sys.modules.get(pkg)
        if module is not None and getattr(module, "__file__", None):
            trusted.append(os.path.dirname(os.path.realpath(module.__file__)) + os.sep)
    def trusted_callback(f):
        code = getattr(getattr(f, "__func__", f), "__code__", None)
        path = os.path.realpath(code.co_filename) if code is not None else ""
        return any(path.startswith(t) for t in trusted)
    ip = get_ipython()
    report["shell"] = {
        "id": id(ip),
        "cleanup": [id(x) for x in ip.input_transformers_cleanup],
        "post": [id(x) for x in ip.input_transformers_post],
        "ast": [id(x) for x in ip.ast_transformers],
        "manager": id(ip.input_transformer_manager),
        "events": {k: [[id(f), trusted_callback(f)] for f in v] for k, v in ip.events.callbacks.items()},
        "methods": method_ids(ip, shell_methods),
        "kernel": method_ids(ip.kernel, kernel_methods) if getattr(ip, "kernel", None) is not None else {},
    }
    user_builtins = vars(builtins)
    report["shadows"] = sorted(n for n in judging if n in ip.user_ns and ip.user_ns[n] is not user_builtins.get(n)
                               and callable(ip.user_ns[n]))
    sys.stdout.write("\n" + mark + json.dumps(report) + mark + "\n")
    sys.stdout.flush()
try:
    __autograder_probe(%s, %s, %s, %s, %r)
finally:
    del __autograder_probe
"""


def guarded_autograde_preprocessors() -> list:
    """nbgrader's autograde pipeline with :class:`GuardedExecute` in place of ``Execute``, followed by
    the judge (:class:`autograder.judge.LiteralJudge`), which re-grades the assignments it is
    configured for without trusting anything the kernel did."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    from .judge import LiteralJudge

    return [
        GuardedExecute,
        LiteralJudge,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]


def watched_modules(sources: list[str]) -> list[str]:
    """Modules the test cells import (and their parents), plus those every course test relies on."""
    names = set(ALWAYS_WATCHED)
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(names)


def probe_code(watched: list[str]) -> str:
    return PROBE_CODE % (watched, list(JUDGING_BUILTINS), list(SHELL_METHODS), list(KERNEL_METHODS), PROBE_MARK)


def differences(baseline: dict, now: dict) -> list[str]:
    """What changed since the baseline, as short sentences (empty: pristine)."""
    found = []
    if now["trace"] != baseline["trace"]:
        found.append("a tracing or profiling hook was installed (sys.settrace/setprofile)")
    for module, (module_id, attrs) in baseline["modules"].items():
        current = now["modules"].get(module)
        if current is None or current[0] != module_id:
            found.append(f"module {module} was replaced in sys.modules")
            continue
        changed = sorted(
            name for name, ident in attrs.items() if current[1].get(name) != ident and (module, name) not in PER_REQUEST
        )
        if changed:
            found.append(f"{module}.{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} replaced or deleted")
    for name, ident in baseline["sys"].items():
        if now["sys"].get(name) != ident:
            found.append(f"sys.{name} was replaced")
    shell, shell_now = baseline["shell"], now["shell"]
    for key, label in (
        ("cleanup", "an IPython input transformer"),
        ("post", "an IPython input transformer"),
        ("ast", "an IPython AST transformer"),
        ("manager", "IPython's input transformer manager"),
        ("id", "the IPython shell"),
    ):
        if shell_now.get(key) != shell[key]:
            found.append(f"{label} was added or replaced")
    for event, callbacks in shell["events"].items():
        now_callbacks = shell_now["events"].get(event, [])
        before = {ident for ident, _ in callbacks}
        removed = before - {ident for ident, _ in now_callbacks}
        # IPython, ipykernel and matplotlib register callbacks of their own (inline figures).
        added = [ident for ident, trusted in now_callbacks if ident not in before and not trusted]
        if removed or added:
            found.append(f"an IPython '{event}' event callback was added or removed")
    # Finders may be added (libraries register their own); the original ones must stay.
    if not set(baseline["import_hooks"]) <= set(now["import_hooks"]):
        found.append("an import hook of the interpreter was removed or replaced")
    for group, label in (("methods", "IPython shell"), ("kernel", "kernel")):
        for name, ident in shell[group].items():
            if shell_now[group].get(name) != ident:
                found.append(f"the {label} method {name} was patched")
    new_shadows = sorted(set(now["shadows"]) - set(baseline["shadows"]))
    if new_shadows:
        found.append(
            f"the notebook defines {', '.join(new_shadows)} at top level, hiding Python's builtin the tests rely on"
        )
    return sorted(set(found), key=found.index)


CONNECT_SECONDS = 30  # how long the call server may take to connect, the kernel being idle


def is_test_cell(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class GuardedExecute(Execute):
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
    call_judged = List(
        Unicode(),
        [],
        help="Assignments whose test cells the judge runs in the grader's process, calling the student's "
        "functions in the kernel for plain data (see autograder.judge.CallJudge)",
    ).tag(config=True)
    shortcuts = Dict(
        help="Per judged assignment, {module: what to use instead}: a graded function whose code (read from "
        "the student's cells, never run) uses one of these modules fails its tests with that message "
        "(see autograder.shortcuts; its REFUSED table is the default)",
    ).tag(config=True)
    # Not configuration: the judge's test sources handed in directly (see autograder.judge.TestSources);
    # None reads them from the gradebook, as nbgrader's pipeline registered them.
    sources = Any(None, allow_none=True)
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
        from .judge import CallJudge, TestSources, defined_names
        from .shortcuts import REFUSED, refusals

        sources = self.sources
        if sources is None:
            if "db_url" not in info:
                return None
            sources = TestSources.from_gradebook(info["db_url"], info["assignment"], info["notebook"])
        self._judged_tests, setup, answers = sources.tests, sources.setup, sources.answers
        # The judge runs the notebook's imports, its first read-only code cell, and nothing else of
        # the notebook's: the later cells load models, train and plot for the student to read.
        order = {cell_id(c): i for i, c in enumerate(nb.cells)}
        first = sorted(setup, key=lambda k: (order.get(k, len(order)), k))[:1]
        instructor = set(self._judged_tests.values()) | set(setup.values())
        student = [c.source for c in nb.cells if c.cell_type == "code" and c.source not in instructor]
        return CallJudge(
            [setup[k] for k in first],
            defined_names(answers),
            self._kernel_call,
            refused=refusals(student, self.shortcuts.get(info["assignment"], REFUSED.get(info["assignment"], {}))),
        )

    def _kernel_call(self, request: str, hook) -> None:
        """Send one judge request to the kernel's call server; its answer (a dict) reaches ``hook``."""
        if self._dead:
            return  # no answer: the judge says so, at once
        conn = self._session or self._open_session()
        if conn is None:
            return
        try:
            conn.sendall(wire.frame(request.encode()))
            reply = self._receive(conn)
        except OSError:
            reply = None
        if reply is None:
            self._end_session()
            return
        try:
            answer = json.loads(reply)
        except (ValueError, RecursionError):
            return  # not an answer: the judge reports none
        hook(answer)

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
            code = f"__import__('autograder.kernel_server', fromlist=['serve']).serve({path!r})"
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

    def _receive(self, conn: socket.socket) -> bytes | None:
        """The answer frame's bytes; None when the kernel hung up, stopped, sent too much or took
        longer than a cell may (``timeout``)."""
        deadline = time.monotonic() + self.timeout
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
            if not run_sync(self._await_idle)(msg_id, 30) and not self._dead:
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

    def _copy_data(self, src: Path, dest: Path) -> None:
        """The assignment's data files, so relative paths work; never the notebook itself."""
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*self.data_ignore))

    def create_kernel_manager(self):
        self.kernel_manager_class = SandboxedKernelManager
        km = super().create_kernel_manager()
        km.sandbox = self.sandbox
        km.workdir = self._workdir
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
        """The test's verdict from the judge, run here; the kernel only answers calls."""
        source = self._judged_tests.get(grade_id)
        if source is None:  # not a test cell of the instructor's: it earns nothing
            cell.outputs = [_error("AssertionError", "this cell is not one of the assignment's tests")]
            return cell, resources
        try:
            message = self._judge.verdict(source, grade_id)
        finally:
            self._end_session()
        if message is None:
            cell.outputs = []
        else:
            ename, _, evalue = message.partition(": ")
            cell.outputs = [_error(ename, evalue)]
        if self._dead:
            return cell, resources  # the judge got no answers: the test failed, nothing to probe
        after = self._probe()
        reasons = ["the kernel did not answer the integrity probe after this test"] if after is None else []
        if after is not None:
            reasons += differences(self._baseline, after)
        if reasons:
            return self._flag(cell, grade_id, reasons, resources)
        return cell, resources

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
