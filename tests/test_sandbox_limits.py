"""The sandbox's limits: processes, /tmp and /dev/shm on disk inside the job, and the disk budget."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder import notebook as nbu
from autograder.commands.grade import GradeSettings, grade, saved_review
from autograder.commands.nbgrader_run import scratch_course
from autograder.course import Course
from autograder.execute import sandbox
from autograder.execute.guarded import GuardedExecute
from autograder.runner.pool import disk_usage
from harness import ROOT, course

pytestmark = pytest.mark.slow


def _outputs(tmp_path, source: str) -> str:
    """Run one cell in a sandboxed kernel; everything it printed or raised, as text."""
    assert sandbox.unavailable_reason() is None, f"the sandbox is missing ({sandbox.unavailable_reason()}): run ./setup"
    nb = new_notebook(cells=[new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    ex = GuardedExecute(timeout=120, sandbox=True, report_file=str(tmp_path / "report.json"))
    ex.scratch_root = str(tmp_path)
    ex.preprocess(nb, {"metadata": {"path": str(tmp_path)}, "unique_key": "t"})
    out = nb.cells[0].outputs
    return "".join(o.get("text", "") + o.get("evalue", "") for o in out)


def test_a_kernel_cannot_make_more_processes_than_its_limit(tmp_path):
    assert sandbox.pids_cgroup_root() is not None, "this machine offers no pids cgroup to the grader"
    text = _outputs(
        tmp_path,
        "import subprocess\n"
        "children = []\n"
        "try:\n"
        "    for _ in range(2000):\n"
        "        children.append(subprocess.Popen(['sleep', '60']))\n"
        "except OSError as exc:\n"
        "    print('stopped at', len(children), type(exc).__name__)\n"
        "for c in children:\n"
        "    c.kill()\n",
    )
    assert "stopped at" in text, text
    started = int(text.split("stopped at")[1].split()[0])
    assert started < sandbox.Limits.tasks, text


def test_a_finished_kernel_leaves_no_process_group_nor_socket_folder(tmp_path, monkeypatch):
    made: list = []
    monkeypatch.setattr(
        sandbox, "pids_group", lambda limit, make=sandbox.pids_group: made.append(make(limit)) or made[-1]
    )
    folders: list = []
    mkdtemp = sandbox.tempfile.mkdtemp
    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", lambda *a, **k: folders.append(mkdtemp(*a, **k)) or folders[-1])
    # Children still running when the kernel is killed: the group cannot be removed until they die.
    _outputs(tmp_path, "import subprocess\nkids = [subprocess.Popen(['sleep', '60']) for _ in range(5)]")
    assert made and made[0] is not None and folders
    assert not made[0].exists(), "the kernel's pids cgroup was left behind"
    assert not any(Path(f).exists() for f in folders), "the kernel's socket folder was left behind"
    unused = sandbox.SandboxedKernelManager()  # a manager whose kernel never starts
    del unused
    assert not Path(folders[-1]).exists(), "a manager that never started a kernel left its socket folder"


def test_making_a_group_removes_stale_empty_ones_and_no_other():
    stale, fresh, busy = (sandbox.pids_group(10) for _ in range(3))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        old = time.time() - 2 * sandbox.STALE_GROUP_SECONDS
        for group in (stale, busy):
            os.utime(group, (old, old))
        newest = sandbox.pids_group(10)
        assert not stale.exists(), "an empty group left by a killed worker was kept"
        assert fresh.exists() and busy.exists(), "a group still in use (new, or with a process) was removed"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert all(sandbox.release_group(g) for g in (fresh, busy, newest))


def test_tmp_and_shm_are_folders_on_disk_not_memory(tmp_path):
    text = _outputs(
        tmp_path,
        "mounts = {line.split()[1]: line.split()[2] for line in open('/proc/mounts')}\n"
        "print('tmp', mounts.get('/tmp'), 'shm', mounts.get('/dev/shm'))\n"
        "open('/tmp/x', 'w').write('y')\n",
    )
    assert "tmp tmpfs" not in text and "shm tmpfs" not in text, text
    assert "tmp " in text and "shm " in text, text


def test_disk_usage_counts_bytes_and_gives_up_past_the_cap(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 50_000)
    assert 150_000 <= disk_usage(tmp_path, 10**9) < 250_000
    assert disk_usage(tmp_path, 1000) == 1001
    for i in range(20):
        (tmp_path / "d" / f"f{i}").touch()
    assert disk_usage(tmp_path, 10**9, max_files=10) == 10**9 + 1


def test_a_submission_that_fills_the_disk_is_stopped_and_flagged(tmp_path):
    """Filling its /tmp, or the folder that holds its kernel's sockets (the one place outside its
    working folder it can write), each counts against the job's disk budget."""
    root = scratch_course(course(), tmp_path / "course", ["04_practice"])
    shutil.copytree(ROOT / "release" / "04_practice", root / "release" / "04_practice")
    nb = nbformat.read(ROOT / "release" / "04_practice" / "04_practice.ipynb", as_version=4)
    targets = {
        "filler": "'/tmp/filler'",
        "socket_filler": "os.path.join(os.path.dirname(get_connection_file()), 'filler')",
    }
    for student, target in targets.items():
        for cell in nb.cells:
            if nbu.cell_id(cell) == "answer_q1":
                cell.source = (
                    "import os, time\nfrom ipykernel.connect import get_connection_file\n"
                    f"with open({target}, 'wb') as f:\n"
                    "    for _ in range(120):\n        f.write(b'0' * 2**20)\n        f.flush()\n"
                    "time.sleep(20)\nanswer_q1 = 'B'"
                )
        folder = root / "submitted" / student / "04_practice"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "04_practice.ipynb")
    run = grade(Course.load(root), "04_practice", settings=GradeSettings(jobs=2, disk=64 * 2**20))
    assert {g.student for g in run.grades} == set(targets)
    for g in run.grades:
        assert g.score == 0 and g.flagged, (g.student, run.problems)
        assert "to disk" in saved_review(Course.load(root), "04_practice", g.student)[0], g.student


@pytest.mark.parametrize(
    ("stderr", "says"),
    [
        ("bwrap: Can't mount proc on /newroot/proc: Operation not permitted", "procMount: Unmasked"),
        ("bwrap: No permissions to create new namespace", "user namespaces may be disabled"),
    ],
)
def test_why_the_sandbox_cannot_start_names_the_cause(monkeypatch, stderr, says):
    """A container's masked /proc and blocked user namespaces fail differently, and are fixed differently."""
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", stderr))
    sandbox.unavailable_reason.cache_clear()
    try:
        assert says in sandbox.unavailable_reason()
    finally:
        sandbox.unavailable_reason.cache_clear()
