"""End to end through a real JupyterHub running the shipped deploy/jupyterhub configuration.

One instructor and two students, every step over HTTP through the hub's proxy: the instructor
releases 04_practice from the formgrader service; each student fetches it, answers in their own
single-user server and submits (one right, one wrong); the instructor collects; the course's
``autograder`` grades and writes feedback; the formgrader releases it; each student fetches their
own feedback and only theirs. About two minutes. ``./setup`` installs what it needs (jupyterhub in
the venv, configurable-http-proxy under ``.e2e/node``); without them it fails, saying what is missing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from html import escape as html_escape
from pathlib import Path

import nbformat
import pytest

from autograder import notebook as nbu
from e2e_support.hub import CHP_INSTALL, Hub, alive, feedback_score, find_jupyterhub, find_proxy, ok_json, wait_for
from practice import practice_answer_sources, practice_letters, practice_questions, wrong_letters

ROOT = Path(__file__).resolve().parents[1]
COURSE = "lora-qlora"
A = "04_practice"
NB = f"{A}.ipynb"
TEACHER, RIGHT, WRONG = "teacher", "ada", "bert"
SERVICE = f"/services/{COURSE}"
AUTOGRADER = Path(sys.executable).parent / "autograder"
PWN = "(window.__pwned = window.__pwned || []).push"  # what a payload would call in the page


def max_score() -> float:
    """The assignment's total points, from the source notebook."""
    return sum(q.points for q in practice_questions().values())


def answers(student: str) -> dict[str, str]:
    """Answer-cell sources by grade id: all right for RIGHT, all wrong for WRONG."""
    if student == RIGHT:
        return practice_answer_sources(practice_letters())
    return practice_answer_sources(lambda n: wrong_letters(n)[0])


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*args], cwd=cwd, capture_output=True, text=True, timeout=600)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # A machine set up by ./setup has both; a missing one is a broken set-up, not a reason to skip.
    if find_jupyterhub() is None:
        pytest.fail("jupyterhub is not installed in this environment: run ./setup (it installs the test extra)")
    if find_proxy() is None:
        pytest.fail(f"configurable-http-proxy is not installed; from the repository root run: {CHP_INSTALL}")
    where = tmp_path_factory.mktemp("e2e-hub")
    course = where / "course"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    for folder in ("source", "release"):
        shutil.copytree(ROOT / folder / A, course / folder / A, ignore=shutil.ignore_patterns("__pycache__"))
    h = Hub(where, course, instructors=[TEACHER], students=[RIGHT, WRONG])
    try:
        try:
            h.start()
            for user in (TEACHER, RIGHT, WRONG):
                h.spawn(user)
            for user in (TEACHER, RIGHT, WRONG):
                h.wait_ready(user)
            wait_for(
                "the formgrader service",
                lambda: (
                    h.request("GET", f"{SERVICE}/formgrader/api/status", h.token(TEACHER), timeout=30).status_code
                    == 200
                ),
                240,
            )
        except Exception as exc:
            raise AssertionError(f"the hub did not come up: {exc}\n--- end of {h.log} ---\n{h.log_tail()}") from exc
        h.track()
        yield h
    finally:
        # The hub's own shutdown waits on the formgrader service, which ignored the interrupt for 30 s in
        # full runs: the rest of the run is killed after 5 s instead (no stray survives either way).
        seen = h.stop(grace=5)
        left = sorted(pid for pid, _ in filter(alive, seen))
        assert not left, f"processes left running after the hub stopped: {left}"
    # The hub, its proxy, the formgrader service and three servers, at least: the tracking saw them.
    assert len(seen) >= 6, f"only {len(seen)} processes were tracked; the stray check proves nothing"


def needs(h, earlier: str) -> None:
    if not h.state.get(earlier):
        pytest.fail(f"needs the earlier step '{earlier}', which failed")


def assignments(h, user: str) -> list[dict]:
    r = h.request("GET", f"/user/{user}/assignments", h.token(user), params={"course_id": COURSE})
    return ok_json(r, f"{user} lists assignments")["value"]


def lab_disabled(hub, path: str, user: str) -> set[str]:
    """The JupyterLab plugins a page served at ``path`` disables."""
    r = hub.request("GET", path, hub.token(user))
    assert r.status_code == 200, f"GET {path}: {r.status_code}"
    m = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', r.text, re.S)
    assert m, f"{path} is not a JupyterLab page"
    disabled = json.loads(m.group(1)).get("disabledExtensions", [])
    return set(disabled if isinstance(disabled, list) else [k for k, v in disabled.items() if v])


