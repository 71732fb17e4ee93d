"""End to end, as a student: JupyterLab in a real (headless) Chromium, nbgrader's Validate button.

A scratch home holds what a student has: the release of 04_practice and the course's
nbgrader_config.py (nbgrader's Validate reads its configuration, the cell time limit among
it, from the server's working directory). The test opens the notebook in JupyterLab, answers
question 1 in its answer cell, runs all cells, presses **Validate** in the notebook toolbar and
checks what nbgrader's dialog reports: the form check of every unanswered question fails with
a NameError (its answer cell still raises), and question 1's passes. A screenshot of the dialog is kept under
``test-artifacts/``.

Needs Debian's Chromium and Playwright for Python (the browser is never downloaded):

    apt-get install -y chromium
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install playwright==1.65.2

(``./setup`` installs both) and fails, naming those commands, where either is missing.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest

from e2e_support.browser import CHROMIUM, CHROMIUM_ARGS, JupyterLab, marked_env, missing_requirement, reap

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
# What the course's JupyterHub gives students on top of their own files (instructor extensions
# off, Validate on); used when the deployment is in the tree.
STUDENT_LAYER = ROOT / "deploy" / "jupyterhub" / "config" / "students"
A = "04_practice"
ANSWERED = 1  # the one question the student answers
LETTER = "B"

# Generous: two shared CPU cores, a cold JupyterLab, a kernel per run.
SERVER_START_S = 180
STEP_MS = 90_000
VALIDATE_MS = 240_000


def _release_cells() -> list[dict]:
    return json.loads((ROOT / "release" / A / f"{A}.ipynb").read_text())["cells"]


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _index(cells: list[dict], grade_id: str) -> int:
    return next(i for i, c in enumerate(cells) if _grade_id(c) == grade_id)


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _answered_source(stub: str) -> str:
    """What the student leaves in the answer cell: the stub's comments, then the answer."""
    kept = [
        line for line in stub.splitlines() if line.strip() not in ("# YOUR CODE HERE", "raise NotImplementedError()")
    ]
    return "\n".join(kept + [f'answer_q{ANSWERED} = "{LETTER}"'])


