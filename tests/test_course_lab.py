"""course.lab: budgets, arms, the student's functions read from a notebook, and the headless run."""

from __future__ import annotations

import json

import nbformat
import pytest
import torch

from course import lab
from harness import ROOT

LAB_NB = ROOT / "source" / lab.LAB / f"{lab.LAB}.ipynb"
NAMES = ("make_bnb_config", "make_lora_config", "lab_verdict")


@pytest.fixture(scope="module")
def fns():
    return lab.functions_from_notebook(LAB_NB, NAMES)


def test_budgets_follow_the_machine(monkeypatch):
    monkeypatch.delenv(lab.SMOKE_ENV, raising=False)
    gpu = lab.default_budget("cuda", under_grader=False)
    assert gpu.max_train is None and gpu.max_eval is None, "a GPU kernel uses the whole corpus"
    cpu = lab.default_budget("cpu", under_grader=False)
    graded = lab.default_budget("cpu", under_grader=True)
    assert graded.max_train < cpu.max_train and graded.max_eval <= cpu.max_eval
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert lab.default_budget("cpu") == graded
    monkeypatch.setenv(lab.SMOKE_ENV, "1")
    assert lab.default_budget("cpu").max_train < graded.max_train


def test_functions_come_from_the_notebook(fns):
    assert fns["lab_verdict"](0.90, 0.88) == "good"
    assert fns["make_lora_config"]().r == 8


def test_a_notebook_without_the_functions_is_refused(tmp_path):
    path = tmp_path / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    with pytest.raises(RuntimeError, match="defines no make_bnb_config"):
        lab.functions_from_notebook(path, NAMES)


@pytest.mark.parametrize("arm", lab.ARMS)
def test_each_arm_trains_what_it_should(fns, arm):
    model = lab.build_model(
        arm, 3, torch.device("cpu"), fns["make_bnb_config"](torch.float32), fns["make_lora_config"]()
    )
    names = lab.trainable_names(model)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    if arm == "frozen":
        assert names == ["classifier.weight", "classifier.bias"]
    elif arm == "full":
        assert n_trainable == n_all
    else:
        assert names and all("lora_" in n or "classifier" in n for n in names)
        assert n_trainable < 0.01 * n_all
    quantized = any(type(m).__name__ == "Linear4bit" for m in model.modules())
    assert quantized == (arm == "qlora")


def test_unknown_arm_and_missing_configs_are_refused():
    with pytest.raises(ValueError, match="unknown arm"):
        lab.build_model("half", 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="make_bnb_config"):
        lab.build_model("qlora", 3, torch.device("cpu"), None, object())


def test_headless_run_writes_results_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lab.SMOKE_ENV, "1")
    out = tmp_path / "out"
    assert lab.main(["--arms", "frozen,qlora", "--out", str(out), "--notebook", str(LAB_NB)]) == 0
    results = json.loads((out / "results.json").read_text())
    for arm in ("frozen", "qlora"):
        row = results["arms"][arm]
        for key in (
            "accuracy",
            "macro_f1",
            "trainable_params",
            "total_params",
            "peak_memory_mb",
            "weight_memory_mb",
            "seconds_per_step",
        ):
            assert key in row, key
        assert len(row["predictions"]) == len(row["labels"]) == 48
        assert sum(map(sum, row["confusion"])) == 48
    assert results["arms"]["qlora"]["trainable_share"] < 0.01
    assert results["arms"]["qlora"]["weight_memory_mb"] < 0.7 * 87, "4-bit weights must take far less than fp32"
    for png in ("confusion.png", "loss.png", "f1_memory.png"):
        assert (out / png).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "qlora" in printed


def test_headless_run_rejects_an_unknown_arm():
    with pytest.raises(SystemExit) as exit_info:
        lab.main(["--arms", "frozen,bogus"])
    assert exit_info.value.code == 2
