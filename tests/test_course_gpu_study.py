"""course.gpu_study: the GPU path of the lab, run on a CPU with a tiny decoder and the simulate flag."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from course import gpu_arithmetic, gpu_study, memory


def test_the_arithmetic_prices_each_component_as_the_libraries_store_it():
    linear, other, adapters = gpu_study.DEFAULT_LINEAR, gpu_study.DEFAULT_PARAMS - gpu_study.DEFAULT_LINEAR, 8_798_208
    full = gpu_study.predicted_components("full", linear, other, 0, "adamw")
    assert full == {"weights": 2 * 494_032_768, "gradients": 2 * 494_032_768, "optimizer": 4 * 494_032_768}
    lora = gpu_study.predicted_components("lora", linear, other, adapters, "adamw")
    assert lora == {"weights": 2 * 494_032_768 + 4 * adapters, "gradients": 4 * adapters, "optimizer": 8 * adapters}
    small = gpu_study.DEFAULT_SMALL_ADAPTERS
    qlora = gpu_study.predicted_components("qlora", linear, other, adapters, "paged_adamw_8bit", small=small)
    assert math.isclose(qlora["weights"], linear * 4.126953125 / 8 + 4 * other + 4 * adapters)
    # 8-bit states (1 byte each of two, a float32 absmax per 256) but 32-bit ones for tensors under 4,096
    assert qlora["gradients"] == 4 * adapters
    assert qlora["optimizer"] == (adapters - small) * (2 + 8 / 256) + small * 8
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


# --- the arithmetic proven on the CPU, on Qwen2.5-0.5B's own architecture ----------------------------


def test_the_architecture_written_out_is_qwen25_05b():
    """Built on the meta device (no memory): the counts the predictions start from are this model's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(gpu_arithmetic.config())
    head = 3 * 896
    assert sum(p.numel() for p in model.parameters()) == gpu_study.DEFAULT_PARAMS + head
    for p in model.parameters():
        p.requires_grad_(False)
    assert gpu_study.parameter_split(model)[0] == gpu_study.DEFAULT_LINEAR
    with torch.device("meta"):
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=16, lora_alpha=32, target_modules="all-linear"))
    _, _, trainable = gpu_study.parameter_split(model)
    assert trainable == gpu_study.DEFAULT_ADAPTERS + head, "adapters and the head's trainable copy"
    assert gpu_study.small_trainable(model) == gpu_study.DEFAULT_SMALL_ADAPTERS + head
    assert gpu_study.Shape.of(model.config) == gpu_study.Shape()


@pytest.mark.parametrize("dropout", [0.0, 0.05])
def test_the_activation_count_holds_on_another_shape(dropout, monkeypatch):
    """The per-token count of predicted_activations against what autograd saved, on the tiny decoder."""
    monkeypatch.setattr(gpu_study, "LORA_DROPOUT", dropout)
    for arm in gpu_study.ARMS:
        model = gpu_study.load(None, arm, torch.device("cpu"), False, True, dtype=torch.bfloat16)
        model.train()
        ids = torch.randint(1, 512, (3, 20), generator=torch.Generator().manual_seed(0))
        saved = memory.SavedForBackward(model)
        with saved:
            model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 2]))
        shape = gpu_study.Shape.of(model.config)
        predicted = gpu_study.predicted_activations(arm, 60, shape, dropout=dropout > 0, mask_bytes=4)
        assert saved.nbytes == pytest.approx(predicted, rel=gpu_arithmetic.TOLERANCE["activations"]), arm


def _report(**off):
    """A report whose measurements sit on the predictions, but for ``arm_component=fraction`` off."""
    report = {
        arm: {c: {"predicted": 1e9, "measured": 1e9} for c in gpu_arithmetic.COMPONENTS} for arm in gpu_study.ARMS
    }
    for key, fraction in off.items():
        arm, component = key.split("_", 1)
        report[arm][component]["measured"] = 1e9 * (1 + fraction)
    return report


