"""course.gpu_study: the GPU path of the lab, run on a CPU with a tiny decoder and the simulate flag."""

from __future__ import annotations

import math

import pytest
import torch

from course import gpu_study


def test_the_arithmetic_is_notebook_02s():
    n = 494_032_768  # Qwen2.5-0.5B
    full = gpu_study.predicted_bytes("full", n, n, "adamw")
    assert math.isclose(full / 1e9, 12 * n / 1e9), "bf16 weights and gradients, two fp32 Adam states: 12 bytes"
    lora = gpu_study.predicted_bytes("lora", n + 8_798_208, 8_798_208, "adamw")
    qlora = gpu_study.predicted_bytes("qlora", n + 8_798_208, 8_798_208, "paged_adamw_8bit")
    assert math.isclose(lora, 2 * n + 16 * 8_798_208)
    assert math.isclose(qlora, n * 4.127 / 8 + 10 * 8_798_208)
    assert qlora < lora / 3 < full / 3


@pytest.fixture(scope="module")
def rows():
    return gpu_study.study(steps=3, batch_size=4, seq_len=32, simulate=True)


def test_the_gpu_path_runs_every_arm_on_a_cpu(rows):
    by_arm = {r.arm: r for r in rows}
    assert list(by_arm) == list(gpu_study.ARMS)
    assert by_arm["full"].trainable_params == by_arm["full"].total_params
    for arm in ("lora", "qlora"):
        assert 0 < by_arm[arm].trainable_params < 0.5 * by_arm[arm].total_params
    # The 4-bit model counts its packed weights as the parameters they stand for.
    assert by_arm["qlora"].total_params == by_arm["lora"].total_params
    assert by_arm["qlora"].predicted_gb < by_arm["lora"].predicted_gb < by_arm["full"].predicted_gb
    for r in rows:
        assert r.seconds_per_step > 0 and math.isfinite(r.peak_gb)
        assert r.memory_kind == "process resident memory"
    table = gpu_study.format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["arm", "params", "trainable"] and "qlora" in table


def test_the_qlora_arm_is_really_4bit():
    model = gpu_study.load(None, "qlora", torch.device("cpu"), random_init=False, simulate=True)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Linear4bit" in kinds
    assert model.is_gradient_checkpointing, "QLoRA's recipe: gradient checkpointing on"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n for n in trainable)


def test_without_a_gpu_it_says_so():
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            gpu_study.measure("full")
    with pytest.raises(ValueError, match="unknown arm"):
        gpu_study.measure("half", simulate=True)


def test_the_notebook_shows_the_prediction_without_a_gpu():
    lines = gpu_study.format_prediction().splitlines()
    predicted = {line.split()[0]: float(line.split()[2]) for line in lines[1:]}
    assert predicted == {"full": 5.93, "lora": 1.13, "qlora": 0.34}
    assert gpu_study.DEFAULT_ADAPTERS == 8_798_208
