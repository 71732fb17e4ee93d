"""01_lora_basics: each plausible mistake loses its points and is named; right answers written differently pass.

The answers are declared here; ``harness.MistakeTable`` packs the mistakes into mock students (never a wrong
``LoRALinear`` with a mistake whose cells would feel it: ``inject_lora``'s cells run ``LoRALinear`` too) and
grades them in one nbgrader run with a student holding a correct but differently written answer for every
graded name. The LoRA layers' float-valued mistakes are graded again with one and with two math threads.
"""

from __future__ import annotations

from harness import FloatMistakeTests, Mistake, MistakeTable, MistakeTests

A = "01_lora_basics"

# --- correct, but written differently from the reference --------------------------------------

RIGHT = {
    # A NumPy integer, and the bias folded into a product.
    "full_param_count": '''
def full_param_count(d_in, d_out, bias=True):
    """Parameters of a dense layer."""
    return np.int64(d_out) * (d_in + int(bool(bias)))
''',
    # A 0-d torch tensor, and the rank test written the other way round.
    "lora_param_count": '''
def lora_param_count(d_in, d_out, r):
    """Parameters LoRA adds."""
    if not r >= 1:
        raise ValueError("the rank must be a positive integer")
    return torch.tensor(r * d_in + r * d_out)
''',
    # Exact rational arithmetic, returned as a NumPy float; no call to the other two functions.
    "trainable_fraction": '''
def trainable_fraction(d_in, d_out, r, bias=True):
    """LoRA's trainable share."""
    from fractions import Fraction
    adapter = r * (d_in + d_out)
    frozen = d_out * d_in + (d_out if bias else 0)
    return np.float64(float(Fraction(adapter, frozen + adapter)))
''',
    # A drawn Gaussian with std 1/r, as the LoRA paper does (PEFT's init_lora_weights="gaussian"),
    # forward through F.linear, merged weight through addmm.
    "LoRALinear": '''
class LoRALinear(nn.Module):
    """A frozen linear layer plus a low-rank update."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0):
        super().__init__()
        base.weight.requires_grad = False
        if base.bias is not None:
            base.bias.requires_grad = False
        self.base = base
        self.scaling = float(alpha) / r
        like = dict(dtype=base.weight.dtype, device=base.weight.device)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **like).normal_(0.0, 1.0 / r))
        self.lora_B = nn.Parameter(base.weight.new_zeros(base.out_features, r))

    def forward(self, x):
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)
        return self.base(x) + update * self.scaling

    def merged_weight(self):
        return torch.addmm(self.base.weight, self.lora_B, self.lora_A, alpha=self.scaling).detach()
''',
    # Counting through named_parameters with explicit de-duplication.
    "count_trainable_parameters": '''
def count_trainable_parameters(model):
    """Trainable elements."""
    seen, total = set(), 0
    for _, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
''',
    # A recursive walk; freezing afterwards by parameter name.
    "inject_lora": '''
def inject_lora(model, target_modules, r=8, alpha=16.0):
    """Wrap the targets in LoRALinear."""
    wanted = tuple(target_modules)

    def visit(module):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name in wanted:
                setattr(module, name, LoRALinear(child, r=r, alpha=alpha))
            else:
                visit(child)

    visit(model)
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith("lora_A") or name.endswith("lora_B"))
    return model
''',
}

# --- wrong LoRALinear classes, built from the reference by swapping one piece ----------------

_LORA = """
class LoRALinear(nn.Module):
    def __init__(self, base, r=8, alpha=16.0):
        super().__init__()
        self.base = base
        {freeze}
        self.scaling = {scaling}
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty({a_shape}, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        {init_a}
        {init_b}

    def forward(self, x):
        return {forward}

    def merged_weight(self):
        {merged}
"""
_GOOD = dict(
    freeze="base.requires_grad_(False)",
    scaling="alpha / r",
    a_shape="r, base.in_features",
    init_a="nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))",
    init_b="pass",
    forward="self.base(x) + self.scaling * (x @ self.lora_A.T @ self.lora_B.T)",
    merged="return self.base.weight + self.scaling * (self.lora_B @ self.lora_A)",
)


def lora(**changes: str) -> str:
    return _LORA.format(**{**_GOOD, **changes})