def test_a_component_out_of_tolerance_is_named_and_fails_the_command(monkeypatch, capsys):
    assert gpu_arithmetic.out_of_tolerance(_report(qlora_weights=0.049, full_peak=-0.149)) == []
    problems = gpu_arithmetic.out_of_tolerance(_report(qlora_optimizer=0.06, lora_peak=0.2))
    assert len(problems) == 2 and problems[0].startswith("lora peak: measured 1200.0 MB, predicted 1000.0 MB")
    assert problems[1].startswith("qlora optimizer") and "allowed 5 %" in problems[1]
    monkeypatch.setattr(gpu_arithmetic, "check", lambda: _report(full_gradients=-0.1))
    assert gpu_study.main(["--check-arithmetic", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["full"]["gradients"]["measured"] == pytest.approx(0.9e9)
    assert "out of tolerance: full gradients" in err


@pytest.fixture(scope="module")
def arithmetic():
    """The CPU proof as anyone runs it: the command line, one JSON object on stdout."""
    from harness import ROOT

    return subprocess.run(
        [sys.executable, "-m", "course.gpu_study", "--check-arithmetic", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )


def test_every_byte_qwen25_05b_holds_is_the_arithmetic_s(arithmetic):
    assert arithmetic.returncode == 0, arithmetic.stderr[-3000:]
    report = json.loads(arithmetic.stdout)
    assert list(report) == list(gpu_study.ARMS)
    for arm, components in report.items():
        assert list(components) == list(gpu_arithmetic.COMPONENTS)
        for component, pair in components.items():
            off = abs(pair["measured"] - pair["predicted"]) / pair["predicted"]
            assert off <= gpu_arithmetic.TOLERANCE[component], (arm, component, pair)
    # The stored bytes are exact: bf16 everywhere for full fine-tuning, AdamW's states in bf16 too.
    n = gpu_study.DEFAULT_PARAMS + 3 * 896
    assert 0 <= report["full"]["weights"]["measured"] - 2 * n <= 256, "bf16 parameters and the rotary buffers"
    assert 0 <= report["full"]["optimizer"]["measured"] - 4 * n < 4096, "two bf16 states and a step count each"
    assert report["qlora"]["weights"]["measured"] < 0.8 * report["lora"]["weights"]["measured"]


def test_the_recorded_check_and_the_notebook_state_what_the_check_measures(arithmetic):
    from harness import cell_text

    fresh = json.loads(arithmetic.stdout)
    recorded = json.loads(gpu_arithmetic.RECORDED.read_text(encoding="utf-8"))
    for arm, components in fresh.items():
        for component, pair in components.items():
            assert recorded[arm][component]["predicted"] == pytest.approx(pair["predicted"], rel=1e-9)
            exact = component != "peak"  # which tensors a step frees first may move the peak a little
            assert recorded[arm][component]["measured"] == pytest.approx(pair["measured"], rel=1e-6 if exact else 0.02)
    text = cell_text("05_qlora_lab", "gpu_md")
    for arm, components in recorded.items():
        peak = components["peak"]
        assert f"| {arm} | {peak['predicted'] / 1e9:.2f} | {peak['measured'] / 1e9:.2f} |" in text, arm

    def worst(*components):
        return max(
            abs(p["measured"] / p["predicted"] - 1) for c in recorded.values() for k, p in c.items() if k in components
        )

    assert worst("weights", "gradients", "optimizer") < 0.001 and "agree to within 0.1 %" in text
    assert worst("activations") < 0.01 and "the saved activations to within 1 %" in text
    full = {k: p["measured"] for k, p in recorded["full"].items()}
    above = (full["peak"] - full["weights"] - full["gradients"] - full["optimizer"]) / 1e9
    assert f"Full fine-tuning peaks {above:.2f} GB above its 3.95" in text
    assert f"the largest is the {151_936 * 896 * 2 / 1e6:.0f} MB embedding" in text
    assert f"QLoRA keeps only {recorded['qlora']['activations']['measured'] / 1e6:.0f} MB of" in text
    from harness import ROOT

    readme = " ".join((ROOT / "README.md").read_text().split())
    peaks = {
        kind: " / ".join(f"{recorded[a]['peak'][kind] / 1e9:.2f}" for a in recorded)
        for kind in ("measured", "predicted")
    }
    assert f"peaks {peaks['measured']} GB against {peaks['predicted']} predicted" in readme
