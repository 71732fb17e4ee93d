"""05_qlora_lab: plausible wrong configurations lose points; differently written right ones earn them.

The right answers run at the real grading budget (the one a class is graded with); the mistakes at the
smoke budget, in a second run, since only their own cells are examined. Both configurations feed the
lab's run, so the cells after it use both: no mock student holds a mistake that changes a cell another
of its mistakes is expected to fail.
"""

from __future__ import annotations

from course.lab import SMOKE_ENV
from harness import Mistake, MistakeTable, MistakeTests

A = "05_qlora_lab"
RUN_CELLS = ("test_only_adapters_train", "test_qlora_beats_frozen", "test_table_metrics")

RIGHT = {
    "make_bnb_config": """
def make_bnb_config(compute_dtype):
    settings = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=["classifier"])
    return BitsAndBytesConfig(**settings)
""",
    # The original LoRA paper's choice: only query and value, and a little dropout.
    "make_lora_config": """
def make_lora_config(r=8, alpha=16):
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.05, target_modules=["query", "value"], task_type="SEQ_CLS")
""",
    "lab_verdict": """
def lab_verdict(full_finetune_f1, qlora_f1):
    points = 100 * (float(full_finetune_f1) - float(qlora_f1))
    return "good" if points <= 2 + 1e-7 else ("bad" if points > 5 + 1e-7 else "borderline")
""",
}


def bnb(**override) -> str:
    args = dict(
        load_in_4bit="True",
        bnb_4bit_quant_type='"nf4"',
        bnb_4bit_use_double_quant="True",
        bnb_4bit_compute_dtype="compute_dtype",
        llm_int8_skip_modules='["classifier"]',
    )
    args.update(override)
    body = ", ".join(f"{k}={v}" for k, v in args.items() if v is not None)
    return f"def make_bnb_config(compute_dtype):\n    return BitsAndBytesConfig({body})"


def lora(**override) -> str:
    args = dict(task_type="TaskType.SEQ_CLS", r="r", lora_alpha="alpha", target_modules='["query", "key", "value"]')
    args.update(override)
    body = ", ".join(f"{k}={v}" for k, v in args.items() if v is not None)
    return f"def make_lora_config(r=8, alpha=16):\n    return LoraConfig({body})"


def verdict(drop: str, good: str, bad: str) -> str:
    return (
        f"def lab_verdict(full_finetune_f1, qlora_f1):\n    drop = {drop}\n"
        f"    if {good}:\n        return 'good'\n    if {bad}:\n        return 'bad'\n    return 'borderline'"
    )


# mistake -> (answer, wrong source, {every test cell it costs: words that cell's error message must contain})
WRONG = {
    "fp4": ("make_bnb_config", bnb(bnb_4bit_quant_type='"fp4"'), {"test_make_bnb_config": "NF4"}),
    "no_double_quant": (
        "make_bnb_config",
        bnb(bnb_4bit_use_double_quant=None),
        {"test_make_bnb_config": "double quantization"},
    ),
    "fixed_compute_dtype": (
        "make_bnb_config",
        bnb(bnb_4bit_compute_dtype="torch.bfloat16"),
        {"test_make_bnb_config": "compute dtype"},
    ),
    "head_quantized": (
        "make_bnb_config",
        bnb(llm_int8_skip_modules=None),
        {
            "test_make_bnb_config": "unquantized",
            "test_only_adapters_train": "did not run",
            "test_qlora_beats_frozen": "did not run",
            "test_table_metrics": "did not run",
        },
    ),
    "ffn_targets": (
        "make_lora_config",
        lora(target_modules='["query", "key", "value", "intermediate.dense"]'),
        {"test_make_lora_config": "outside attention"},
    ),
    "no_task_type": ("make_lora_config", lora(task_type=None), {"test_make_lora_config": "SEQ_CLS"}),
    "r_alpha_swapped": (
        "make_lora_config",
        lora(r="alpha", lora_alpha="r"),
        {"test_make_lora_config": "defaults should be r=8, alpha=16"},
    ),
    "bias_trains": (
        "make_lora_config",
        lora(bias='"all"'),
        {"test_make_lora_config": "only adapters", "test_only_adapters_train": "something else requires grad"},
    ),
    # LLaMA's projection names do not exist in a BERT: PEFT refuses, and the lab cannot run.
    "llama_names": (
        "make_lora_config",
        lora(target_modules='["q_proj", "v_proj"]'),
        {
            "test_make_lora_config": "no LoRA adapter was created",
            "test_only_adapters_train": "did not run",
            "test_qlora_beats_frozen": "did not run",
            "test_table_metrics": "did not run",
        },
    ),
    "verdict_relative": (
        "lab_verdict",
        verdict("(full_finetune_f1 - qlora_f1) / full_finetune_f1", "drop <= 0.02", "drop > 0.05"),
        {"test_lab_verdict": "absolute points"},
    ),
    "verdict_no_tolerance": (
        "lab_verdict",
        verdict("full_finetune_f1 - qlora_f1", "drop <= 0.02", "drop > 0.05"),
        {"test_lab_verdict": "tolerance"},
    ),
    "verdict_bad_at_5": (
        "lab_verdict",
        verdict("full_finetune_f1 - qlora_f1", "drop <= 0.02 + 1e-9", "drop >= 0.05 - 1e-9"),
        {"test_lab_verdict": "MORE than 5"},
    ),
}

TABLE = MistakeTable(
    assignment=A,
    right=RIGHT,
    mistakes=tuple(Mistake(name, {answer: src}, loses) for name, (answer, src, loses) in WRONG.items()),
    uses={"make_bnb_config": RUN_CELLS, "make_lora_config": RUN_CELLS},
    mistake_env={SMOKE_ENV: "1"},
    # After a smoke-sized run even the right configurations may not beat the frozen baseline.
    env_sensitive=("test_qlora_beats_frozen",),
    untaught={
        ("head_quantized", "test_only_adapters_train"): "NameError (name 'kept' is not defined)",
        ("head_quantized", "test_qlora_beats_frozen"): "NameError (name 'results' is not defined)",
        ("head_quantized", "test_table_metrics"): "NameError (name 'results' is not defined)",
        ("llama_names", "test_make_lora_config"): "peft's NoMatchingPeftModuleError",
        ("llama_names", "test_only_adapters_train"): "NameError (name 'kept' is not defined)",
        ("llama_names", "test_qlora_beats_frozen"): "NameError (name 'results' is not defined)",
        ("llama_names", "test_table_metrics"): "NameError (name 'results' is not defined)",
    },
)


class TestMistakes(MistakeTests):
    table = TABLE
