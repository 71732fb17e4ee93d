"""05_qlora_lab: plausible wrong configurations lose points; differently written right ones earn them.

The right answers run at the real grading budget (the one a class is graded with); the wrong
ones at the smoke budget, since only their own cells are examined.
"""
from __future__ import annotations

import os

import pytest

from course.lab import SMOKE_ENV
from harness import grade_answers

A = "05_qlora_lab"
AUTOGRADED = ("test_make_bnb_config", "test_make_lora_config", "test_lab_verdict", "test_only_adapters_train",
              "test_qlora_beats_frozen", "test_table_metrics")

RIGHT = {
    "make_bnb_config": '''
def make_bnb_config(compute_dtype):
    settings = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=["classifier"])
    return BitsAndBytesConfig(**settings)
''',
    # The original LoRA paper's choice: only query and value, and a little dropout.
    "make_lora_config": '''
def make_lora_config(r=8, alpha=16):
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.05, target_modules=["query", "value"], task_type="SEQ_CLS")
''',
    "lab_verdict": '''
def lab_verdict(full_finetune_f1, qlora_f1):
    points = 100 * (float(full_finetune_f1) - float(qlora_f1))
    return "good" if points <= 2 + 1e-7 else ("bad" if points > 5 + 1e-7 else "borderline")
''',
}


def bnb(**override) -> str:
    args = dict(load_in_4bit="True", bnb_4bit_quant_type='"nf4"', bnb_4bit_use_double_quant="True",
                bnb_4bit_compute_dtype="compute_dtype", llm_int8_skip_modules='["classifier"]')
    args.update(override)
    body = ", ".join(f"{k}={v}" for k, v in args.items() if v is not None)
    return f"def make_bnb_config(compute_dtype):\n    return BitsAndBytesConfig({body})"


def lora(**override) -> str:
    args = dict(task_type="TaskType.SEQ_CLS", r="r", lora_alpha="alpha", target_modules='["query", "key", "value"]')
    args.update(override)
    body = ", ".join(f"{k}={v}" for k, v in args.items() if v is not None)
    return f"def make_lora_config(r=8, alpha=16):\n    return LoraConfig({body})"


def verdict(drop: str, good: str, bad: str) -> str:
    return (f"def lab_verdict(full_finetune_f1, qlora_f1):\n    drop = {drop}\n"
            f"    if {good}:\n        return 'good'\n    if {bad}:\n        return 'bad'\n    return 'borderline'")


# Each wrong student carries mistakes in independent cells, so one run checks several.
WRONG = {
    "fp4_ffn_relative": {
        "make_bnb_config": bnb(bnb_4bit_quant_type='"fp4"'),
        "make_lora_config": lora(target_modules='["query", "key", "value", "intermediate.dense"]'),
        "lab_verdict": verdict("(full_finetune_f1 - qlora_f1) / full_finetune_f1", "drop <= 0.02", "drop > 0.05"),
    },
    "nodouble_notask_notolerance": {
        "make_bnb_config": bnb(bnb_4bit_use_double_quant=None),
        "make_lora_config": lora(task_type=None),
        "lab_verdict": verdict("full_finetune_f1 - qlora_f1", "drop <= 0.02", "drop > 0.05"),
    },
    "fixeddtype_swapped_badat5": {
        "make_bnb_config": bnb(bnb_4bit_compute_dtype="torch.bfloat16"),
        "make_lora_config": lora(r="alpha", lora_alpha="r"),
        "lab_verdict": verdict("full_finetune_f1 - qlora_f1", "drop <= 0.02 + 1e-9", "drop >= 0.05 - 1e-9"),
    },
    "head_quantized_bias_trains": {
        "make_bnb_config": bnb(llm_int8_skip_modules=None),
        "make_lora_config": lora(bias='"all"'),
    },
    # LLaMA's projection names do not exist in a BERT: PEFT refuses, and the lab cannot run.
    "llama_names": {"make_lora_config": lora(target_modules='["q_proj", "v_proj"]')},
}

EXPECTED_LOSSES = {
    "fp4_ffn_relative": {"test_make_bnb_config": "NF4", "test_make_lora_config": "outside attention",
                         "test_lab_verdict": "absolute points"},
    "nodouble_notask_notolerance": {"test_make_bnb_config": "double quantization",
                                    "test_make_lora_config": "SEQ_CLS", "test_lab_verdict": "tolerance"},
    "fixeddtype_swapped_badat5": {"test_make_bnb_config": "compute dtype", "test_make_lora_config": "defaults should be r=8, alpha=16",
                                  "test_lab_verdict": "MORE than 5"},
    "head_quantized_bias_trains": {"test_make_bnb_config": "unquantized", "test_make_lora_config": "only adapters",
                                   "test_only_adapters_train": ""},
    "llama_names": {"test_make_lora_config": "", "test_only_adapters_train": "", "test_qlora_beats_frozen": "",
                    "test_table_metrics": ""},
}


@pytest.fixture(scope="module")
def right():
    return grade_answers(A, {"right": RIGHT})["right"]


@pytest.fixture(scope="module")
def wrong():
    os.environ[SMOKE_ENV] = "1"
    try:
        return grade_answers(A, WRONG)
    finally:
        del os.environ[SMOKE_ENV]


@pytest.mark.parametrize("cell", AUTOGRADED)
def test_right_answers_written_differently_earn_full_marks(right, cell):
    assert right.full_marks(cell), right.errors.get(cell)


@pytest.mark.parametrize("student", sorted(EXPECTED_LOSSES))
def test_wrong_answers_lose_points_with_a_teaching_message(wrong, student):
    for cell, phrase in EXPECTED_LOSSES[student].items():
        assert wrong[student].score(cell) == 0, f"{student} kept its points on {cell}"
        assert phrase in wrong[student].errors.get(cell, ""), (cell, wrong[student].errors.get(cell))


def test_independent_cells_keep_their_points(wrong):
    # A student wrong only in the LoRA configuration keeps the other two functions' points.
    assert wrong["llama_names"].full_marks("test_make_bnb_config")
    assert wrong["llama_names"].full_marks("test_lab_verdict")
