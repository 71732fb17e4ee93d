"""02_quantization: each graded name rejects a plausible mistake (and says which) and accepts a different right answer.

``harness.MistakeTable`` packs the wrong answers into mock students so that no student holds two mistakes
whose test cells could interfere (``weights_gb``'s cells run ``bytes_per_param``, the NF4 functions' cells
run ``nf4_levels``), and grades them in one nbgrader run with the right answers written differently. The
array-valued mistakes (absmax and NF4 quantization) are graded again with one and with two math threads.
"""

from __future__ import annotations

from autograder import notebook as nbu
from harness import ROOT, FloatMistakeTests, Mistake, MistakeTable, MistakeTests, source_notebook

A = "02_quantization"

RIGHT = {
    "bytes_per_param": """
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
""",
    "weights_gb": """
def weights_gb(n_params, dtype):
    return bytes_per_param(dtype) * n_params * 1e-9
""",
    "qlora_model_size": """
def qlora_model_size(model_size, lora_size, quantization_factor):
    import math
    total = model_size + lora_size
    return math.trunc(total * quantization_factor)
""",
    "absmax_quantize": """
def absmax_quantize(x, bits=8):
    qmax = (1 << (bits - 1)) - 1
    m = float(x.abs().max())
    scale = m / qmax if m > 0 else 1.0
    q = (x / scale).round().clamp(-qmax, qmax).to(torch.int8)
    return q, scale
""",
    "absmax_dequantize": """
def absmax_dequantize(q, scale):
    return q.to(torch.float32).mul(scale)
""",
    "nf4_levels": """
def nf4_levels():
    from statistics import NormalDist
    inv = NormalDist().inv_cdf
    def probs(k):
        return [NF4_OFFSET + (0.5 - NF4_OFFSET) * i / (k - 1) for i in range(k - 1)]
    values = sorted([inv(p) for p in probs(9)] + [-inv(p) for p in probs(8)] + [0.0])
    top = max(abs(v) for v in values)
    return torch.tensor([v / top for v in values], dtype=torch.float32)
""",
    "nf4_quantize": """
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
""",
    "nf4_dequantize": """
def nf4_dequantize(codes, absmax, block_size=64):
    table = nf4_levels()
    return absmax.float().repeat_interleave(block_size) * table[codes.flatten().to(torch.int64)]
""",
    "quant_constant_bits": """
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    bits = 32 / block_size
    if double_quant:
        bits = (8 + 32 / block_size2) / block_size
    return bits
""",
}

