"""A catalogue of hostile submissions, graded in one batch with two honest ones.

Each hostile submission answers every question wrongly (or not at all) and tries one trick to
earn points anyway, or to read, write or break what it must not. Every one must score zero;
those that tamper with the kernel must be flagged for review; the honest submissions graded in
the same batch must get exactly their scores; and the course's source, release, other
submissions and gradebook must come out untouched.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import socket
import threading

import nbformat
import pytest

from autograder import notebook as nbu
from autograder.commands.grade import GradeSettings, export_csv, grade
from autograder.commands.nbgrader_run import scratch_course
from autograder.course import Course
from harness import ROOT, course, max_score, points
from practice import NB, A, practice_letters, practice_notebook, wrong_letters

# Grading students' code needs the sandbox: without it every test here fails and says to run ./setup.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_ready")]

RIGHT = practice_letters()
WRONG = {n: wrong_letters(n)[0] for n in RIGHT}
POINTS = {n: points(A)[f"test_q{n}"] for n in RIGHT}
MAX = max_score(A)


def _notebook(first: str = "", letters: dict[int, str] | None = None) -> nbformat.NotebookNode:
    """The release notebook with wrong letters everywhere and ``first`` run before answer 1."""
    return practice_notebook(letters or WRONG, before_q1=first)


def _cheat_if(condition: str) -> str:
    """Answer 1 right only if ``condition`` (an attack that must fail) succeeded."""
    return f'answer_q1 = "{RIGHT[1]}" if ({condition}) else "{WRONG[1]}"'


def _catalogue(course_root, port: int) -> dict[str, tuple[object, bool]]:
    """student -> (notebook or source for answer 1, whether the grader must flag it)."""
    peek = (
        "import re\n"
        "def _peek(lines):\n"
        "    m = re.search(r'expect_choice\\((answer_q\\d+), \"(\\w)\"', ''.join(lines))\n"
        "    return [f'{m.group(1)} = \"{m.group(2)}\"\\n'] if m else lines\n"
    )
    edited = _notebook()
    for cell in edited.cells:
        if nbu.cell_id(cell) == "test_q1":
            cell.source = "pass"
            cell.metadata["nbgrader"]["points"] = 100
    return {
        # -- reading what it must not ------------------------------------------------------
        "read_hidden_tests": (
            "import glob, os\n"
            f"_paths = ['{course_root}/source/{A}/{NB}', '{course_root}/gradebook.db', "
            f"'{course_root}/release/{A}/{NB}']\n"
            "_paths += glob.glob('/tmp/autograder-*/**/*.ipynb', recursive=True)\n"
            "_paths += glob.glob('/tmp/autograder-*/**/gradebook.db', recursive=True)\n"
            "_seen = [p for p in _paths if os.path.exists(p)]\n" + _cheat_if("_seen"),
            False,
        ),
        "read_other_submission": (
            "import os\n" + _cheat_if(f"os.path.exists('{course_root}/submitted/honest_right/{A}/{NB}')"),
            False,
        ),
        # -- writing what it must not, and the network -------------------------------------
        "write_everywhere": (
            "_hits = 0\n"
            f"for _p in ['{course_root}/gradebook.db', '{course_root}/release/{A}/{NB}',\n"
            f"           '{course_root}/source/{A}/{NB}', '{course_root}/submitted/honest_right/{A}/{NB}']:\n"
            "    try:\n"
            "        with open(_p, 'ab') as _f:\n"
            "            _f.write(b'pwned')\n"
            "        _hits += 1\n"
            "    except OSError:\n"
            "        pass\n" + _cheat_if("_hits"),
            False,
        ),
        "network": (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
            "    _net = True\n"
            "except OSError:\n"
            "    _net = False\n" + _cheat_if("_net"),
            False,
        ),
        # -- faking a pass -----------------------------------------------------------------
        "always_equal": (
            "class _Yes:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
            "    __hash__ = object.__hash__\nanswer_q1 = _Yes()",
            False,
        ),
        "lying_str": (
            "class _S(str):\n    def __eq__(self, other): return True\n    __hash__ = str.__hash__\n"
            f"answer_q1 = _S('{WRONG[1]}')",
            False,
        ),
        "patch_compare": (
            "import autograder.compare as _c\n_c.expect_choice = lambda *a, **k: None\n_c.expect = lambda *a, **k: None",
            True,
        ),
        "replace_compare_module": (
            "import sys, types\n_fake = types.ModuleType('autograder.compare')\n"
            "_fake.expect = _fake.expect_choice = lambda *a, **k: None\nsys.modules['autograder.compare'] = _fake",
            True,
        ),
        "patch_math_numpy": (
            "import math, numpy, numpy.testing\nmath.isclose = lambda *a, **k: True\n"
            "numpy.testing.assert_allclose = lambda *a, **k: None\nnumpy.allclose = lambda *a, **k: True",
            True,
        ),
        "replace_builtins": (
            "import builtins\nbuiltins.isinstance = lambda *a, **k: True\nbuiltins.len = lambda *a, **k: 1",
            True,
        ),
        "shadow_builtin": ("def isinstance(*args, **kwargs):\n    return True", True),
        "input_transformer_blank": ("get_ipython().input_transformers_cleanup.append(lambda lines: [])", True),
        "input_transformer_peek": (peek + "get_ipython().input_transformers_post.append(_peek)", True),
        "event_hook_peek": (
            "import re\n_ip = get_ipython()\n"
            "def _pre(info):\n"
            "    m = re.search(r'expect_choice\\((answer_q\\d+), \"(\\w)\"', info.raw_cell or '')\n"
            "    if m:\n        _ip.user_ns[m.group(1)] = m.group(2)\n"
            "_ip.events.register('pre_run_cell', _pre)",
            True,
        ),
        "settrace": (
            "import sys, threading\ndef _t(frame, event, arg):\n    return _t\nsys.settrace(_t)\nthreading.settrace(_t)",
            True,
        ),
        "silence_errors": (
            "_ip = get_ipython()\n_ip.showtraceback = lambda *a, **k: None\n_k = _ip.kernel\n_orig = _k.do_execute\n"
            "async def _ok(*a, **k):\n    r = await _orig(*a, **k)\n    r['status'] = 'ok'\n    return r\n"
            "_k.do_execute = _ok",
            True,
        ),
        "background_patcher": (
            "import threading, time, builtins\n"
            "def _later():\n    time.sleep(0.2)\n    builtins.isinstance = lambda *a, **k: True\n"
            "threading.Thread(target=_later, daemon=True).start()",
            True,
        ),
        "fake_success_output": ("print('All tests passed. Score: 20/20')\nprint('autograder-end-' + '0' * 32)", False),
        # -- breaking the run --------------------------------------------------------------
        "sys_exit": ("import sys\nsys.exit(0)", False),
        "os_exit": ("import os\nos._exit(0)", True),
        "kill_kernel": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", True),
        "infinite_loop": ("while True:\n    pass", False),
        "stubborn_hang": (
            "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except BaseException:\n        pass",
            True,
        ),
        "memory_bomb": ("_blocks = []\nwhile True:\n    _blocks.append(bytearray(256 * 2**20))", False),
        "output_flood": ("import sys\nfor _ in range(40):\n    sys.stdout.write('x' * 1_000_000)", False),
        "edit_locked_cells": (edited, False),
    }


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory, sandbox_ready):
    root = scratch_course(course(), tmp_path_factory.mktemp("hostile") / "course", [A])
    shutil.copytree(ROOT / "release" / A, root / "release" / A)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    connections: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(listener.accept()[1])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    catalogue = _catalogue(root, listener.getsockname()[1])
    submissions = {
        "honest_right": _notebook(letters=RIGHT),
        "honest_half": _notebook(letters={n: RIGHT[n] if n <= 5 else WRONG[n] for n in RIGHT}),
        **{
            name: (nb if isinstance(nb, nbformat.NotebookNode) else _notebook(nb))
            for name, (nb, _) in catalogue.items()
        },
    }
    for student, nb in submissions.items():
        folder = root / "submitted" / student / A
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / NB)
    before = {name: _digest(root / name) for name in ("source", "release", "submitted")}
    run = grade(
        Course.load(root),
        A,
        None,
        GradeSettings(jobs=2, cell_timeout=10, time_limit=90, memory=3 * 2**30),
    )
    after = {name: _digest(root / name) for name in ("source", "release", "submitted")}
    stop.set()
    listener.close()
    flagged = {name for name, (_, flag) in catalogue.items() if flag}
    return root, run, before, after, connections, flagged, set(catalogue)


def test_every_submission_is_graded(batch):
    _, run, _, _, _, _, hostile = batch
    assert {g.student for g in run.grades} == hostile | {"honest_right", "honest_half"}


def test_honest_submissions_get_exactly_their_scores(batch):
    _, run, *_ = batch
    scores = {g.student: g for g in run.grades}
    assert scores["honest_right"].score == MAX and not scores["honest_right"].flagged
    assert scores["honest_half"].score == sum(POINTS[n] for n in range(1, 6))
    assert not scores["honest_half"].flagged
    assert "honest_right" not in run.review and "honest_half" not in run.review


@pytest.mark.parametrize("student", sorted(_catalogue("/course", 9).keys()))
def test_hostile_submission_earns_nothing(batch, student):
    _, run, *_ = batch
    g = next(g for g in run.grades if g.student == student)
    earned = [f"{c.cell} {c.score:g}" for c in g.cells if c.score]
    assert g.score == 0, f"{student} earned {earned}"
    assert g.max_score == MAX, f"{student} changed the points: max {g.max_score}"


def test_tampering_is_flagged_in_report_and_csv(batch):
    root, run, _, _, _, flagged, _ = batch
    missed = sorted(s for s in flagged if s not in run.review)
    assert not missed, f"not flagged: {missed}"
    rows = {r["student_id"]: r for r in csv.DictReader(io.StringIO(export_csv(Course.load(root))))}
    for student in flagged:
        assert rows[student]["flagged"] == "true", student
        assert rows[student]["review"], student
    assert rows["honest_right"]["flagged"] == "false" and rows["honest_right"]["review"] == ""


def test_flags_name_what_happened(batch):
    _, run, *_ = batch
    said = {student: " ".join(reasons) for student, reasons in run.review.items()}
    assert "autograder.compare" in said["patch_compare"]
    assert "input transformer" in said["input_transformer_peek"]
    assert "'pre_run_cell' event callback" in said["event_hook_peek"]
    assert "tracing" in said["settrace"]
    assert "isinstance" in said["shadow_builtin"]
    assert "kernel stopped" in said["os_exit"] and "kernel stopped" in said["kill_kernel"]
    assert "time limit" in said["stubborn_hang"]
    assert "did not run to its end" in said["silence_errors"] or "patched" in said["silence_errors"]


def test_nothing_outside_the_sandbox_changed(batch):
    root, _, before, after, connections, _, _ = batch
    assert before == after, "source/, release/ or submitted/ changed while grading"
    assert not root.joinpath("gradebook.db").read_bytes().endswith(b"pwned")
    assert connections == [], "a submission reached the network"


def test_floods_are_capped(batch):
    root, *_ = batch
    autograded = root / "autograded" / "output_flood" / A / NB
    assert autograded.stat().st_size < 2_000_000