WRONG_LORA = {
    "scaling_alpha": lora(scaling="alpha"),
    "random_b": lora(init_b="nn.init.normal_(self.lora_B, std=0.02)"),
    "transposed_a": lora(
        a_shape="base.in_features, r",
        forward="self.base(x) + self.scaling * (x @ self.lora_A @ self.lora_B.T)",
        merged="return self.base.weight + self.scaling * (self.lora_B @ self.lora_A.T)",
    ),
    # Two independent slips: the bias is dropped in forward (forward cell), A is drawn N(0, 1) (structure cell).
    "no_bias_randn_a": lora(
        forward="x @ self.base.weight.T + self.scaling * (x @ self.lora_A.T @ self.lora_B.T)",
        init_a="nn.init.normal_(self.lora_A)",
    ),
    # Two independent slips: the base stays trainable (structure cell), merging writes into it (merge cell).
    "inplace_merge_unfrozen": lora(
        freeze="pass",
        merged="self.base.weight.data += self.scaling * (self.lora_B @ self.lora_A).detach()\n        return self.base.weight",
    ),
}

WRONG_INJECT = {
    "top_level_only": """
def inject_lora(model, target_modules, r=8, alpha=16.0):
    model.requires_grad_(False)
    for name, child in list(model.named_children()):
        if name in target_modules and isinstance(child, nn.Linear):
            setattr(model, name, LoRALinear(child, r=r, alpha=alpha))
    return model
""",
    "substring_match": """
def inject_lora(model, target_modules, r=8, alpha=16.0):
    model.requires_grad_(False)
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear) and any(t in name for t in target_modules)]
    for parent, name, child in found:
        setattr(parent, name, LoRALinear(child, r=r, alpha=alpha))
    return model
""",
    "no_return": """
def inject_lora(model, target_modules, r=8, alpha=16.0):
    model.requires_grad_(False)
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear) and name in target_modules]
    for parent, name, child in found:
        setattr(parent, name, LoRALinear(child, r=r, alpha=alpha))
""",
    "no_freeze": """
def inject_lora(model, target_modules, r=8, alpha=16.0):
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear) and name in target_modules]
    for parent, name, child in found:
        setattr(parent, name, LoRALinear(child, r=r, alpha=alpha))
    return model
""",
}

WRONG_SIMPLE = {
    "full_no_bias": ("full_param_count", "def full_param_count(d_in, d_out, bias=True):\n    return d_in * d_out"),
    "full_bias_per_input": (
        "full_param_count",
        "def full_param_count(d_in, d_out, bias=True):\n    return d_in * d_out + (d_in if bias else 0)",
    ),
    "lora_no_error": ("lora_param_count", "def lora_param_count(d_in, d_out, r):\n    return r * (d_in + d_out)"),
    "lora_full_matrices": (
        "lora_param_count",
        "def lora_param_count(d_in, d_out, r):\n"
        "    if r < 1:\n        raise ValueError(r)\n    return r * d_in * d_out",
    ),
    "lora_assumes_square": (
        "lora_param_count",
        "def lora_param_count(d_in, d_out, r):\n    if r < 1:\n        raise ValueError(r)\n    return 2 * r * d_in",
    ),
    "frac_over_full": (
        "trainable_fraction",
        "def trainable_fraction(d_in, d_out, r, bias=True):\n"
        "    return r * (d_in + d_out) / (d_in * d_out + (d_out if bias else 0))",
    ),
    "frac_percent": (
        "trainable_fraction",
        "def trainable_fraction(d_in, d_out, r, bias=True):\n"
        "    lora = r * (d_in + d_out)\n    return 100 * lora / (d_in * d_out + (d_out if bias else 0) + lora)",
    ),
    "frac_ignores_bias": (
        "trainable_fraction",
        "def trainable_fraction(d_in, d_out, r, bias=True):\n"
        "    lora = r * (d_in + d_out)\n    return lora / (d_in * d_out + lora)",
    ),
    "count_all": (
        "count_trainable_parameters",
        "def count_trainable_parameters(model):\n    return sum(p.numel() for p in model.parameters())",
    ),
    "count_tensors": (
        "count_trainable_parameters",
        "def count_trainable_parameters(model):\n    return sum(1 for p in model.parameters() if p.requires_grad)",
    ),
}

