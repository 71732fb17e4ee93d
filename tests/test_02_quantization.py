"""02_quantization: each graded name rejects a plausible mistake (and says which) and accepts a different right answer.

One nbgrader run grades every variant. The wrong answers are spread over four mock students so
that no student holds two mistakes whose test cells could interfere (weights_gb uses
bytes_per_param, the NF4 functions use nf4_levels); the hidden tests also grade each name with
known-good helpers in place, so the cells stay independent.
"""
from __future__ import annotations

import pytest

from autograder import notebook as nbu
from harness import ROOT, grade_answers, source_notebook

A = "02_quantization"

RIGHT = {
    "bytes_per_param": '''
def bytes_per_param(dtype):
    if dtype == "fp32":
        return 4
    elif dtype in ("fp16", "bf16"):
        return 2
    elif dtype == "int8":
        return 1
    elif dtype in ("int4", "nf4", "fp4"):
        return 0.5
    raise ValueError("unknown format: " + str(dtype))
''',
    "weights_gb": '''
def weights_gb(n_params, dtype):
    return bytes_per_param(dtype) * n_params * 1e-9
''',
    "qlora_model_size": '''
def qlora_model_size(model_size, lora_size, quantization_factor):
    import math
    total = model_size + lora_size
    return math.trunc(total * quantization_factor)
''',
    "absmax_quantize": '''
def absmax_quantize(x, bits=8):
    qmax = (1 << (bits - 1)) - 1
    m = float(x.abs().max())
    scale = m / qmax if m > 0 else 1.0
    q = (x / scale).round().clamp(-qmax, qmax).to(torch.int8)
    return q, scale
''',
    "absmax_dequantize": '''
def absmax_dequantize(q, scale):
    return q.to(torch.float32).mul(scale)
''',
    "nf4_levels": '''
def nf4_levels():
    from statistics import NormalDist
    inv = NormalDist().inv_cdf
    def probs(k):
        return [NF4_OFFSET + (0.5 - NF4_OFFSET) * i / (k - 1) for i in range(k - 1)]
    values = sorted([inv(p) for p in probs(9)] + [-inv(p) for p in probs(8)] + [0.0])
    top = max(abs(v) for v in values)
    return torch.tensor([v / top for v in values], dtype=torch.float32)
''',
    "nf4_quantize": '''
def nf4_quantize(x, block_size=64):
    flat = x.reshape(-1).to(torch.float32)
    n_blocks = flat.numel() // block_size
    absmax = torch.stack([flat[i * block_size:(i + 1) * block_size].abs().max() for i in range(n_blocks)])
    divisor = absmax.clone()
    divisor[divisor == 0] = 1.0
    normed = flat / divisor.repeat_interleave(block_size)
    levels = nf4_levels()
    codes = torch.bucketize(normed, (levels[1:] + levels[:-1]) / 2)
    return codes.to(torch.uint8), absmax
''',
    "nf4_dequantize": '''
def nf4_dequantize(codes, absmax, block_size=64):
    table = nf4_levels()
    return absmax.float().repeat_interleave(block_size) * table[codes.flatten().to(torch.int64)]
''',
    "quant_constant_bits": '''
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    bits = 32 / block_size
    if double_quant:
        bits = (8 + 32 / block_size2) / block_size
    return bits
''',
}