# mistake -> (answer it replaces, wrong source, words the failing test's message must contain)
WRONG = {
    "bytes_as_bits": (
        "bytes_per_param",
        """
def bytes_per_param(dtype):
    bits = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4, "nf4": 4, "fp4": 4}
    if dtype not in bits:
        raise ValueError(dtype)
    return bits[dtype]
""",
        "that is bits",
    ),
    "bytes_4bit_whole_byte": (
        "bytes_per_param",
        """
def bytes_per_param(dtype):
    return {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 1, "nf4": 1, "fp4": 1}.get(dtype, 0)
""",
        "two parameters share one byte",
    ),
    "weights_in_gib": (
        "weights_gb",
        """
def weights_gb(n_params, dtype):
    return n_params * bytes_per_param(dtype) / 2**30
""",
        "GiB",
    ),
    "weights_in_gigabits": (
        "weights_gb",
        """
def weights_gb(n_params, dtype):
    return n_params * bytes_per_param(dtype) * 8 / 1e9
""",
        "counted bits",
    ),
    "size_seed_precedence_bug": (
        "qlora_model_size",
        """
def qlora_model_size(model_size, lora_size, quantization_factor):
    return model_size + lora_size * quantization_factor
""",
        "multiplying before adding",
    ),
    "size_rounds": (
        "qlora_model_size",
        """
def qlora_model_size(model_size, lora_size, quantization_factor):
    return round((model_size + lora_size) * quantization_factor)
""",
        "rounding instead of truncating",
    ),
    "size_float_floor": (
        "qlora_model_size",
        """
def qlora_model_size(model_size, lora_size, quantization_factor):
    return (model_size + lora_size) * quantization_factor // 1
""",
        "return an int",
    ),
    "size_lora_unquantized": (
        "qlora_model_size",
        """
def qlora_model_size(model_size, lora_size, quantization_factor):
    return int(model_size * quantization_factor + lora_size)
""",
        "base model only",
    ),
    "absmax_truncates": (
        "absmax_quantize",
        """
def absmax_quantize(x, bits=8):
    m = x.abs().max()
    scale = m / (2 ** (bits - 1) - 1) if m > 0 else torch.tensor(1.0)
    return (x / scale).to(torch.int8), scale
""",
        "truncated toward zero",
    ),
    "absmax_over_128": (
        "absmax_quantize",
        """
def absmax_quantize(x, bits=8):
    scale = x.abs().max() / 2 ** (bits - 1)
    return torch.round(x / scale).to(torch.int8), scale
""",
        "2**(bits-1) - 1",
    ),
    "dequant_divides": (
        "absmax_dequantize",
        """
def absmax_dequantize(q, scale):
    return q.float() / scale
""",
        "dequantizing multiplies",
    ),
    "dequant_over_127": (
        "absmax_dequantize",
        """
def absmax_dequantize(q, scale):
    return q.float() * scale / 127
""",
        "multiplies each code by the scale",
    ),
    "nf4_equally_spaced": (
        "nf4_levels",
        """
def nf4_levels():
    return torch.linspace(-1, 1, 16)
""",
        "equally spaced",
    ),
    "nf4_no_exact_zero": (
        "nf4_levels",
        """
def nf4_levels():
    v = torch.special.ndtri(torch.linspace(1 - NF4_OFFSET, NF4_OFFSET, 16, dtype=torch.float64))
    return (v / v.abs().max()).float()
""",
        "exact zero",
    ),
    "nf4_global_absmax": (
        "nf4_quantize",
        """
def nf4_quantize(x, block_size=64):
    flat = x.reshape(-1).float()
    m = flat.abs().max()
    codes = (flat[:, None] / m - nf4_levels()).abs().argmin(dim=1)
    return codes.to(torch.uint8), m.repeat(flat.numel() // block_size)
""",
        "one global absmax",
    ),
    "nf4_level_below": (
        "nf4_quantize",
        """
def nf4_quantize(x, block_size=64):
    blocks = x.reshape(-1, block_size).float()
    absmax = blocks.abs().amax(dim=1)
    scaled = blocks / absmax.clamp(min=1e-30)[:, None]
    levels = nf4_levels()
    codes = (torch.searchsorted(levels, scaled.reshape(-1), right=True) - 1).clamp(0, 15)
    return codes.to(torch.uint8), absmax
""",
        "level just below",
    ),
    "nf4_tiles_constants": (
        "nf4_dequantize",
        """
def nf4_dequantize(codes, absmax, block_size=64):
    values = nf4_levels()[codes.long()]
    return values * absmax.float().repeat(block_size)
""",
        "do not tile",
    ),
    "nf4_codes_as_values": (
        "nf4_dequantize",
        """
def nf4_dequantize(codes, absmax, block_size=64):
    return codes.float() * absmax.float().repeat_interleave(block_size)
""",
        "multiplied directly",
    ),
    # The right table, read from the library the answer is checked against: refused, read from the code.
    "levels_from_bitsandbytes": (
        "nf4_levels",
        """
import bitsandbytes.functional as bnb_functional


def nf4_levels():
    return bnb_functional.get_4bit_type("nf4", device="cpu").float()
""",
        "nf4_levels uses bitsandbytes.functional.get_4bit_type",
    ),
    "dq_forgets_second_level": (
        "quant_constant_bits",
        """
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    return 8 / block_size if double_quant else 32 / block_size
""",
        "forgetting the second-level constants",
    ),
    "dq_second_level_not_per_block": (
        "quant_constant_bits",
        """
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    if double_quant:
        return 8 / block_size + 32 / block_size2
    return 32 / block_size
""",
        "not by 256",
    ),
    "dq_ignored": (
        "quant_constant_bits",
        """
def quant_constant_bits(block_size=64, double_quant=False, block_size2=256):
    return 32 / block_size
""",
        "double quantization",
    ),
}

# The 65B headline cell computes with the student's own weights_gb and quant_constant_bits (and, through
# weights_gb, bytes_per_param): a wrong size there also loses the reproduction, with this message.
FIX_FIRST = "fix weights_gb (or bytes_per_param) above first"
FIX_ANY = "fix weights_gb, bytes_per_param or quant_constant_bits above first"
ALSO_LOSES = {
    "bytes_as_bits": {"test_headline_qlora_65b": FIX_FIRST},
    "bytes_4bit_whole_byte": {"test_headline_qlora_65b": FIX_ANY},
    "weights_in_gib": {"test_headline_qlora_65b": FIX_FIRST},
    "weights_in_gigabits": {"test_headline_qlora_65b": FIX_FIRST},
    "dq_forgets_second_level": {"test_headline_qlora_65b": FIX_ANY},
    "dq_second_level_not_per_block": {"test_headline_qlora_65b": FIX_ANY},
    "dq_ignored": {"test_headline_qlora_65b": FIX_ANY},
}

TABLE = MistakeTable(
    assignment=A,
    right=RIGHT,
    mistakes=tuple(
        Mistake(name, {answer: src}, {f"test_{answer}": words, **ALSO_LOSES.get(name, {})})
        for name, (answer, src, words) in WRONG.items()
    ),
    uses={
        # The visible checks of these cells run the student's helper (the hidden ones swap in a known-good one).
        "bytes_per_param": ("test_weights_gb", "test_headline_qlora_65b"),
        "weights_gb": ("test_headline_qlora_65b",),
        "quant_constant_bits": ("test_headline_qlora_65b",),
        "nf4_levels": ("test_nf4_quantize", "test_nf4_dequantize"),
    },
)


class TestMistakes(MistakeTests):
    table = TABLE


# --- float rounding: the same messages with one math thread and with two ---------------------

ARRAY_VALUED = ("absmax_quantize", "absmax_dequantize", "nf4_quantize", "nf4_dequantize")


class TestFloatMistakes(FloatMistakeTests):
    table = TABLE.only([name for name, (answer, _, _) in WRONG.items() if answer in ARRAY_VALUED])


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
    assert set(cells) == set(list(RIGHT))
    for name, cell in cells.items():
        assert cell.source.startswith(f"def {name}("), name
