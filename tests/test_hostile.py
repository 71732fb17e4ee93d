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
import json
import os
import shutil
import socket
import threading

import nbformat
import pytest

from autograder import notebook as nbu
from autograder.commands.export import export_csv
from autograder.commands.grade import REFERENCE_STUDENT, GradeSettings, grade
from autograder.commands.nbgrader_run import scratch_course
from autograder.course import Course
from harness import ROOT, course, max_score, points
from practice import NB, A, practice_letters, practice_notebook, practice_questions, wrong_letters

# Grading students' code needs the sandbox: without it every test here fails and says to run ./setup.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_ready")]

RIGHT = practice_letters()
WRONG = {n: wrong_letters(n)[0] for n in RIGHT}
POINTS = {n: points(A)[f"test_q{n}"] for n in RIGHT}
MAX = max_score(A)


def _notebook(first: str = "", letters: dict[int, str] | None = None) -> nbformat.NotebookNode:
    """The release notebook with wrong letters everywhere and ``first`` run before answer 1."""
    return practice_notebook(letters or WRONG, before_q1=first)


OUTCOME = "HOSTILE-OUTCOME "  # an attack prints what it reached after this mark, in its answer cell's output


def _reports(outcome: str) -> str:
    """Print the attack's ``outcome`` (a Python expression) as one JSON line after :data:`OUTCOME`:
    what it reached is observable on its own, whatever the letter it then answers."""
    return f"import json as _json\nprint({OUTCOME!r} + _json.dumps({outcome}))"


def _then_answers(trick: str) -> nbformat.NotebookNode:
    """The wrong letters everywhere, then ``trick`` rebinds answer 1 after its literal: a grader that
    ran the cell, or compared the value it left, would meet the trick's object, not the letter."""
    nb = _notebook()
    for cell in nb.cells:
        if nbu.cell_id(cell) == "answer_q1":
            cell.source += "\n" + trick
    return nb


def outcomes(root, student: str) -> list[object]:
    """What the student's attack printed after :data:`OUTCOME` in its graded notebook (answer 1's cell)."""
    nb = nbformat.read(root / "autograded" / student / A / NB, as_version=4)
    cell = next(c for c in nb.cells if nbu.cell_id(c) == "answer_q1")
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return [json.loads(line[len(OUTCOME) :]) for line in text.splitlines() if line.startswith(OUTCOME)]


# What the payloads call in the page that shows them: a mark the browser test looks for.
_PWN = "(window.__pwned = window.__pwned || []).push"
CSV_FORMULA_STUDENT = "=SUM(1+1)"  # a spreadsheet would evaluate this id
SECRETS = {"HF_TOKEN": "hf_grader_secret", "COURSE_DB_PASSWORD": "grader-password"}  # in the grader's environment


def _deeply_nested() -> bytes:
    """A notebook file nested 100,000 levels deep: the JSON parser's recursion limit, not a notebook."""
    depth = 100_000
    return (
        '{"cells": [], "metadata": {"x": ' + "[" * depth + "]" * depth + '}, "nbformat": 4, "nbformat_minor": 5}'
    ).encode()


def _catalogue(course_root, port: int) -> dict[str, tuple[object, bool]]:
    """student -> (notebook or source for answer 1, whether the grader must flag it)."""
    peek = (
        "import re\n"
        "def _peek(lines):\n"
        "    m = re.search(r'expect_choice\\((answer_q\\d+), \"(\\w)\"', ''.join(lines))\n"
        "    return [f'{m.group(1)} = \"{m.group(2)}\"\\n'] if m else lines\n"
    )
    scripted = _notebook(
        "from IPython.display import HTML, Javascript, display\n"
        f"display(HTML('<img src=x onerror=\"{_PWN}(\\'html\\')\"><script>{_PWN}(\\'html-script\\')</script>'))\n"
        f"display(Javascript('{_PWN}(\\'javascript\\')'))"
    )
    scripted.cells.append(
        nbformat.v4.new_markdown_cell(f'<script>{_PWN}("markdown")</script>\n\n[click](javascript:{_PWN}("link"))')
    )
    scripted.cells.append(nbformat.v4.new_raw_cell(f'<script>{_PWN}("raw")</script>', metadata={"format": "text/html"}))
    list_id = _notebook()
    list_id.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": ["a", "b"]}}))
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
            + _reports("[p for p in _paths if os.path.exists(p)]"),
            False,
        ),
        "read_other_submission": (
            "import os\n" + _reports(f"os.path.exists('{course_root}/submitted/honest_right/{A}/{NB}')"),
            False,
        ),
        # -- writing what it must not, and the network -------------------------------------
        "write_everywhere": (
            "_hits = []\n"
            f"for _p in ['{course_root}/gradebook.db', '{course_root}/release/{A}/{NB}',\n"
            f"           '{course_root}/source/{A}/{NB}', '{course_root}/submitted/honest_right/{A}/{NB}']:\n"
            "    try:\n"
            "        with open(_p, 'ab') as _f:\n"
            "            _f.write(b'pwned')\n"
            "        _hits.append(_p)\n"
            "    except OSError:\n"
            "        pass\n" + _reports("_hits"),
            False,
        ),
        "reads_secrets": (
            "import os\n"
            + _reports("sorted(k for k in os.environ if any(w in k for w in ('TOKEN', 'SECRET', 'PASSWORD')))"),
            False,
        ),
        "network": (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
            "    _net = True\n"
            "except OSError:\n"
            "    _net = False\n" + _reports("_net"),
            False,
        ),
        # -- faking a pass: the trick's object is answer 1's last value, the wrong letter its only literal --
        "always_equal": (
            _then_answers(
                "class _Yes:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
                "    __hash__ = object.__hash__\nanswer_q1 = _Yes()"
            ),
            False,
        ),
        "lying_str": (
            _then_answers(
                f"class _S(str):\n    def __eq__(self, other): return True\n    __hash__ = str.__hash__\nanswer_q1 = _S('{RIGHT[1]}')"
            ),
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
        # -- the instructor's browser: HTML and JavaScript in outputs, markdown and raw cells -------
        "scripts_for_the_instructor": (scripted, False),
        # -- stopping everyone's grading: each must cost its own student only ----------------
        "deeply_nested": (_deeply_nested(), True),
        "list_grade_id": (list_id, False),
        REFERENCE_STUDENT: ("", False),  # the id of the grader's own reference check
        CSV_FORMULA_STUDENT: ("", False),
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
            name: (nb if isinstance(nb, nbformat.NotebookNode | bytes) else _notebook(nb))
            for name, (nb, _) in catalogue.items()
        },
    }
    for student, nb in submissions.items():
        folder = root / "submitted" / student / A
        folder.mkdir(parents=True)
        if isinstance(nb, bytes):
            (folder / NB).write_bytes(nb)
        else:
            nbformat.write(nb, folder / NB)
    before = {name: _digest(root / name) for name in ("source", "release", "submitted")}
    saved = {name: os.environ.get(name) for name in SECRETS}
    os.environ.update(SECRETS)
    try:
        run = grade(
            Course.load(root),
            A,
            None,
            # A stuck kernel is given up well before a submission's 40 s.
            GradeSettings(jobs=4, cell_timeout=10, time_limit=40, memory=3 * 2**30),
        )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
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


