"""course.memory: the inventory, its floor and the measured footprint, on small models and on MiniLM in 4 bits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course import memory


class Tiny(nn.Module):
    """An embedding, an attention projection, a feed-forward layer, a layer norm and a head."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.embeddings = nn.Embedding(100, 16)
        self.attention = nn.ModuleDict({"query": nn.Linear(16, 16)})
        self.intermediate = nn.Linear(16, 64)
        self.LayerNorm = nn.LayerNorm(16)
        self.classifier = nn.Linear(16, 2)
        self.register_buffer("position_ids", torch.arange(8))
        self.to(dtype)


def test_inventory_of_a_float_model():
    model = Tiny()
    inv = memory.parameter_inventory(model)
    kinds = {e.name: e.kind for e in inv}
    assert kinds["embeddings.weight"] == "embedding"
    assert kinds["attention.query.weight"] == kinds["attention.query.bias"] == "attention"
    assert kinds["intermediate.weight"] == "feed-forward"
    assert kinds["LayerNorm.weight"] == "layer norm"
    assert kinds["classifier.weight"] == "head"
    assert {e.storage for e in inv} == {"float32"}
    n = sum(p.numel() for p in model.parameters())
    assert sum(e.n_params for e in inv) == n
    assert memory.floor_bytes(inv) == 4 * n
    assert not any(e.quantized for e in inv)
    measured = memory.measured_footprint(model)
    assert measured["parameters"] == 4 * n
    assert measured["buffers"] == 8 * 8  # int64 positions
    assert measured["quant_state"] == 0 and measured["total"] == 4 * n + 64
    assert "get_memory_footprint" not in measured  # a plain nn.Module has no such method


def test_half_precision_halves_the_floor():
    full = memory.floor_bytes(memory.parameter_inventory(Tiny()))
    half = memory.parameter_inventory(Tiny(torch.float16))
    assert {e.storage for e in half} == {"float16"}
    assert memory.floor_bytes(half) * 2 == full


def test_shared_parameters_are_counted_once():
    model = Tiny()
    model.tied = nn.Linear(16, 100, bias=False)
    model.tied.weight = model.embeddings.weight
    inv = memory.parameter_inventory(model)
    assert sum(e.n_params for e in inv) == sum(p.numel() for p in model.parameters())


def test_lora_and_pooler_kinds():
    assert (
        memory.module_kind("bert.encoder.layer.0.attention.self.query.lora_A.default", nn.Linear(4, 2))
        == "lora adapter"
    )
    assert memory.module_kind("bert.pooler.dense", nn.Linear(4, 4)) == "pooler"
    assert memory.module_kind("lm_head", nn.Linear(4, 4)) == "head"
    assert memory.module_kind("encoder.dropout", nn.Dropout()) == "other"


@pytest.mark.parametrize("double_quant", [False, True])
def test_4bit_linear_layers(double_quant):
    import bitsandbytes as bnb

    d_in, d_out = 256, 128
    model = nn.Sequential()
    model.add_module(
        "attention",
        bnb.nn.Linear4bit(d_in, d_out, compute_dtype=torch.float32, compress_statistics=double_quant, quant_type="nf4"),
    )
    model.add_module("norm", nn.LayerNorm(d_out))
    model = model.to("cpu")  # bitsandbytes quantizes the weight when it is moved to a device
    inv = {e.name: e for e in memory.parameter_inventory(model)}
    w = inv["attention.weight"]
    n = d_in * d_out
    assert (w.kind, w.storage, w.n_params, w.block_size, w.double_quant) == ("attention", "nf4", n, 64, double_quant)
    assert w.quantized and w.data_bytes == n // 2  # two 4-bit codes per byte
    blocks = n // 64
    if double_quant:
        assert w.block_size2 == 256
        assert w.constant_bytes == blocks * 1 + math.ceil(blocks / 256) * 4  # 8-bit constants + 32-bit second level
    else:
        assert w.block_size2 is None and w.constant_bytes == blocks * 4  # one float32 per block
    assert inv["attention.bias"].storage == "float32" and not inv["attention.bias"].quantized
    assert w.overhead_bytes > 0  # the NF4 lookup table at least
    floor = memory.floor_bytes(list(inv.values()))
    assert floor == w.data_bytes + w.constant_bytes + 4 * (d_out + 2 * d_out)
    measured = memory.measured_footprint(model)
    assert measured["quant_state"] == w.constant_bytes + w.overhead_bytes
    assert measured["total"] == floor + w.overhead_bytes
    table = memory.format_inventory(list(inv.values()))
    assert "nf4" in table and "total" in table


def test_minilm_in_4_bits_weighs_its_floor():
    import transformers

    from course.models import load_classifier

    config = transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=["classifier"],
    )
    model = load_classifier(quantization_config=config, device="cpu")
    inv = memory.parameter_inventory(model)
    summary = memory.summarize(inv)
    assert summary[("embedding", "float32")]["n_params"] == 30522 * 384 + 512 * 384 + 2 * 384
    assert ("attention", "nf4") in summary and ("feed-forward", "nf4") in summary
    assert ("head", "float32") in summary and not any(k == "head" and s == "nf4" for k, s in summary)
    assert sum(e.n_params for e in inv) == 22_713_986
    floor = memory.floor_bytes(inv)
    measured = memory.measured_footprint(model)
    assert floor <= measured["total"] <= floor * 1.01
    # transformers' own count misses the quantization constants
    assert measured["get_memory_footprint"] < floor
