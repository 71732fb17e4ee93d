"""course.lab: budgets, arms, the student's functions read from a notebook, and the headless run."""

from __future__ import annotations

import json
from dataclasses import replace

import nbformat
import pytest
import torch

from course import data, lab, memory
from harness import ROOT

LAB_NB = ROOT / "source" / lab.LAB / f"{lab.LAB}.ipynb"
NAMES = lab.NOTEBOOK_NAMES


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
        arm,
        3,
        torch.device("cpu"),
        fns["make_bnb_config"](torch.float32),
        fns["make_lora_config"](),
        inject_qlora=fns["inject_qlora"],
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
        logical = sum(e.n_params for e in memory.parameter_inventory(model))  # packed weights counted too
        assert n_trainable < 0.02 * logical  # rank-8 adapters on every linear layer: 1.47%
    quantized = any(type(m).__name__ == "Linear4bit" for m in model.modules())
    assert quantized == (arm == "qlora")
    own = [n for n, m in model.named_modules() if type(m).__name__ == "QLoRALinear"]
    plain = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    if arm == "yours":
        assert len(own) == 6 * 6 + 1 and plain == ["classifier"], "every linear layer but the head is 4-bit"
    else:
        assert not own


def test_unknown_arm_and_missing_configs_are_refused():
    with pytest.raises(ValueError, match="unknown arm"):
        lab.build_model("half", 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="make_bnb_config"):
        lab.build_model("qlora", 3, torch.device("cpu"), None, object())
    with pytest.raises(ValueError, match="inject_qlora"):
        lab.build_model("yours", 3, torch.device("cpu"))


def test_a_graded_run_trains_nothing_and_shows_the_record(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.delenv(lab.SMOKE_ENV, raising=False)
    results, kept = lab.run_arms(None, None, None)  # nothing is built: no data, no configurations needed
    assert "recorded" in capsys.readouterr().out and kept == {}
    assert list(results) == list(lab.ARMS)
    for r in results.values():
        assert len(r.labels) == len(r.predictions) == 1000 and r.steps > 0
        assert 0.3 < r.macro_f1 < 1 and r.label_names == ["negative", "neutral", "positive"]
    assert results["yours"].weight_memory_mb < 0.7 * results["full"].weight_memory_mb


@pytest.mark.parametrize(
    ("point", "interval", "expected"),
    [
        ("good", (-0.01, 0.015), "good"),
        ("good", (-0.01, 0.03), "inconclusive"),  # crosses 2 points
        ("borderline", (0.025, 0.045), "borderline"),
        ("bad", (0.04, 0.09), "inconclusive"),  # crosses 5 points
        ("bad", (0.051, 0.09), "bad"),
    ],
)
def test_a_verdict_whose_interval_crosses_a_boundary_is_inconclusive(point, interval, expected):
    assert lab.noise_verdict(point, interval) == expected


def test_an_own_4bit_layer_counts_its_packed_weight(fns):
    layer = fns["QLoRALinear"](torch.nn.Linear(128, 64), r=4)
    inventory = memory.parameter_inventory(torch.nn.Sequential(layer))
    weight = next(e for e in inventory if e.name == "0.weight")
    assert (weight.storage, weight.n_params, weight.kind) == ("nf4", 128 * 64, "feed-forward")
    assert weight.floor_bytes == layer.weight_bytes()
    assert memory.floor_bytes(inventory) == layer.weight_bytes() + 4 * (64 + 4 * (128 + 64))


def test_headless_run_writes_results_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lab.SMOKE_ENV, "1")
    out = tmp_path / "out"
    assert lab.main(["--arms", "frozen,full,qlora,yours", "--out", str(out), "--notebook", str(LAB_NB)]) == 0
    results = json.loads((out / "results.json").read_text())
    for arm in ("frozen", "full", "qlora", "yours"):
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
    for arm in ("qlora", "yours"):
        assert results["arms"][arm]["trainable_share"] < 0.03
        assert results["arms"][arm]["weight_memory_mb"] < 0.7 * 87, "4-bit weights must take far less than fp32"
    for png in ("confusion.png", "loss.png", "f1_memory.png"):
        assert (out / png).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "yours vs full fine-tuning" in printed


