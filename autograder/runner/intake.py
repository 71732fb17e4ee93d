"""Taking in a submission folder, which is hostile: its links, names, kinds and sizes.

A student controls everything under ``submitted/<student>/<assignment>/``. A symbolic link there
could point at the source notebook or the gradebook, and a plain copy would follow it into the
sandbox; a FIFO would block the grader that reads it; a device or a huge file would exhaust it.
``copy_submission`` copies plain files and folders only, never following a link (checked on the
open file itself, so a link swapped in after the check is refused too), within a count and size
budget, and raises ``IntakeError`` naming the first thing it refuses. The caller zeroes and flags
that one student; the others are graded.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IntakeError", "IntakeLimits", "copy_plain_file", "copy_submission"]

_CHUNK = 1 << 20


class IntakeError(Exception):
    """A submission folder holds something the grader will not take in."""


@dataclass(frozen=True)
class IntakeLimits:
    """How much one submission may hold: plain files, bytes in all, and folder depth."""

    max_files: int = 1000
    max_bytes: int = 256 * 2**20
    max_depth: int = 16


def _describe(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file or folder"


def _check_name(name: str, where: str) -> None:
    # Names travel into reports, logs and HTML: no control characters, no undecodable bytes.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name) or any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name):
        raise IntakeError(f"{where}: a file name with control characters or undecodable bytes ({name!r})")


class _Budget:
    def __init__(self, limits: IntakeLimits) -> None:
        self.limits, self.files, self.bytes = limits, 0, 0

    def take(self, size: int, where: str) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            raise IntakeError(f"{where}: more than {self.limits.max_files} files")
        if self.bytes > self.limits.max_bytes:
            raise IntakeError(f"{where}: more than {self.limits.max_bytes / 2**20:g} MiB in all")


def _copy_file(src: Path, dest: Path, budget: _Budget, where: str) -> None:
    try:
        # O_NOFOLLOW: a link put in place after the folder was listed fails here; O_NONBLOCK: a FIFO
        # swapped in cannot block the open.
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise IntakeError(f"{where}: cannot be opened without following a link ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IntakeError(f"{where}: is {_describe(info.st_mode)}")
        budget.take(info.st_size, where)
        copied = 0
        with open(dest, "xb") as out:
            while chunk := f.read(_CHUNK):
                copied += len(chunk)
                if copied > info.st_size:
                    raise IntakeError(f"{where}: grew while it was being copied")
                out.write(chunk)


def _copy_tree(src: Path, dest: Path, budget: _Budget, rel: str, depth: int) -> None:
    if depth > budget.limits.max_depth:
        raise IntakeError(f"{rel}: folders nested more than {budget.limits.max_depth} deep")
    dest.mkdir()
    with os.scandir(src) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            where = f"{rel}/{entry.name}"
            _check_name(entry.name, where)
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                _copy_tree(Path(entry.path), dest / entry.name, budget, where, depth + 1)
            elif stat.S_ISREG(mode):
                _copy_file(Path(entry.path), dest / entry.name, budget, where)
            else:
                raise IntakeError(f"{where}: is {_describe(mode)}; submissions hold plain files only")


def copy_submission(src: Path, dest: Path, limits: IntakeLimits | None = None) -> None:
    """Copy the submission folder ``src`` to ``dest`` (which must not exist), taking plain files only.

    Raises ``IntakeError`` for a link (the folder itself included), a FIFO, socket or device, a name
    with control characters, or more files, bytes or depth than ``limits`` allow. ``dest`` may then
    hold a partial copy; the caller discards it.
    """
    try:
        mode = os.lstat(src).st_mode
    except OSError as exc:
        raise IntakeError(f"{src.name}: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise IntakeError(f"{src.name}: the submission is {_describe(mode)}, not a folder")
    _copy_tree(src, dest, _Budget(limits or IntakeLimits()), src.name, 0)


def copy_plain_file(src: Path, dest: Path, max_bytes: int = 2**20) -> None:
    """Copy one file of a submission folder (``IntakeError`` for a link, a non-file, or more than ``max_bytes``)."""
    _copy_file(src, dest, _Budget(IntakeLimits(max_files=1, max_bytes=max_bytes)), src.name)
