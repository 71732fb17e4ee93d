"""How long each notebook's cells take to run, as a student runs them: every cell in order, in a fresh
kernel, in a scratch copy of the assignment folder (so nothing cached from an earlier run helps).

    .venv/bin/python benchmarks/notebook_times.py [--slow 5] [A ...]

It runs the instructor's notebooks (the answers filled in), prints each notebook's total and every
cell that took longer than ``--slow`` seconds. The notebooks' "Time:" lines quote these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ("01_lora_basics", "02_quantization", "03_metrics", "04_practice", "05_qlora_lab")


def cell_times(assignment: str, timeout: int = 1800) -> tuple[float, list[tuple[str, float]]]:
    """(total seconds, [(cell name, seconds)]) for one run of ``assignment``'s notebook."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / assignment
        shutil.copytree(ROOT / "source" / assignment, folder)
        nb = nbformat.read(folder / f"{assignment}.ipynb", as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}})
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        times = []
        start = time.perf_counter()
        with client.setup_kernel(env=env):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                began = time.perf_counter()
                client.execute_cell(cell, index)
                name = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"
                times.append((name, time.perf_counter() - began))
        return time.perf_counter() - start, times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("assignments", nargs="*", default=list(ASSIGNMENTS))
    p.add_argument("--slow", type=float, default=5.0, help="list cells slower than this many seconds")
    p.add_argument("--json", type=Path, help="also write the times here")
    args = p.parse_args(argv)
    report = {}
    for assignment in args.assignments:
        total, times = cell_times(assignment)
        report[assignment] = {"total_s": round(total, 1), "cells": {n: round(t, 1) for n, t in times}}
        print(f"{assignment}: {total:.0f} s in all ({os.cpu_count()} CPU cores)", flush=True)
        for name, seconds in times:
            if seconds >= args.slow:
                print(f"    {name:<32} {seconds:7.1f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