def test_headless_run_rejects_an_unknown_arm():
    with pytest.raises(SystemExit) as exit_info:
        lab.main(["--arms", "frozen,bogus"])
    assert exit_info.value.code == 2


def _run(**f1: float) -> dict:
    """A made-up run: one ArmResult per arm with the given macro-F1."""
    return {arm: replace(lab.recorded_results(("full",))["full"], arm=arm, macro_f1=v) for arm, v in f1.items()}


def test_seeds_follow_the_machine():
    assert lab.default_seeds("cpu") == (0,)
    assert len(lab.default_seeds("cuda")) == 3


def test_seed_spread_is_the_drop_in_each_run():
    runs = [_run(full=0.70, qlora=0.68), _run(full=0.72, qlora=0.73), _run(full=0.69, qlora=0.66)]
    spread = lab.seed_spread(runs, "qlora")
    assert spread["drops"] == pytest.approx([0.02, -0.01, 0.03])
    assert (spread["mean"], spread["low"], spread["high"]) == pytest.approx((0.04 / 3, -0.01, 0.03))
    table = lab.seeds_table(runs, (0, 1, 2))
    assert "seed 2" in table and "+1.3 [-1.0, +3.0] points" in table
    with pytest.raises(ValueError, match="lack the 'lora'"):
        lab.seed_spread(runs, "lora")
    with pytest.raises(ValueError, match="3 runs for 2 seeds"):
        lab.seeds_table(runs, (0, 1))


def test_headless_run_repeats_with_each_seed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lab.SMOKE_ENV, "1")
    out = tmp_path / "out"
    argv = ["--arms", "full,lora", "--seeds", "3,4", "--out", str(out), "--notebook", str(LAB_NB)]
    assert lab.main(argv) == 0
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["macro_f1_by_seed"]) == {"3", "4"}
    assert saved["arms"]["lora"]["macro_f1"] == saved["macro_f1_by_seed"]["3"]["lora"]
    printed = capsys.readouterr().out
    assert "== seed 4 ==" in printed and "Across seeds 3, 4" in printed and "macro-F1 drop vs full" in printed
    for bad in ("1,x", ","):
        with pytest.raises(SystemExit) as exit_info:
            lab.main(["--seeds", bad])
        assert exit_info.value.code == 2


def test_the_verdict_states_what_each_arm_saves_for_the_backward_pass(fns):
    """05's verdict_md explains the adapted arms' peak with these counts; they are measured here."""
    from harness import cell_text

    splits = data.tweet_splits(seed=0)
    saved = lab.saved_for_backward(
        splits, fns["make_bnb_config"], fns["make_lora_config"], fns["inject_qlora"], device=torch.device("cpu")
    )
    mib = {arm: n / 2**20 for arm, n in saved.items()}
    assert list(mib) == ["full", "lora", "lora, dropout 0", "qlora", "yours"]
    text = cell_text("05_qlora_lab", "verdict_md")
    for arm, value in mib.items():
        assert f"| {arm} | {value:.0f} |" in text, arm
    assert abs(mib["lora, dropout 0"] - mib["full"]) < 0.02 * mib["full"], "without dropout LoRA keeps what full keeps"
    assert f"{mib['lora'] - mib['lora, dropout 0']:.0f} MiB more" in text
    assert f"for the input gradient ({mib['yours'] - mib['lora, dropout 0']:.0f} MiB)" in text
    assert "dropout (0.05 in the reference)" in text and fns["make_lora_config"]().lora_dropout == 0.05
    budget = lab.default_budget(torch.device("cpu"), under_grader=False)
    assert f"({budget.batch_size} tweets, up to {budget.max_length} tokens;" in " ".join(text.split())
