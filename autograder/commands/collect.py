"""Collecting from the exchange: a submission counts only for the student who made it.

nbgrader's plain exchange files a submission under whatever name the student's own ``nbgrader
submit --student NAME`` claims, and its ``check_owner`` only warns before collecting it anyway. The
student's server is theirs to control, so the check belongs here, where the instructor collects: a
submission folder counts for ``NAME`` only when the Unix user who created it is ``NAME``'s.

Who ``NAME`` is, as a uid, depends on the deployment (``CheckedCollect.student_uids``):

- ``accounts``: the one-server hub, where every student has a Unix account of their hub name;
- ``derived``: containers (Kubernetes, DockerSpawner), where each student's server runs as the uid
  ``derived_uid(NAME)``, which the hub computes the same way (``values.yaml``, ``30-per-user-uid.py``);
- ``anyone``: no check (one Unix user for everyone, as in a test hub): every submission is collected.

A refused folder stays in the exchange, untouched, and the refusal is logged naming the folder, the
claimed student and the uid that made it; the claimed student's own latest submission is collected.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import stat

from nbgrader.exchange.default.collect import ExchangeCollect
from traitlets import Enum

# Derived uids lie in [FIRST_UID, 2**31): clear of system accounts and of jovyan (1000), and below
# the 2**31 that some tools read as negative.
FIRST_UID = 2**20
UID_SPAN = 2**31 - FIRST_UID


def derived_uid(name: str) -> int:
    """The uid a student's server runs as in containers: a hash of the hub name, so the grader needs no
    roster. The hub refuses to start a server whose uid another user already has (``values.yaml``)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return FIRST_UID + int.from_bytes(digest[:8], "big") % UID_SPAN


def account_uid(name: str) -> int | None:
    """The uid of the Unix account ``name``; None when there is none."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


class CheckedCollect(ExchangeCollect):
    """nbgrader's collect, refusing every submission folder its claimed student did not create."""

    student_uids = Enum(
        ["accounts", "derived", "anyone"],
        default_value="accounts",
        help="How a student's name becomes the uid that must own their submissions: 'accounts' (Unix "
        "accounts), 'derived' (derived_uid, for containers), 'anyone' (no check).",
    ).tag(config=True)

    def expected_uid(self, student: str) -> int | None:
        if self.student_uids == "derived":
            return derived_uid(student)
        return account_uid(student)

    def refusal(self, record: dict) -> str | None:
        """Why the submission ``record`` does not count for its claimed student; None when it does."""
        if self.student_uids == "anyone":
            return None
        path = os.path.join(self.inbound_path, record["filename"])
        try:
            info = os.lstat(path)
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if not stat.S_ISDIR(info.st_mode):
            # A link to someone else's folder would be owned by whoever made the link.
            return "is not a folder (a link?)"
        owner = info.st_uid
        expected = self.expected_uid(record["username"])
        if expected is None:
            return "names a student with no Unix account"
        if owner != expected:
            return f"was made by uid {owner}, not by the student's uid {expected}"
        return None

    def _sort_by_timestamp(self, records):
        # nbgrader collects the first record of each student's list: the newest one the student made
        # comes first, ahead of anything forged in their name, however recent.
        return sorted(records, key=lambda r: (self.refusal(r) is None, r["timestamp"]), reverse=True)

    def init_src(self):
        super().init_src()
        # Every forged folder is reported, also those behind the student's own newer one.
        student = self.coursedir.student_id or "*"
        pattern = os.path.join(self.inbound_path, f"{student}+{self.coursedir.assignment_id}+*")
        for path in sorted(glob.glob(pattern)):
            record = self._path_to_record(path)
            why = self.refusal(record)
            if why is not None:
                # ascii(): the names are the student's, and reach the instructor's terminal and logs.
                self.log.error(
                    "Refused %s: it claims to be %s's submission but %s; not collected, left in the exchange",
                    ascii(record["filename"]),
                    ascii(record["username"]),
                    why,
                )
        self.src_records = [record for record in self.src_records if self.refusal(record) is None]

    def copy_files(self):
        # nbgrader's own owner check compares account names and only warns; ours ran in init_src.
        self.check_owner = False
        super().copy_files()
