"""What reaches the instructor's terminal: student-controlled text made inert.

Student ids, grade ids and exception messages are printed by the command line. An escape
sequence among them could clear lines, recolour or hide the "flagged" report, or retitle the
terminal; a right-to-left override could reorder what the instructor reads. Every control and
format character except newline and tab is shown as its escape instead (``\\x1b``, ``\\u202e``).
"""

from __future__ import annotations

import contextlib
import io
import sys
import unicodedata
from collections.abc import Iterator

_KEEP = frozenset("\n\t")


def inert(text: str) -> str:
    """``text`` with every control or format character (but newline and tab) written as its escape."""
    return "".join(
        ch if ch in _KEEP or unicodedata.category(ch) not in ("Cc", "Cf") else ascii(ch)[1:-1] for ch in text
    )


class InertStream(io.TextIOBase):
    """A text stream that writes :func:`inert` text to the stream it wraps."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(inert(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def writable(self) -> bool:
        return True


@contextlib.contextmanager
def inert_output() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` made inert inside (whatever they are on entry)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = InertStream(saved[0]), InertStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
