"""Collect takes a submission only from the student it names (autograder/commands/collect.py).

A scratch exchange whose submission folders are owned by chosen uids (the suite runs as root, so it
can chown them), collected by the course's ``CheckedCollect`` in this process, as the formgrader's
button or ``nbgrader collect`` does with the course's ``nbgrader_config.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from nbgrader.auth import Authenticator
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from autograder.commands.collect import FIRST_UID, CheckedCollect, derived_uid

A = "04_practice"
COURSE = "lora-qlora"


def stamp(minute: int) -> str:
    return f"2026-12-07 10:{minute:02d}:00.000000 UTC"


class Exchange:
    def __init__(self, where: Path):
        self.root = where / "exchange"
        self.inbound = self.root / COURSE / "inbound"
        self.inbound.mkdir(parents=True)
        self.course = where / "course"
        self.course.mkdir()

    def submit(self, claimed: str, minute: int, uid: int, marker: str) -> Path:
        """A submission folder as ``nbgrader submit --student claimed`` leaves it, made by ``uid``."""
        folder = self.inbound / f"{claimed}+{A}+{stamp(minute)}"
        folder.mkdir()
        (folder / f"{A}.ipynb").write_text(marker)
        (folder / "timestamp.txt").write_text(stamp(minute))
        for path in (folder, *folder.iterdir()):
            os.lchown(path, uid, 100)
        return folder

    def collect(self, rule: str, caplog) -> dict[str, str]:
        """Collect with ``student_uids = rule``; what each student's collected notebook says."""
        cfg = Config()
        cfg.CourseDirectory.root = str(self.course)
        cfg.CourseDirectory.course_id = COURSE
        cfg.CourseDirectory.assignment_id = A
        cfg.Exchange.root = str(self.root)
        cfg.CheckedCollect.student_uids = rule
        collect = CheckedCollect(
            coursedir=CourseDirectory(config=cfg), authenticator=Authenticator(config=cfg), config=cfg
        )
        collect.log = logging.getLogger("test-collect")
        with caplog.at_level(logging.INFO, logger="test-collect"):
            collect.start()
        submitted = self.course / "submitted"
        return {p.parent.parent.name: p.read_text() for p in submitted.glob(f"*/{A}/{A}.ipynb")}


@pytest.fixture(scope="module")
def empty_gradebook(tmp_path_factory) -> Path:
    """One empty gradebook made by nbgrader (seconds: it runs alembic), copied into each scratch course."""
    where = tmp_path_factory.mktemp("gradebook") / "gradebook.db"
    with pytest.MonkeyPatch.context() as mp:
        # nbgrader's gradebook runs alembic, which lives beside this interpreter.
        mp.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
        Gradebook(f"sqlite:///{where}", COURSE).close()
    return where


@pytest.fixture
def exchange(tmp_path, empty_gradebook) -> Exchange:
    if os.geteuid() != 0:
        pytest.fail("these tests make folders owned by other uids: run the suite as root, as CI does")
    made = Exchange(tmp_path)
    shutil.copy2(empty_gradebook, made.course / "gradebook.db")
    return made


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_a_submission_in_another_students_name_is_refused_and_theirs_collected(exchange, caplog):
    exchange.submit("ada", 1, derived_uid("ada"), "ada's own")
    exchange.submit("bert", 2, derived_uid("bert"), "bert's own")
    forged = exchange.submit("ada", 3, derived_uid("bert"), "bert, as ada")  # the newest of ada's
    assert exchange.collect("derived", caplog) == {"ada": "ada's own", "bert": "bert's own"}
    [message] = refusals(caplog)
    assert forged.name in message and "claims to be 'ada'" in message
    assert f"made by uid {derived_uid('bert')}, not by the student's uid {derived_uid('ada')}" in message
    assert forged.is_dir(), "a refused submission stays in the exchange"


def test_a_student_with_only_forged_submissions_gets_none(exchange, caplog):
    exchange.submit("carl", 1, derived_uid("ada"), "ada, as carl")
    exchange.submit("carl", 2, FIRST_UID, "someone, as carl")
    assert exchange.collect("derived", caplog) == {}
    assert len(refusals(caplog)) == 2


def test_with_unix_accounts_the_owner_must_be_the_account_of_that_name(exchange, caplog):
    exchange.submit("root", 1, 0, "root's own")
    exchange.submit("nobody", 1, 0, "root, as nobody")
    exchange.submit("no-such-account", 1, 0, "root, as a stranger")
    assert exchange.collect("accounts", caplog) == {"root": "root's own"}
    messages = refusals(caplog)
    assert any("'nobody'" in m and "made by uid 0, not by the student's uid 65534" in m for m in messages)
    assert any("'no-such-account'" in m and "no Unix account" in m for m in messages)


def test_anyone_collects_everything_as_nbgrader_does(exchange, caplog):
    exchange.submit("ada", 1, derived_uid("ada"), "ada's own")
    exchange.submit("ada", 2, derived_uid("bert"), "bert, as ada")
    assert exchange.collect("anyone", caplog) == {"ada": "bert, as ada"}
    assert refusals(caplog) == []


def test_a_name_that_would_drive_the_terminal_is_logged_inert(exchange, caplog):
    exchange.submit("ada\x1b[2J", 1, FIRST_UID, "")
    exchange.collect("derived", caplog)
    [message] = refusals(caplog)
    assert "\x1b" not in message and "\\x1b[2J" in message


def test_derived_uids_are_stable_spread_and_clear_of_real_accounts():
    names = [f"student{i}" for i in range(2000)]
    uids = [derived_uid(n) for n in names]
    assert len(set(uids)) == len(uids)
    assert all(FIRST_UID <= u < 2**31 for u in uids)
    assert derived_uid("ada") == derived_uid("ada") != derived_uid("Ada")


def test_a_link_to_someone_else_s_submission_is_refused(exchange, caplog):
    own = exchange.submit("ada", 1, derived_uid("ada"), "ada's own")
    link = exchange.inbound / f"bert+{A}+{stamp(2)}"
    link.symlink_to(own)
    os.lchown(link, derived_uid("bert"), 100)
    assert exchange.collect("derived", caplog) == {"ada": "ada's own"}
    [message] = refusals(caplog)
    assert "claims to be 'bert'" in message and "is not a folder" in message
