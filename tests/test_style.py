"""The repository keeps ruff's style (configured in pyproject.toml): lint clean and formatted."""

from __future__ import annotations

import subprocess
import sys

from harness import ROOT


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_finds_nothing_to_lint():
    result = _ruff("check", "--no-cache", ".")
    assert result.returncode == 0, (
        f"ruff check . found problems (fix, or `ruff check --fix`):\n{result.stdout}{result.stderr}"
    )


def test_code_is_formatted():
    result = _ruff("format", "--check", "--no-cache", ".")
    assert result.returncode == 0, f"run `.venv/bin/ruff format .`:\n{result.stdout}{result.stderr}"
