"""05_qlora_lab: plausible wrong layers, injections, configurations and rules lose points; right ones
written differently earn them.

The lab's own run is not graded (the grader checks the student's code directly), so one nbgrader run
grades the whole table. A wrong layer or injection is the reference solution with one change, so that
each mistake is exactly one idea.
"""

from __future__ import annotations

import re

from autograder import notebook as nbu
from harness import Mistake, MistakeTable, MistakeTests, source_notebook

A = "05_qlora_lab"


def reference(answer: str) -> str:
    """The instructor's solution of one answer cell, solution markers removed."""
    cell = next(c for c in source_notebook(A).cells if nbu.cell_id(c) == answer)
    return re.sub(r"^ *### (BEGIN|END) SOLUTION\n", "", cell.source + "\n", flags=re.M)


def changed(answer: str, *edits: tuple[str, str]) -> str:
    """The reference ``answer`` with each ``(old, new)`` replaced (each ``old`` must occur exactly once)."""
    source = reference(answer)
    for old, new in edits:
        assert source.count(old) == 1, f"{answer}: {old!r} occurs {source.count(old)} times in the reference"
        source = source.replace(old, new)
    return source


RIGHT = {
    "make_bnb_config": """
def make_bnb_config(compute_dtype):
    settings = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=["classifier"])
    return BitsAndBytesConfig(**settings)
""",
    "make_lora_config": """
def make_lora_config(r=8, alpha=16):
    # Every linear layer of a BERT by name: query, key, value, and the three "dense" ones (and the pooler's).
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.1, target_modules=["query", "key", "value", "dense"],
                      task_type="SEQ_CLS")
""",
    "QLoRALinear": """
class QLoRALinear(nn.Module):
    # Low nibble first, an asymmetric 8-bit code for the constants, F.linear in forward.

    def __init__(self, base, r=8, alpha=16.0, block_size=64, double_quant=True):
        super().__init__()
        self.out_features, self.in_features = base.weight.shape
        self.block_size, self.double_quant, self.r = block_size, double_quant, r
        flat = base.weight.detach().to(torch.float32).flatten().view(-1, block_size)
        scale = flat.abs().max(dim=1).values
        safe = scale.clone()
        safe[safe == 0] = 1.0
        idx = torch.bucketize(flat / safe[:, None], (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2)
        # bucketize puts a value equal to a midpoint in the upper level; nearest-level ties are rare
        idx = idx.flatten().to(torch.uint8)
        self.register_buffer("codes", idx[0::2] | (idx[1::2] << 4))
        if double_quant:
            lo, hi = scale.min(), scale.max()
            step = (hi - lo) / 255 if hi > lo else torch.tensor(1.0)
            self.register_buffer("c_q", torch.round((scale - lo) / step).to(torch.uint8))
            self.register_buffer("c_lo_step", torch.stack([lo, step]).float())
        else:
            self.register_buffer("c", scale)
        self.register_buffer("b", None if base.bias is None else base.bias.detach().clone())
        self.lora_A = nn.Parameter(torch.randn(r, self.in_features) / r)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r))
        self.scaling = float(alpha) / r

    def dequantized_weight(self):
        low, high = self.codes & 0xF, self.codes >> 4
        idx = torch.empty(self.codes.numel() * 2, dtype=torch.long)
        idx[0::2], idx[1::2] = low.long(), high.long()
        if self.double_quant:
            scale = self.c_q.float() * self.c_lo_step[1] + self.c_lo_step[0]
        else:
            scale = self.c
        w = NF4_LEVELS[idx].view(-1, self.block_size) * scale.unsqueeze(1)
        return w.view(self.out_features, self.in_features)

    def forward(self, x):
        w = self.dequantized_weight().to(x.dtype)
        b = None if self.b is None else self.b.to(x.dtype)
        update = F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype))
        return F.linear(x, w, b) + update * self.scaling

    def weight_bytes(self):
        return sum(t.numel() * t.element_size() for n, t in self.named_buffers() if n != "b")
""",
    "inject_qlora": """
def inject_qlora(model, r=8, alpha=16.0, targets="all-linear"):
    def wanted(path, name):
        return path != HEAD and (targets == "all-linear" or name in set(targets))

    def walk(module, prefix):
        for name, child in list(module.named_children()):
            path = prefix + name
            if type(child) is nn.Linear and wanted(path, name):
                setattr(module, name, QLoRALinear(child, r, alpha))
            else:
                walk(child, path + ".")

    model.requires_grad_(False)
    walk(model, "")
    for name, p in model.named_parameters():
        if name.endswith(("lora_A", "lora_B")) or name.startswith(HEAD + "."):
            p.requires_grad_(True)
    return model
""",
    "lab_verdict": """
def lab_verdict(full_finetune_f1, qlora_f1):
    points = 100 * (float(full_finetune_f1) - float(qlora_f1))
    return "good" if points <= 2 + 1e-7 else ("bad" if points > 5 + 1e-7 else "borderline")
""",
    "lab_worth_it": """
def lab_worth_it(full, qlora):
    lost_accuracy = float(full["accuracy"]) - float(qlora["accuracy"])
    lost_recall = float(full["recall"]) - float(qlora["recall"])
    worst = max(lost_accuracy, lost_recall)
    if worst > 0.05 + 1e-9:
        return "bad"
    cheaper = float(qlora["memory_mb"]) < float(full["memory_mb"])
    return "good" if worst <= 0.02 + 1e-9 and cheaper else "borderline"
""",
    "paired_bootstrap_ci": """
import numpy as np


def paired_bootstrap_ci(y_true, pred_a, pred_b, metric, n_boot=1000, seed=0, level=0.95):
    y, a, b = map(np.asarray, (y_true, pred_a, pred_b))
    gen = np.random.default_rng(seed)
    samples = np.empty(n_boot)
    for k in range(n_boot):
        pick = gen.choice(len(y), size=len(y), replace=True)
        samples[k] = metric(y[pick], a[pick]) - metric(y[pick], b[pick])
    return tuple(float(q) for q in np.percentile(samples, [50 * (1 - level), 50 * (1 + level)]))
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
    args = dict(task_type="TaskType.SEQ_CLS", r="r", lora_alpha="alpha", target_modules='"all-linear"')
    args.update(override)
    body = ", ".join(f"{k}={v}" for k, v in args.items() if v is not None)
    return f"def make_lora_config(r=8, alpha=16):\n    return LoraConfig({body})"


def verdict(drop: str, good: str, bad: str) -> str:
    return (
        f"def lab_verdict(full_finetune_f1, qlora_f1):\n    drop = {drop}\n"
        f"    if {good}:\n        return 'good'\n    if {bad}:\n        return 'bad'\n    return 'borderline'"
    )


def layer(*edits: tuple[str, str]) -> str:
    return changed("QLoRALinear", *edits)


def inject(*edits: tuple[str, str]) -> str:
    return changed("inject_qlora", *edits)


UNPACK = "codes = torch.stack([self.packed >> 4, self.packed & 0x0F], dim=1)"
SCALING = "self.scaling = alpha / r"

# mistake -> (answer, wrong source, {every test cell it costs: words that cell's error message must contain})
WRONG = {
    # w / absmax computed in the layer's own dtype: a bfloat16 layer gets other codes than bitsandbytes'.
    "quantized_in_own_dtype": (
        "QLoRALinear",
        layer(("weight = base.weight.detach().float()", "weight = base.weight.detach()")),
        {"test_QLoRALinear_dequantize": "Read the base weight in float32 first"},
    ),
    "nibble_order": (
        "QLoRALinear",
        layer((UNPACK, "codes = torch.stack([self.packed & 0x0F, self.packed >> 4], dim=1)")),
        {
            "test_QLoRALinear_dequantize": "neighbouring weights comes back swapped",
            "test_QLoRALinear_double_quant": "moved by",
            "test_QLoRALinear_forward": "with B = 0 the output must be the 4-bit base layer's",
            "test_inject_qlora": "differ from the 4-bit base model's",
        },
    ),
    "whole_tensor_absmax": (
        "QLoRALinear",
        layer(("absmax = blocks.abs().amax(dim=1)", "absmax = blocks.abs().max().expand(len(blocks))")),
        {
            "test_QLoRALinear_dequantize": "ONE absmax for the whole tensor",
            "test_QLoRALinear_double_quant": "moved by",
            "test_QLoRALinear_forward": "with B = 0 the output must be the 4-bit base layer's",
            "test_inject_qlora": "differ from the 4-bit base model's",
        },
    ),
    "double_quant_missing": (
        "QLoRALinear",
        layer(
            ("self.block_size, self.double_quant = block_size, double_quant", "self.block_size = block_size"),
            (
                "if double_quant:\n            # The constants",
                "self.double_quant = False\n        if False:\n            # The constants",
            ),
        ),
        {"test_QLoRALinear_double_quant": "so it must be smaller"},
    ),
    "codes_not_packed": (
        "QLoRALinear",
        layer(
            (
                'self.register_buffer("packed", (codes[0::2] << 4) | codes[1::2])',
                'self.register_buffer("packed", codes)',
            ),
            (UNPACK, "codes = self.packed.long()\n        codes = torch.stack([codes], dim=1)"),
        ),
        {
            "test_QLoRALinear_structure": "pack two 4-bit codes into every uint8",
            "test_QLoRALinear_double_quant": "73,728 bytes",
        },
    ),
    # The unpacked codes kept under a private name, with a zero "packed" buffer as a decoy: the count
    # of what the layer stores sees every attribute.
    "codes_hidden_unpacked": (
        "QLoRALinear",
        layer(
            (
                'self.register_buffer("packed", (codes[0::2] << 4) | codes[1::2])',
                'self._codes = codes\n        self.register_buffer("packed", torch.zeros(len(codes) // 2, dtype=torch.uint8))',
            ),
            (UNPACK, "codes = torch.stack([self._codes.long()], dim=1)"),
        ),
        {"test_QLoRALinear_structure": "pack two 4-bit codes into every uint8"},
    ),
    # The codes kept as a Python list (no tensor to count), with a zero "packed" buffer as a decoy:
    # the packed bytes must hold the weight's codes.
    "codes_in_a_list_packed_decoy": (
        "QLoRALinear",
        layer(
            (
                'self.register_buffer("packed", (codes[0::2] << 4) | codes[1::2])',
                'self._codes = codes.tolist()\n        self.register_buffer("packed", torch.zeros(len(codes) // 2, dtype=torch.uint8))',
            ),
            (UNPACK, "codes = torch.tensor(self._codes)[:, None]"),
        ),
        {"test_QLoRALinear_structure": "does not hold the weight's codes"},
    ),
    "A_not_trained": (
        "QLoRALinear",
        layer(
            (
                "nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))",
                "nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))\n        self.lora_A.requires_grad_(False)",
            )
        ),
        {"test_QLoRALinear_trains": "lora_A receives no gradient"},
    ),
    "scaling_r_over_alpha": (
        "QLoRALinear",
        layer((SCALING, "self.scaling = r / alpha")),
        {
            "test_QLoRALinear_structure": "not r / alpha",
            "test_QLoRALinear_forward": "scaled by r / alpha",
            "test_inject_qlora": "scaling r / alpha",
        },
    ),
    "output_in_float32": (
        "QLoRALinear",
        layer(
            (
                "out = x @ self.dequantized_weight().to(x.dtype).T",
                "x = x.float()\n        out = x @ self.dequantized_weight().T",
            )
        ),
        {"test_QLoRALinear_forward": "dequantize to the input's dtype"},
    ),
    "bias_forgotten": (
        "QLoRALinear",
        layer(("        if self.bias is not None:\n            out = out + self.bias.to(x.dtype)\n", "")),
        # test_inject_qlora cannot see it: a fresh BERT's biases are zero.
        {"test_QLoRALinear_forward": "with B = 0 the output must be the 4-bit base layer's"},
    ),
    "bias_trains": (
        "QLoRALinear",
        layer(
            (
                "nn.Parameter(base.bias.detach().clone(), requires_grad=False)",
                "nn.Parameter(base.bias.detach().clone())",
            )
        ),
        {"test_QLoRALinear_trains": "also receive gradients"},
    ),
    "inject_qkv_only": (
        "inject_qlora",
        inject(
            (
                'if targets == "all-linear" or name in targets:',
                'if name in (["query", "key", "value"] if targets == "all-linear" else targets):',
            )
        ),
        {"test_inject_qlora": "wrapped only query, key and value"},
    ),
    "inject_wraps_head": (
        "inject_qlora",
        inject(
            (
                'if not isinstance(child, nn.Linear) or path.split(".")[0] == HEAD:',
                "if not isinstance(child, nn.Linear):",
            )
        ),
        {"test_inject_qlora": "wrap all"},
    ),
    "inject_no_freeze": (
        "inject_qlora",
        inject(('p.requires_grad = "lora_" in pname or pname.split(".")[0] == HEAD', "p.requires_grad = True")),
        {"test_inject_qlora": "parameters train, expected"},
    ),
    "fp4": ("make_bnb_config", bnb(bnb_4bit_quant_type='"fp4"'), {"test_make_bnb_config": "NF4"}),
    "bnb_no_double_quant": (
        "make_bnb_config",
        bnb(bnb_4bit_use_double_quant=None),
        {"test_make_bnb_config": "double quantization is off"},
    ),
    "fixed_compute_dtype": (
        "make_bnb_config",
        bnb(bnb_4bit_compute_dtype="torch.bfloat16"),
        {"test_make_bnb_config": "pass compute_dtype through"},
    ),
    "head_quantized": ("make_bnb_config", bnb(llm_int8_skip_modules=None), {"test_make_bnb_config": "unquantized"}),
    "lora_qkv_only": (
        "make_lora_config",
        lora(target_modules='["query", "key", "value"]'),
        {"test_make_lora_config": "only on query, key and value"},
    ),
    "no_task_type": ("make_lora_config", lora(task_type=None), {"test_make_lora_config": "SEQ_CLS"}),
    "r_alpha_swapped": (
        "make_lora_config",
        lora(r="alpha", lora_alpha="r"),
        {"test_make_lora_config": "defaults should be r=8, alpha=16"},
    ),
    "lora_bias_trains": ("make_lora_config", lora(bias='"all"'), {"test_make_lora_config": "leave bias='none'"}),
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
    "worth_accuracy_only": (
        "lab_worth_it",
        changed("lab_worth_it", ('for key in ("accuracy", "recall")', 'for key in ("accuracy",)')),
        {"test_lab_worth_it": "recall 4.5 points down"},
    ),
    "worth_memory_ignored": (
        "lab_worth_it",
        changed("lab_worth_it", (' and qlora["memory_mb"] < full["memory_mb"]', "")),
        {"test_lab_worth_it": "less memory"},
    ),
    "bootstrap_b_minus_a": (
        "paired_bootstrap_ci",
        changed(
            "paired_bootstrap_ci",
            ("metric(y[idx], a[idx]) - metric(y[idx], b[idx])", "metric(y[idx], b[idx]) - metric(y[idx], a[idx])"),
        ),
        {"test_paired_bootstrap_ci": "metric(b) - metric(a)"},
    ),
}

TABLE = MistakeTable(
    assignment=A,
    right=RIGHT,
    mistakes=tuple(Mistake(name, {answer: src}, loses) for name, (answer, src, loses) in WRONG.items()),
    # The reference inject_qlora builds the student's QLoRALinear.
    uses={"QLoRALinear": ("test_inject_qlora",)},
)


class TestMistakes(MistakeTests):
    table = TABLE