# student -> {graded name: (wrong source, words the failing test's message must contain)}
WRONG = {
    "wrong_1": {
        "bytes_per_param": ('''
def bytes_per_param(dtype):
    bits = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4, "nf4": 4, "fp4": 4}
    if dtype not in bits:
        raise ValueError(dtype)
    return bits[dtype]
''', "that is bits"),
        "absmax_quantize": ('''
def absmax_quantize(x, bits=8):
    m = x.abs().max()
    scale = m / (2 ** (bits - 1) - 1) if m > 0 else torch.tensor(1.0)
    return (x / scale).to(torch.int8), scale
''', "truncated toward zero"),
        "nf4_levels": ('''
def nf4_levels():
    return torch.linspace(-1, 1, 16)
''', "equally spaced"),
        "quant_constant_bits": ('''
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    return 8 / block_size if double_quant else 32 / block_size
''', "forgetting the second-level constants"),
        "qlora_model_size": ('''
def qlora_model_size(model_size, lora_size, quantization_factor):
    return model_size + lora_size * quantization_factor
''', "multiplying before adding"),
    },
    "wrong_2": {
        "weights_gb": ('''
def weights_gb(n_params, dtype):
    return n_params * bytes_per_param(dtype) / 2**30
''', "GiB"),
        "absmax_dequantize": ('''
def absmax_dequantize(q, scale):
    return q.float() / scale
''', "dequantizing multiplies"),
        "nf4_quantize": ('''
def nf4_quantize(x, block_size=64):
    flat = x.reshape(-1).float()
    m = flat.abs().max()
    codes = (flat[:, None] / m - nf4_levels()).abs().argmin(dim=1)
    return codes.to(torch.uint8), m.repeat(flat.numel() // block_size)
''', "one global absmax"),
        "nf4_dequantize": ('''
def nf4_dequantize(codes, absmax, block_size=64):
    values = nf4_levels()[codes.long()]
    return values * absmax.float().repeat(block_size)
''', "do not tile"),
        "qlora_model_size": ('''
def qlora_model_size(model_size, lora_size, quantization_factor):
    return round((model_size + lora_size) * quantization_factor)
''', "rounding instead of truncating"),
    },
    "wrong_3": {
        "bytes_per_param": ('''
def bytes_per_param(dtype):
    return {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 1, "nf4": 1, "fp4": 1}.get(dtype, 0)
''', "two parameters share one byte"),
        "absmax_quantize": ('''
def absmax_quantize(x, bits=8):
    scale = x.abs().max() / 2 ** (bits - 1)
    return torch.round(x / scale).to(torch.int8), scale
''', "2**(bits-1) - 1"),
        "nf4_levels": ('''
def nf4_levels():
    v = torch.special.ndtri(torch.linspace(1 - NF4_OFFSET, NF4_OFFSET, 16, dtype=torch.float64))
    return (v / v.abs().max()).float()
''', "exact zero"),
        "quant_constant_bits": ('''
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    if double_quant:
        return 8 / block_size + 32 / block_size2
    return 32 / block_size
''', "not by 256"),
        "qlora_model_size": ('''
def qlora_model_size(model_size, lora_size, quantization_factor):
    return (model_size + lora_size) * quantization_factor // 1
''', "return an int"),
    },
    "wrong_4": {
        "weights_gb": ('''
def weights_gb(n_params, dtype):
    return n_params * bytes_per_param(dtype) * 8 / 1e9
''', "counted bits"),
        "absmax_dequantize": ('''
def absmax_dequantize(q, scale):
    return q.float() * scale / 127
''', "multiplies each code by the scale"),
        "nf4_quantize": ('''
def nf4_quantize(x, block_size=64):
    blocks = x.reshape(-1, block_size).float()
    absmax = blocks.abs().amax(dim=1)
    scaled = blocks / absmax.clamp(min=1e-30)[:, None]
    levels = nf4_levels()
    codes = (torch.searchsorted(levels, scaled.reshape(-1), right=True) - 1).clamp(0, 15)
    return codes.to(torch.uint8), absmax
''', "level just below"),
        "nf4_dequantize": ('''
def nf4_dequantize(codes, absmax, block_size=64):
    return codes.float() * absmax.float().repeat_interleave(block_size)
''', "multiplied directly"),
        "quant_constant_bits": ('''
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    return 32 / block_size
''', "double quantization"),
        "qlora_model_size": ('''
def qlora_model_size(model_size, lora_size, quantization_factor):
    return int(model_size * quantization_factor + lora_size)
''', "base model only"),
    },
}

GRADED = list(RIGHT)
CASES = [(student, name) for student, answers in WRONG.items() for name in answers]


@pytest.fixture(scope="module")
def graded():
    variants = {"right_rewritten": {name: src.strip() for name, src in RIGHT.items()}}
    for student, answers in WRONG.items():
        variants[student] = {name: src.strip() for name, (src, _) in answers.items()}
    return grade_answers(A, variants)


def test_every_graded_name_has_a_wrong_variant():
    assert {name for _, name in CASES} == set(GRADED)


def test_rewritten_right_answers_earn_full_marks(graded):
    g = graded["right_rewritten"]
    lost = {c.cell: g.errors.get(c.cell) for c in g.grade.cells if c.score != c.max_score}
    assert not lost, lost
    assert g.grade.score == g.grade.max_score == 19


@pytest.mark.parametrize("student,name", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_wrong_answer_loses_points_and_names_the_mistake(graded, student, name):
    g = graded[student]
    cell = f"test_{name}"
    assert g.score(cell) == 0, f"{student}'s wrong {name} earned {g.score(cell)} points"
    error = g.errors.get(cell, "")
    assert error.startswith("AssertionError: "), f"{cell} should fail on an assertion, not {error[:200]!r}"
    words = WRONG[student][name][1]
    assert words.lower() in error.lower(), f"{cell}: the message should mention {words!r}; got {error!r}"


def test_wrong_students_keep_the_points_of_their_right_answers(graded):
    for student, answers in WRONG.items():
        g = graded[student]
        wrong_cells = {f"test_{n}" for n in answers}
        # a wrong answer in one cell never costs a cell whose own answer was left right
        for c in g.grade.cells:
            if c.cell not in wrong_cells:
                assert c.score == c.max_score, f"{student}: {c.cell} lost points ({g.errors.get(c.cell)})"


def _cells(folder: str) -> dict[str, str]:
    nb = nbu.read_notebook(ROOT / folder / A / f"{A}.ipynb")
    return {nbu.cell_id(c) or c.get("id"): c.source for c in nb.cells}


def test_release_shows_the_seed_bug_but_not_the_fix():
    cell = _cells("release")["qlora_model_size"]
    assert "model_size + lora_size * quantization_factor" in cell
    assert "raise NotImplementedError()" in cell
    for source in _cells("release").values():
        assert "(model_size + lora_size) * quantization_factor" not in source


def test_source_answers_start_with_their_def():
    cells = {nbu.cell_id(c): c for c in source_notebook(A).cells if nbu.is_answer_cell(c)}
    assert set(cells) == set(GRADED)
    for name, cell in cells.items():
        assert cell.source.startswith(f"def {name}("), name