def _student_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(ROOT / "release" / A, home / A, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", home / "nbgrader_config.py")
    return home


@pytest.mark.slow
def test_student_answers_runs_all_and_validates_in_jupyterlab(tmp_path):
    reason = missing_requirement()
    if reason:
        pytest.fail(reason)
    from playwright.sync_api import expect, sync_playwright

    t0 = time.monotonic()
    cells = _release_cells()
    answer_at = _index(cells, f"answer_q{ANSWERED}")
    answer_stub = _source(cells[answer_at])
    assert "raise NotImplementedError()" in answer_stub, "the release's answer cell should be a stub"
    answer = _answered_source(answer_stub)
    next_answer_at = _index(cells, f"answer_q{ANSWERED + 1}")
    tests = [g for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade") and (g := _grade_id(c))]
    unanswered_tests = [g for g in tests if g != f"test_q{ANSWERED}"]
    assert unanswered_tests, "the release should have graded form checks"

    home = _student_home(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    marker = secrets.token_hex(12)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"e2e_{A}_validate_dialog.png"
    failure_shot = ARTIFACTS / f"e2e_{A}_failure.png"
    for old in (shot, failure_shot):
        old.unlink(missing_ok=True)

    # Chromium's crash reporter and caches write under the user's home: keep them in scratch.
    browser_home = {
        var: str(scratch / "browser" / sub)
        for var, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"))
    }
    for path in browser_home.values():
        Path(path).mkdir(parents=True)
    console: list[str] = []
    config_path = [STUDENT_LAYER] if STUDENT_LAYER.is_dir() else []
    lab = JupyterLab(home, scratch, marker, start_timeout=SERVER_START_S, config_path=config_path)
    try:
        lab.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                env=marked_env(marker, **browser_home),
                timeout=STEP_MS,
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(STEP_MS)
            expect.set_options(timeout=STEP_MS)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            try:
                # Open the notebook and wait for its kernel.
                page.goto(lab.url(f"lab/tree/{A}/{A}.ipynb"), wait_until="domcontentloaded")
                panel = page.locator(".jp-NotebookPanel").filter(has=page.locator(".jp-Notebook"))
                expect(panel).to_be_visible()
                validate = panel.locator(".jp-NotebookPanel-toolbar .validate-button")
                expect(validate).to_be_visible()
                expect(panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)
                notebook_cells = panel.locator(".jp-Notebook .jp-Cell")
                expect(notebook_cells).to_have_count(len(cells))

                # Answer question 1: replace the stub in its answer cell.
                answer_cell = notebook_cells.nth(answer_at)
                editor = answer_cell.locator(".cm-content")
                expect(editor).to_contain_text("raise NotImplementedError()")
                editor.click()
                page.keyboard.press("ControlOrMeta+a")
                page.keyboard.insert_text(answer)
                expect(editor).to_contain_text(f'answer_q{ANSWERED} = "{LETTER}"')
                expect(editor).not_to_contain_text("NotImplementedError")
                page.keyboard.press("Escape")

                # Run all cells from the Run menu. JupyterLab stops at the first error: the
                # stub of the next, unanswered question.
                page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
                page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
                expect(notebook_cells.nth(next_answer_at).locator(".jp-OutputArea")).to_contain_text(
                    "NotImplementedError"
                )
                expect(answer_cell.locator(".jp-InputPrompt")).to_contain_text(re.compile(r"\[\d+\]"))
                expect(panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)
                answer_test = notebook_cells.nth(_index(cells, f"test_q{ANSWERED}"))
                expect(answer_test.locator(".jp-InputPrompt")).to_contain_text(re.compile(r"\[\d+\]"))
                expect(answer_test.locator(".jp-OutputArea-output")).to_have_count(0)

                # Validate: nbgrader saves the notebook, runs it in a fresh kernel, reports.
                validate.click()
                dialog = page.locator(".jp-Dialog")
                expect(dialog).to_be_visible(timeout=VALIDATE_MS)
                # Not "Validation failed" or "Version Mismatch": nbgrader's report.
                expect(dialog.locator(".jp-Dialog-header")).to_have_text("Validation Results", timeout=5_000)
                message = dialog.locator("#validation-message")
                expect(message).to_be_visible()
                page.wait_for_timeout(300)  # let the dialog's entrance settle for the screenshot
                page.screenshot(path=str(shot))
                print(f"\nvalidation dialog screenshot: {shot}")

                text = message.inner_text()
                assert "validation-failed" in (message.get_attribute("class") or ""), text[:2000]
                failures = message.locator("p", has_text="The following cell failed:")
                assert failures.count() == len(unanswered_tests), text[:2000]
                for grade_id in unanswered_tests:
                    n = grade_id.removeprefix("test_q")
                    assert f"NameError: name 'answer_q{n}' is not defined" in text, (
                        f"{grade_id} not reported:\n{text[:3000]}"
                    )
                assert f"name 'answer_q{ANSWERED}' is not defined" not in text
                assert f"answer_q{ANSWERED} must be" not in text

                dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
                expect(dialog).to_have_count(0)
            except Exception:
                try:
                    page.screenshot(path=str(failure_shot))
                    print(f"\nfailure screenshot: {failure_shot}")
                except Exception as e:  # a dead browser cannot take one; the original error matters
                    print(f"\nno failure screenshot: {e}")
                print("browser console errors:\n" + "\n".join(console[-30:]))
                raise
            finally:
                browser.close()
    except Exception:
        print("JupyterLab server log (tail):\n" + lab.log_tail())
        raise
    finally:
        lab.stop()
        leftovers = reap(marker)

    # Validate saved the notebook first: the answer is on disk exactly as typed, with the
    # student's own run of it (answer and form check ran without error, the next stub raised).
    saved = json.loads((home / A / f"{A}.ipynb").read_text())["cells"]
    saved_answer = saved[_index(saved, f"answer_q{ANSWERED}")]
    saved_test = saved[_index(saved, f"test_q{ANSWERED}")]
    saved_next = saved[_index(saved, f"answer_q{ANSWERED + 1}")]
    assert _source(saved_answer) == answer
    for cell in (saved_answer, saved_test):
        assert cell["execution_count"] and not cell["outputs"], cell
    assert [o.get("ename") for o in saved_next["outputs"]] == ["NotImplementedError"]
    assert not leftovers, f"processes outlived the test and were killed: {leftovers}"
    print(f"browser test took {time.monotonic() - t0:.1f}s")