def test_people_sign_in_and_each_gets_the_right_tools(hub):
    assert hub.login(RIGHT, hub.password).status_code == 302, "a student cannot sign in"
    assert hub.login(TEACHER, hub.password).status_code == 302, "the instructor cannot sign in"
    assert hub.login(RIGHT, "not the password").status_code != 302, "a wrong password was accepted"
    groups = {g["name"]: sorted(g["users"]) for g in hub.hub_api("GET", "/groups").json()}
    assert groups["students"] == sorted([RIGHT, WRONG])
    assert groups["instructors"] == groups[f"formgrade-{COURSE}"] == [TEACHER]

    # Students: the assignment list, and no formgrader, no course list, no way into the service.
    assert [a["assignment_id"] for a in assignments(hub, RIGHT)] == []
    for path in ("/formgrader/api/status", "/formgraders"):
        r = hub.request("GET", f"/user/{RIGHT}{path}", hub.token(RIGHT))
        assert r.status_code == 404, f"a student's server serves {path}: {r.status_code}"
    r = hub.request("GET", f"{SERVICE}/formgrader/api/status", hub.token(RIGHT), allow_redirects=False)
    assert r.status_code == 403, f"a student reached the formgrader service: {r.status_code}"
    assert lab_disabled(hub, f"/user/{RIGHT}/lab", RIGHT) >= {
        "@jupyter/nbgrader:formgrader",
        "@jupyter/nbgrader:course-list",
    }

    # The instructor: the formgrader service, found by the course list on their own server.
    status = hub.request("GET", f"{SERVICE}/formgrader/api/status", hub.token(TEACHER))
    assert ok_json(status, "the formgrader's status")["status"] is True
    courses = ok_json(hub.request("GET", f"/user/{TEACHER}/formgraders", hub.token(TEACHER)), "course list")["value"]
    assert [(c["course_id"], c["kind"]) for c in courses] == [(COURSE, "jupyterhub")], courses
    assert courses[0]["url"].startswith(f"{hub.base}{SERVICE}")
    assert "@jupyter/nbgrader:course-list" not in lab_disabled(hub, f"/user/{TEACHER}/lab", TEACHER)
    assert "@jupyter/nbgrader:formgrader" not in lab_disabled(hub, f"{SERVICE}/lab", TEACHER)
    hub.state["tools"] = True


def test_release_fetch_answer_submit_collect(hub):
    r = hub.request("POST", f"{SERVICE}/formgrader/api/assignment/{A}/release", hub.token(TEACHER))
    ok_json(r, "the instructor releases")
    assert (hub.exchange / COURSE / "outbound" / A / NB).is_file()

    for student in (RIGHT, WRONG):
        token = hub.token(student)
        assert [(a["assignment_id"], a["status"]) for a in assignments(hub, student)] == [(A, "released")]
        r = hub.request(
            "POST", f"/user/{student}/assignments/fetch", token, data={"course_id": COURSE, "assignment_id": A}
        )
        fetched = [a for a in ok_json(r, f"{student} fetches")["value"] if a["status"] == "fetched"]
        assert [a["path"] for a in fetched] == [f"{COURSE}/{A}"], fetched
        assert (hub.home(student) / COURSE / A / NB).is_file()

        # Answer in the student's own server, through Jupyter's contents API.
        url = f"/user/{student}/api/contents/{COURSE}/{A}/{NB}"
        model = ok_json(hub.request("GET", url, token), f"{student} opens the notebook")
        nb = nbformat.from_dict(model["content"])
        mine = answers(student)
        for cell in nb.cells:
            cell.source = mine.get(nbu.cell_id(cell), cell.source)
        if student == WRONG:  # scripts for the instructor's browser, in the cells a student may add
            nb.cells.append(
                nbformat.v4.new_markdown_cell(f'<script>{PWN}("markdown")</script><img src=x onerror=\'{PWN}("img")\'>')
            )
            nb.cells.append(
                nbformat.v4.new_raw_cell(f'<script>{PWN}("raw")</script>', metadata={"format": "text/html"})
            )
        r = hub.request("PUT", url, token, json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code == 200, f"{student} saves: {r.status_code} {r.text[:500]}"

    # The right answers pass the visible checks of the Validate button.
    r = hub.request(
        "POST", f"/user/{RIGHT}/assignments/validate", hub.token(RIGHT), data={"path": f"{COURSE}/{A}/{NB}"}
    )
    result = ok_json(r, "validate")["value"]
    assert not (result.get("failed") or result.get("changed") or result.get("type_changed")), result

    for student in (RIGHT, WRONG):
        r = hub.request(
            "POST",
            f"/user/{student}/assignments/submit",
            hub.token(student),
            data={"course_id": COURSE, "assignment_id": A},
        )
        submitted = [a for a in ok_json(r, f"{student} submits")["value"] if a["status"] == "submitted"]
        assert [s["student_id"] for a in submitted for s in a["submissions"]] == [student], submitted

    r = hub.request("POST", f"{SERVICE}/formgrader/api/assignment/{A}/collect", hub.token(TEACHER))
    ok_json(r, "the instructor collects")
    assert sorted(p.name for p in (hub.course_dir / "submitted").iterdir()) == sorted([RIGHT, WRONG])
    for student in (RIGHT, WRONG):
        got = nbformat.read(hub.course_dir / "submitted" / student / A / NB, as_version=4)
        sources = {nbu.cell_id(c): c.source for c in got.cells}
        assert all(sources[k] == v for k, v in answers(student).items()), f"{student}'s answers did not arrive"
    hub.state["collected"] = True


def test_autograder_grades_into_the_gradebook_the_formgrader_reads(hub):
    needs(hub, "collected")
    assert max_score() == 23  # eleven questions, 1 to 3 points each
    p = run(str(AUTOGRADER), "grade", A, cwd=hub.course_dir)
    assert p.returncode == 0, f"autograder grade exited {p.returncode}:\n{p.stdout}\n{p.stderr}"

    r = hub.request("GET", f"{SERVICE}/formgrader/api/submissions/{A}", hub.token(TEACHER))
    seen = {s["student"]: (s["score"], s["max_score"]) for s in ok_json(r, "formgrader submissions")}
    assert seen[RIGHT] == (max_score(), max_score()), seen
    assert seen[WRONG][0] < max_score() and seen[WRONG][1] == max_score(), seen

    p = run(str(AUTOGRADER), "export", cwd=hub.course_dir)
    assert p.returncode == 0, p.stderr
    rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(io.StringIO(p.stdout))}
    assert float(rows[(A, RIGHT)]["score"]) == float(rows[(A, RIGHT)]["max_score"]) == max_score()
    assert float(rows[(A, WRONG)]["score"]) < max_score()
    hub.state["grade"] = True