# What each attack on the sandbox reached, as it printed it: nothing. Each fails on its own the day
# the defence goes (run the grader with --unsafe-no-sandbox and these lists fill).
REACHED_NOTHING = {
    "reads_secrets": [[]],
    "read_hidden_tests": [[]],
    "read_other_submission": [False],
    "write_everywhere": [[]],
    "network": [False],
}


@pytest.mark.parametrize("student", sorted(REACHED_NOTHING))
def test_each_attack_on_the_sandbox_ran_and_reached_nothing(batch, student):
    root, *_ = batch
    seen = outcomes(root, student)
    assert seen == REACHED_NOTHING[student], f"{student} printed {seen}: it reached what it must not (or did not run)"


@pytest.mark.parametrize("student", ["always_equal", "lying_str"])
def test_a_value_that_lies_is_never_compared(batch, student):
    """The object that equals anything is answer 1's last value; the judge reads the only literal, the
    wrong letter, and says so with that letter's own message."""
    root, *_ = batch
    errors = nbu.cell_errors(root / "autograded" / student / A / NB)
    assert errors.get("test_q1") == f"AssertionError: {practice_questions()[1].mistakes[WRONG[1]]}", errors.get(
        "test_q1"
    )


def test_floods_are_capped(batch):
    root, *_ = batch
    autograded = root / "autograded" / "output_flood" / A / NB
    assert autograded.stat().st_size < 2_000_000


def test_a_spreadsheet_reads_every_student_id_as_text(batch):
    """A student id that starts like a formula reaches the export with a leading apostrophe."""
    root, *_ = batch
    ids = [r["student_id"] for r in csv.DictReader(io.StringIO(export_csv(Course.load(root))))]
    assert "'" + CSV_FORMULA_STUDENT in ids and CSV_FORMULA_STUDENT not in ids, ids
    assert not [i for i in ids if i.startswith(("=", "+", "-", "@"))], ids


def test_an_unreadable_notebook_costs_its_own_student_only(batch):
    """The notebook nested too deeply for the JSON parser is zero and flagged, with the reason."""
    _, run, *_ = batch
    (nested,) = [g for g in run.grades if g.student == "deeply_nested"]
    assert nested.score == 0 and nested.flagged
    assert any("nested too deeply" in r for r in run.review["deeply_nested"]), run.review["deeply_nested"]


def test_the_formgrader_page_runs_none_of_the_students_scripts(batch, tmp_path):
    """The autograded notebook rendered as the formgrader renders it (nbconvert's HTML exporter with
    nbgrader's ``formgrade`` template), opened in headless Chromium: no payload ran."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    from e2e_support.browser import CHROMIUM, CHROMIUM_ARGS, missing_requirement

    missing = missing_requirement()
    if missing:
        pytest.fail(missing, pytrace=False)
    from playwright.sync_api import sync_playwright

    root, *_ = batch
    exporter = HTMLExporter(template_name="formgrade", extra_template_basedirs=[handlers.template_path])
    resources = {
        "assignment_id": A,
        "notebook_id": NB.removesuffix(".ipynb"),
        "submission_id": "x",
        "index": 0,
        "total": 1,
        "base_url": "",
        "student": "scripts_for_the_instructor",
        "last_name": "",
        "first_name": "",
        "notebook_path": "",
    }
    page_html, _ = exporter.from_filename(
        str(root / "autograded" / "scripts_for_the_instructor" / A / NB), resources=resources
    )
    assert "<script>(window.__pwned" not in page_html
    path = tmp_path / "page.html"
    path.write_text(page_html)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_timeout(500)
            for link in page.locator("a[href]").all():
                if "pwned" in (link.get_attribute("href") or ""):
                    link.click()
            ran = page.evaluate("window.__pwned || []")
        finally:
            browser.close()
    assert ran == [], f"the instructor's page ran the student's scripts: {ran}"
