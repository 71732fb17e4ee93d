"""What the grading machine offers, read cheaply (the command line's defaults come from here)."""

from __future__ import annotations

import os
from pathlib import Path

GIB = 2**30
# The references of 01 and 05 grade within a 2 GiB limit per kernel (measured); more than 16 helps nothing.
KERNEL_MEMORY_RANGE = (2, 16)  # GiB


def memory_bytes() -> int:
    """The memory this process may use: its container's limit (cgroup v2 or v1) where one is set,
    else the machine's physical memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return physical


def default_kernel_memory(jobs: int) -> float:
    """GiB per kernel when ``jobs`` grade at once: an equal share of the machine's memory, within
    :data:`KERNEL_MEMORY_RANGE` (a 16 GiB pod grading 4 at a time gives each kernel 4 GiB)."""
    low, high = KERNEL_MEMORY_RANGE
    share = memory_bytes() / GIB / max(1, jobs)
    return float(max(low, min(high, int(share))))
