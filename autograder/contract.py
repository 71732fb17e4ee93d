"""The exercise contract: the graded names each assignment must define and test.

Kept in the repository so a fresh clone can check itself; ``tests/test_contract.py``
keeps it in agreement with the contract document when that document is present.
"""

from __future__ import annotations

GRADED_NAMES: dict[str, tuple[str, ...]] = {
    "01_lora_basics": (
        "full_param_count",
        "lora_param_count",
        "trainable_fraction",
        "LoRALinear",
        "count_trainable_parameters",
        "inject_lora",
    ),
    "02_quantization": (
        "bytes_per_param",
        "weights_gb",
        "qlora_model_size",
        "absmax_quantize",
        "absmax_dequantize",
        "nf4_levels",
        "nf4_quantize",
        "nf4_dequantize",
        "quant_constant_bits",
    ),
    "03_metrics": (
        "confusion_matrix",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "macro_f1",
        "verdict",
        "production_ready",
        "find_leaks",
        "best_epoch",
        "paired_bootstrap_ci",
        "worth_it",
    ),
    "04_practice": tuple(f"answer_q{i}" for i in range(1, 12)),
    "05_qlora_lab": (
        "make_bnb_config",
        "make_lora_config",
        "QLoRALinear",
        "inject_qlora",
        "lab_verdict",
        "lab_worth_it",
    ),
}