@contextlib.contextmanager
def instructor_browser(hub):
    """A page of headless Chromium, signed in to the hub as the instructor through its login form."""
    from playwright.sync_api import sync_playwright

    from e2e_support.browser import CHROMIUM, CHROMIUM_ARGS, missing_requirement

    missing = missing_requirement()
    if missing:
        pytest.fail(missing, pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{hub.base}/hub/login", wait_until="load")
            page.fill("input[name=username]", TEACHER)
            page.fill("input[name=password]", hub.password)
            page.click("#login_submit")
            page.wait_for_load_state("load")
            yield page
        finally:
            browser.close()


def test_the_formgrader_shows_a_students_scripts_as_text(hub):
    """The instructor opens the wrong student's submission in the running formgrader: none of the
    scripts the student put in their notebook runs."""
    needs(hub, "grade")
    r = hub.request("GET", f"{SERVICE}/formgrader/api/submitted_notebooks/{A}/{A}", hub.token(TEACHER))
    (sid,) = [n["id"] for n in ok_json(r, "the submitted notebooks") if n["student"] == WRONG]
    with instructor_browser(hub) as page:
        page.goto(f"{hub.base}{SERVICE}/formgrader/submissions/{sid}/", wait_until="load")
        page.wait_for_timeout(1000)
        shown = page.content()
        ran = page.evaluate("window.__pwned || []")
    assert "answer_q1" in shown and "markdown" in shown, "this is not the student's submission page"
    assert ran == [], f"the formgrader ran the student's scripts in the instructor's browser: {ran}"


def test_each_student_fetches_their_own_feedback_only(hub):
    needs(hub, "grade")
    # The formgrader's Generate Feedback button, pressed in the browser: the same pages as
    # `autograder feedback`, no hidden test.
    with instructor_browser(hub) as page:
        page.goto(f"{hub.base}{SERVICE}/formgrader/manage_assignments", wait_until="load")
        page.locator("tr", has=page.locator(f"a:text-is('{A}')")).locator(".generate-feedback a").click()
        page.wait_for_selector("#success-modal", state="visible", timeout=180_000)
    pages = {s: (hub.course_dir / "feedback" / s / A / f"{A}.html").read_text() for s in (RIGHT, WRONG)}
    hidden = nbu.secret_lines(nbformat.read(ROOT / "source" / A / NB, as_version=4)).hidden
    assert hidden, "the source should have hidden test lines to look for"
    for student, page in pages.items():
        assert not [line for line in hidden if line in page or html_escape(line) in page], f"{student}: hidden tests"
    p = run(str(AUTOGRADER), "feedback", A, cwd=hub.course_dir)
    assert p.returncode == 0, f"autograder feedback exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    for student in (RIGHT, WRONG):
        assert (hub.course_dir / "feedback" / student / A / f"{A}.html").read_text() == pages[student]

    r = hub.request("POST", f"{SERVICE}/formgrader/api/assignment/{A}/release_feedback", hub.token(TEACHER))
    ok_json(r, "the instructor releases feedback")

    html = {}
    for student in (RIGHT, WRONG):
        r = hub.request(
            "POST",
            f"/user/{student}/assignments/fetch_feedback",
            hub.token(student),
            data={"course_id": COURSE, "assignment_id": A},
        )
        listing = ok_json(r, f"{student} fetches feedback")["value"]
        subs = [s for a in listing if a["status"] == "submitted" for s in a["submissions"]]
        assert [s["has_local_feedback"] for s in subs] == [True], subs
        folder = hub.home(student) / COURSE / A / "feedback"
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert len(files) == 1 and files[0].endswith(f"/{A}.html"), f"{student}'s feedback folder holds {files}"
        html[student] = (folder / files[0]).read_text()

    assert feedback_score(html[RIGHT]) == (max_score(), max_score())
    wrong, most = feedback_score(html[WRONG])
    assert most == max_score() and wrong < most
    for student, other in ((RIGHT, WRONG), (WRONG, RIGHT)):
        assert not re.search(rf"\b{other}\b", html[student]), f"{student}'s feedback mentions {other}"