# mistake -> {every test cell it costs: words that cell's error message must contain}
LOSES = {
    "full_no_bias": {
        "test_full_param_count": "bias",
        # The student's own trainable_fraction counts with the student's full_param_count.
        "test_trainable_fraction": "should be 6,144 / (147,840 + 6,144)",
    },
    "full_bias_per_input": {
        "test_full_param_count": "one entry per OUTPUT",
        # Square layers hide it (d_in == d_out): the first non-square case catches it.
        "test_trainable_fraction": "expected lora / (full + lora)",
    },
    "lora_no_error": {"test_lora_param_count": "must raise ValueError"},
    "lora_full_matrices": {
        "test_lora_param_count": "not r full-size matrices",
        "test_trainable_fraction": "should be 6,144 / (147,840 + 6,144)",
        "test_headline_gpt3": "fix lora_param_count above first",
    },
    "lora_assumes_square": {
        "test_lora_param_count": "count the entries of A (r, d_in) and of B (d_out, r)",
        "test_trainable_fraction": "expected lora / (full + lora)",
        "test_headline_gpt3": "at GPT-3's widths too the adapter is r * (d_in + d_out)",
    },
    "frac_over_full": {"test_trainable_fraction": "ALL the adapted layer's parameters"},
    "frac_percent": {"test_trainable_fraction": "not a percentage"},
    "frac_ignores_bias": {"test_trainable_fraction": "its bias"},
    "count_all": {"test_count_trainable_parameters": "requires_grad"},
    "count_tensors": {"test_count_trainable_parameters": "elements (numel)"},
    "scaling_alpha": {
        "test_LoRALinear_structure": "alpha / r",
        "test_LoRALinear_forward": "r times too strong",
        "test_LoRALinear_peft": "scaling differs from PEFT",
        "test_inject_lora_minilm": "check the scaling (alpha / r)",
        "test_LoRALinear_merge": "scaled by alpha",
    },
    "random_b": {
        "test_LoRALinear_structure": "lora_B must start at zero",
        "test_LoRALinear_forward": "B starts at zero",
        "test_LoRALinear_peft": "PEFT starts B at zero",
        "test_inject_lora_minilm": "must start exactly where the pretrained model is",
        "test_LoRALinear_merge": "with B = 0 the merged weight is W itself",
    },
    "transposed_a": {
        "test_LoRALinear_structure": "transposed A",
        "test_LoRALinear_forward": "(r, in_features)",
        "test_LoRALinear_peft": "a transposed A?",
        "test_inject_lora_minilm": "transposed",  # untaught: a RuntimeError today
        "test_LoRALinear_merge": "transposed",  # untaught: a RuntimeError today
    },
    "no_bias_randn_a": {
        "test_LoRALinear_structure": "Kaiming-uniform",
        "test_LoRALinear_forward": "bias included",
        "test_LoRALinear_peft": "Kaiming-uniform, a = sqrt(5)",
        "test_inject_lora_minilm": "must start exactly where the pretrained model is",
        "test_LoRALinear_merge": "merging must not change the outputs",
    },
    "inplace_merge_unfrozen": {
        "test_LoRALinear_structure": "must be frozen",
        "test_LoRALinear_forward": "freeze it (requires_grad=False)",
        "test_LoRALinear_merge": "return a NEW tensor",
    },
    "top_level_only": {"test_inject_lora": "every level of the model", "test_inject_lora_minilm": "110,592"},
    "substring_match": {"test_inject_lora": "only CONTAINS a target"},
    "no_return": {
        "test_inject_lora": "must return the model",
        "test_inject_lora_minilm": "must return the model",  # untaught: an AttributeError today
    },
    "no_freeze": {"test_inject_lora": "freeze every other parameter", "test_inject_lora_minilm": "110,592"},
}

# Cells that lose their points to a mistake, but through a bare exception instead of a teaching message.
UNTAUGHT = {
    ("transposed_a", "test_inject_lora_minilm"): "RuntimeError (tensor sizes 384 and 8 do not match)",
    ("transposed_a", "test_LoRALinear_merge"): "RuntimeError (mat1 and mat2 shapes cannot be multiplied)",
    ("no_return", "test_inject_lora_minilm"): "AttributeError ('NoneType' object has no attribute 'parameters')",
}

ANSWERS = {
    **{k: ("LoRALinear", src) for k, src in WRONG_LORA.items()},
    **{k: ("inject_lora", src) for k, src in WRONG_INJECT.items()},
    **WRONG_SIMPLE,
}

TABLE = MistakeTable(
    assignment=A,
    right=RIGHT,
    mistakes=tuple(Mistake(name, {ANSWERS[name][0]: ANSWERS[name][1]}, loses) for name, loses in LOSES.items()),
    uses={
        # inject_lora wraps layers in the student's LoRALinear; the reference trainable_fraction calls both counts.
        "LoRALinear": ("test_inject_lora", "test_inject_lora_minilm"),
        "full_param_count": ("test_trainable_fraction",),
        "lora_param_count": ("test_trainable_fraction", "test_headline_gpt3"),
    },
    untaught=UNTAUGHT,
)


class TestMistakes(MistakeTests):
    table = TABLE

    def test_every_variant_is_in_the_table(self):
        assert sorted(LOSES) == sorted(ANSWERS)


# --- float rounding: the same messages with one math thread and with two ---------------------


class TestFloatMistakes(FloatMistakeTests):
    table = TABLE.only(list(WRONG_LORA))
