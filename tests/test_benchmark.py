"""benchmarks/grading.py still runs: one copy of 04 graded the three ways, with the same scores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grading.py"


def test_an_unknown_design_is_refused():
    proc = subprocess.run([sys.executable, SCRIPT, "--designs", "nbgrader,fast"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--designs takes" in proc.stderr


@pytest.mark.slow
def test_the_three_designs_give_the_same_scores(sandbox_ready):
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--copies", "1", "04_practice"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = proc.stdout.strip().splitlines()[-1].split()
    assert row[0] == "04_practice" and row[-1] == "yes", proc.stdout
    nbgrader, judged, in_kernel = (float(x) for x in row[1:4])
    assert min(nbgrader, judged, in_kernel) > 0, proc.stdout
