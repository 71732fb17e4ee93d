"""course.gpu_study: the GPU path of the lab, run on a CPU with a tiny decoder and the simulate flag."""

from __future__ import annotations

import math

import pytest
import torch

from course import gpu_study


def test_the_arithmetic_prices_each_component_as_the_libraries_store_it():
    linear, other, adapters = gpu_study.DEFAULT_LINEAR, gpu_study.DEFAULT_PARAMS - gpu_study.DEFAULT_LINEAR, 8_798_208
    full = gpu_study.predicted_components("full", linear, other, 0, "adamw")
    assert full == {"weights": 2 * 494_032_768, "gradients": 2 * 494_032_768, "optimizer": 4 * 494_032_768}
    lora = gpu_study.predicted_components("lora", linear, other, adapters, "adamw")
    assert lora == {"weights": 2 * 494_032_768 + 4 * adapters, "gradients": 4 * adapters, "optimizer": 8 * adapters}
    qlora = gpu_study.predicted_components("qlora", linear, other, adapters, "paged_adamw_8bit")
    assert math.isclose(qlora["weights"], linear * 4.126953125 / 8 + 4 * other + 4 * adapters)
    assert (qlora["gradients"], qlora["optimizer"]) == (4 * adapters, 2 * adapters)
    assert other == 151_936 * 896 + 24 * 2 * 896 + 896 + 24 * (896 + 2 * 128), "embedding, norms, q/k/v biases"


def test_only_linear_weights_go_to_4_bits_and_the_rest_is_cast_to_float32():
    """The rule the QLoRA prediction rests on, seen on a tiny Qwen2 loaded in bf16 as the GPU study does."""
    import tempfile

    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig

    config = gpu_study.tiny_config()
    config.num_labels = 3
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, torch_dtype=torch.bfloat16)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=["score"],
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, quantization_config=quant, torch_dtype=torch.bfloat16, device_map={"": "cpu"}
        )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            four_bit = type(p).__name__ == "Params4bit"
            linear_weight = isinstance(module, torch.nn.Linear) and name == "weight" and module_name != "score"
            assert four_bit == linear_weight, f"{module_name}.{name}: 4-bit {four_bit}"
            assert four_bit or p.dtype == torch.float32, f"{module_name}.{name} stayed {p.dtype}"
    _, other, trainable = gpu_study.parameter_split(model)
    assert trainable == 0 and other == sum(p.numel() for p in model.parameters() if type(p).__name__ != "Params4bit")


def test_the_notebook_states_the_predicted_figures():
    import re

    from harness import cell_text

    text = cell_text("05_qlora_lab", "gpu_md")
    stated = dict(zip(("full", "lora", "qlora"), map(float, re.findall(r"about \*\*([\d.]+) GB\*\*", text))))
    lines = gpu_study.format_prediction().splitlines()[1:]
    assert stated == {line.split()[0]: float(line.split()[5]) for line in lines}
    linear, other = gpu_study.DEFAULT_LINEAR, gpu_study.DEFAULT_PARAMS - gpu_study.DEFAULT_LINEAR
    assert f"({round(linear / 1e6)} M here)" in text and f"({round(other / 1e6)} M in all)" in text
    assert f"{100 * 151_936 * 896 / gpu_study.DEFAULT_PARAMS:.1f} % of the model" in text
    assert f"{other * 4 / 1e9:.2f} GB on its own" in text
    assert (
        f"{gpu_study.predicted_bytes('qlora', linear, other, gpu_study.DEFAULT_ADAPTERS, 'paged_adamw_8bit') / gpu_study.predicted_bytes('lora', linear, other, gpu_study.DEFAULT_ADAPTERS, 'adamw'):.1f} of LoRA"
        in text
    )


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
    predicted = {line.split()[0]: float(line.split()[5]) for line in lines[1:]}
    assert predicted == {"full": 3.95, "lora": 1.13, "qlora": 0.82}
    assert gpu_study.DEFAULT_ADAPTERS == 8_798_208


def test_the_docs_and_the_model_answer_state_the_same_prediction():
    from harness import ROOT

    totals = [float(line.split()[5]) for line in gpu_study.format_prediction().splitlines()[1:]]
    full, lora, qlora = (f"{t:.2f}" for t in totals)
    assert f"predicts, before activations, {full} GB" in " ".join((ROOT / "README.md").read_text().split())
    assert f"{lora} GB for LoRA" in " ".join((ROOT / "README.md").read_text().split())
    assert f"{qlora} GB for QLoRA" in " ".join((ROOT / "README.md").read_text().split())
    assert f"({full}, {lora} and {qlora} GB before activations)" in (ROOT / "docs" / "instructor.md").read_text()
    answer = (ROOT / "source" / "05_qlora_lab" / "05_qlora_lab.ipynb").read_text()
    assert f"the GPU part predicts {full} GB against {qlora} GB" in answer
