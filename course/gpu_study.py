"""On a GPU kernel: where 4 bits matter. A decoder LLM of about half a billion parameters, fine-tuned
three ways on tweet batches, with the arithmetic of what each library stores next to what CUDA measured.

Arms: ``full`` (bf16 weights, AdamW), ``lora`` (bf16 base, adapters on every linear layer) and
``qlora`` (NF4 base with double quantization, the same adapters, ``prepare_model_for_kbit_training``,
gradient checkpointing and bitsandbytes' paged 8-bit AdamW). Each arm runs a few optimisation steps
on batches of tweets and reports the peak CUDA memory and the seconds per step.

The model is read from the local Hugging Face cache (the course image bakes :data:`DEFAULT_MODEL`
in); with ``random_init`` a decoder is built at random from its config instead, which gives the same
memory figures without the weights. ``simulate=True`` runs the GPU code path on a CPU, with a tiny
decoder, so the test suite can run it without a GPU (memory is then the process's resident growth,
and the paged optimizer, which needs CUDA, becomes AdamW).

Headless::

    python -m course.gpu_study [--model ID] [--random-init] [--steps N]

The arithmetic itself is proven on the CPU, on Qwen2.5-0.5B's exact architecture, by
:mod:`course.gpu_arithmetic`::

    python -m course.gpu_study --check-arithmetic [--json]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import asdict, dataclass

import torch

from . import data
from .train import PeakMemory

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B"  # 494 M parameters, 24 layers, width 896, tied embeddings
ARMS = ("full", "lora", "qlora")
# DEFAULT_MODEL's counts: its parameters, and rank-16 adapters on all 7 linear layers of its 24 blocks
# (q 896->896, k and v 896->128, o 896->896, gate and up 896->4864, down 4864->896).
DEFAULT_PARAMS = 494_032_768
# Of those, the weights of its nn.Linear layers (q, k, v, o, gate, up, down in 24 blocks): the only
# ones bitsandbytes quantizes. The rest (the tied 151,936 x 896 embedding, norms, biases) stay 16-bit.
DEFAULT_LINEAR = 24 * (2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864)
DEFAULT_ADAPTERS = 24 * 16 * (2 * 1792 + 2 * 1024 + 3 * 5760)
# Optimizer state bytes per float32 trainable parameter: AdamW's two moments, or bitsandbytes' 8-bit ones
# (one byte each, plus a float32 absmax per block of 256 for each).
FP32_STATE_BYTES = {"adamw": 8, "paged_adamw_8bit": 2 + 2 * 4 / 256}
# bitsandbytes keeps 32-bit states for tensors under this many elements (its optimizers' min_8bit_size):
# at rank 16 the k and v projections' lora_B (128 x 16 = 2,048) in each of the 24 blocks.
MIN_8BIT_SIZE = 4096
DEFAULT_SMALL_ADAPTERS = 24 * 2 * 128 * 16
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # a 4-bit code; an 8-bit constant per 64; a 32-bit one per 64 x 256


@dataclass
class StudyRow:
    arm: str
    total_params: int
    trainable_params: int
    predicted_gb: float  # weights + gradients + optimizer states, from the counts (no activations)
    peak_gb: float  # measured: CUDA's peak allocation (CPU: the process's growth)
    seconds_per_step: float
    memory_kind: str


def predicted_components(
    arm: str, linear: int, other: int, adapters: int, optimizer: str, width: int = 2, small: int = 0
) -> dict[str, float]:
    """Bytes of ``weights``, ``gradients`` and ``optimizer`` states for one arm: ``linear`` frozen
    ``nn.Linear`` weights, ``other`` frozen parameters, ``adapters`` trainable ones (``small`` of them in
    tensors under :data:`MIN_8BIT_SIZE` elements), a model loaded ``width`` bytes per number (2: bf16).
    No activations (:func:`predicted_activations`).

    - ``full`` trains everything at its own width; torch's AdamW keeps its two states in the
      parameters' dtype: 4 x ``width`` bytes per parameter in all (8 in bf16).
    - ``lora``: the frozen base at its width; PEFT keeps the adapters in float32 (4 + 4 bytes, and
      8 for AdamW's states, 2 for bitsandbytes' 8-bit ones).
    - ``qlora``: bitsandbytes quantizes only ``nn.Linear`` weights (:data:`NF4_BITS` each);
      ``prepare_model_for_kbit_training`` casts every other 16-bit parameter to float32.
    """
    state = adapters * FP32_STATE_BYTES[optimizer]
    if optimizer != "adamw":  # bitsandbytes leaves small tensors' states in 32 bits
        state += small * (FP32_STATE_BYTES["adamw"] - FP32_STATE_BYTES[optimizer])
    if arm == "full":
        n = linear + other + adapters
        return {"weights": n * width, "gradients": n * width, "optimizer": n * 2 * width}
    if arm == "lora":
        frozen = (linear + other) * width
    elif arm == "qlora":
        frozen = linear * NF4_BITS / 8 + other * 4
    else:
        raise ValueError(f"unknown arm {arm!r}; the arms are {', '.join(ARMS)}")
    return {"weights": frozen + adapters * 4, "gradients": adapters * 4, "optimizer": state}


def predicted_bytes(
    arm: str, linear: int, other: int, adapters: int, optimizer: str, width: int = 2, small: int = 0
) -> float:
    """All of :func:`predicted_components`."""
    return sum(predicted_components(arm, linear, other, adapters, optimizer, width, small).values())


@dataclass(frozen=True)
class Shape:
    """What the activation count needs of a Qwen2-style decoder and its adapters."""

    hidden: int = 896
    intermediate: int = 4864
    layers: int = 24
    heads: int = 14
    kv_width: int = 128  # key/value heads x head width: 2 x 64
    rank: int = 16

    @classmethod
    def of(cls, config, rank: int = 16) -> Shape:
        heads = config.num_attention_heads
        head_width = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            config.hidden_size,
            config.intermediate_size,
            config.num_hidden_layers,
            heads,
            config.num_key_value_heads * head_width,
            rank,
        )


def predicted_activations(
    arm: str, tokens: int, shape: Shape = Shape(), width: int = 2, dropout: bool = True, mask_bytes: int = 1
) -> float:
    """Bytes autograd saves in the forward pass for the backward pass of one batch of ``tokens``
    (batch x sequence length), counted tensor by tensor for a decoder block in ``width``-byte numbers
    (parameters not included).

    Every arm keeps, per block and token: each RMSNorm's float32 input and its 1/rms (Qwen2 normalises in
    float32), the rotated queries and the attention output, keys and values, attention's float32
    log-sum-exp per head, and the MLP's gate, up and SiLU(gate).
    - ``full`` also keeps what the weight gradients need: both norms' outputs, the inputs of the
      attention output and down projections, and the normalised values the norm weights multiply.
    - ``lora`` keeps no input for a frozen weight, but PEFT casts each adapted layer's input to the
      adapters' float32 (one copy for each of q, k, v, o, gate and up; down's is intermediate-wide),
      and keeps each lora_A output; with ``dropout`` each adapted input also keeps its dropout mask
      (``mask_bytes`` per number: 1 on CUDA, the input's own 4 on a CPU).
    - ``qlora`` checkpoints every block: it keeps only each block's input, in float32 since
      ``prepare_model_for_kbit_training`` cast the embedding (and the head's). The block being
      recomputed in the backward pass holds more for a moment: :func:`recomputed_activations`.
    """
    h = shape.hidden
    if arm == "full":
        block = _lora_free_block(shape, width) + 4 * h * width + shape.intermediate * width
        return tokens * (shape.layers * block + 4 * h + 4 + 2 * h * width)
    if arm == "lora":
        return tokens * (shape.layers * _adapted_block(shape, width, dropout, mask_bytes) + 4 * h + 4)
    if arm == "qlora":
        return tokens * (shape.layers + 2) * 4 * h
    raise ValueError(f"unknown arm {arm!r}; the arms are {', '.join(ARMS)}")


def recomputed_activations(
    arm: str, tokens: int, shape: Shape = Shape(), width: int = 2, dropout: bool = True, mask_bytes: int = 1
) -> float:
    """What gradient checkpointing holds for a moment on top of :func:`predicted_activations`: one
    adapted block recomputed in the backward pass (QLoRA's arm; nothing for the others)."""
    return tokens * _adapted_block(shape, width, dropout, mask_bytes) if arm == "qlora" else 0


def _lora_free_block(shape: Shape, width: int) -> int:
    """Per token, what every arm's block saves (see :func:`predicted_activations`)."""
    h, f = shape.hidden, shape.intermediate
    return 2 * (4 * h + 4) + 2 * h * width + 2 * shape.kv_width * width + 4 * shape.heads + 3 * f * width


def _adapted_block(shape: Shape, width: int, dropout: bool, mask_bytes: int) -> int:
    """Per token, a block with adapters on all seven linear layers and a frozen base."""
    h, f = shape.hidden, shape.intermediate
    adapters = 6 * h * 4 + f * 4 + 7 * shape.rank * 4 + (6 * h + f) * mask_bytes * dropout
    return _lora_free_block(shape, width) + adapters


def parameter_split(model: torch.nn.Module) -> tuple[int, int, int]:
    """``(frozen nn.Linear weights but the head's, other frozen parameters, trainable parameters)`` of a
    model, a packed 4-bit tensor counting as the parameters it stands for. The first are what a 4-bit
    load quantizes (``Linear4bit`` is an ``nn.Linear``; the head is skipped)."""
    from .memory import HEAD_NAMES

    linear = other = trainable = 0
    for module_name, module in model.named_modules():
        head = module_name.rsplit(".", 1)[-1] in HEAD_NAMES
        for name, p in module.named_parameters(recurse=False):
            n = p.numel() * (2 if p.dtype == torch.uint8 else 1)
            if p.requires_grad:
                trainable += n
            elif name == "weight" and isinstance(module, torch.nn.Linear) and not head:
                linear += n
            else:
                other += n
    return linear, other, trainable


def small_trainable(model: torch.nn.Module, below: int = MIN_8BIT_SIZE) -> int:
    """Trainable parameters in tensors too small for bitsandbytes' 8-bit optimizer states."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad and p.numel() < below)


def format_prediction(
    linear: int = DEFAULT_LINEAR, other: int = DEFAULT_PARAMS - DEFAULT_LINEAR, adapters: int = DEFAULT_ADAPTERS
) -> str:
    """What the arithmetic predicts for each arm, by component (no activations), in GB."""
    lines = [f"{'arm':<6}{'trainable':>13}{'weights':>9}{'grads':>8}{'optim':>8}{'total GB':>10}  what it counts"]
    for arm, optimizer, what in (
        ("full", "adamw", "bf16 weights, gradients and AdamW states (torch keeps them in bf16)"),
        ("lora", "adamw", "bf16 base + fp32 adapters, gradients and AdamW states"),
        ("qlora", "paged_adamw_8bit", "NF4 linear weights, the rest cast to fp32, fp32 adapters, 8-bit states"),
    ):
        parts = predicted_components(
            arm, linear, other, 0 if arm == "full" else adapters, optimizer, small=DEFAULT_SMALL_ADAPTERS
        )
        trainable = linear + other if arm == "full" else adapters
        gb = [v / 1e9 for v in parts.values()]
        lines.append(f"{arm:<6}{trainable:>13,}{gb[0]:>9.2f}{gb[1]:>8.2f}{gb[2]:>8.2f}{sum(gb):>10.2f}  {what}")
    return "\n".join(lines)


def tiny_config():
    """A two-layer Qwen2 decoder of a few hundred thousand parameters, for the CPU test of this path."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=0,
    )


LORA_DROPOUT = 0.05  # the QLoRA paper's for its larger models; what it costs: predicted_activations


def load(
    model_id: str | None,
    arm: str,
    device: torch.device,
    random_init: bool,
    simulate: bool,
    dtype: torch.dtype | None = None,
):
    """The arm's model for 3-class sequence classification, on ``device``, loaded in ``dtype`` (bf16 on a
    GPU, float32 on a CPU unless asked)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, BitsAndBytesConfig

    dtype = dtype or (torch.float32 if device.type == "cpu" else torch.bfloat16)
    quant = None
    if arm == "qlora":
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=["score"],
        )
    if simulate or random_init:
        config = tiny_config() if simulate else AutoConfig.from_pretrained(model_id, local_files_only=True)
        config.num_labels = 3
        config.pad_token_id = config.pad_token_id if config.pad_token_id is not None else 0
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config, torch_dtype=dtype)
        if quant is not None:  # quantize the random weights as loading would: save, reload in 4 bits
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                model.save_pretrained(folder)
                del model
                model = AutoModelForSequenceClassification.from_pretrained(
                    folder, quantization_config=quant, torch_dtype=dtype, device_map={"": device}
                )
        else:
            model = model.to(device)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_id,
            num_labels=3,
            torch_dtype=dtype,
            quantization_config=quant,
            device_map={"": device},
            local_files_only=True,
        )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = model.config.eos_token_id
    if arm in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if arm == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model = get_peft_model(
            model,
            LoraConfig(
                task_type="SEQ_CLS", r=16, lora_alpha=32, lora_dropout=LORA_DROPOUT, target_modules="all-linear"
            ),
        )
    return model


def batches(model_id: str | None, n: int, batch_size: int, seq_len: int, vocab: int, simulate: bool):
    """``n`` batches of tweets (token ids and labels); random ids where no tokenizer is at hand."""
    splits = data.tweet_splits(seed=0)
    texts, labels = splits.train.texts, splits.train.labels
    tokenizer = None
    if not simulate:
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=True)
        except OSError:
            tokenizer = None
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        pick = range(i * batch_size, (i + 1) * batch_size)
        y = torch.as_tensor([int(labels[j]) for j in pick])
        if tokenizer is None:
            ids = torch.randint(1, vocab, (batch_size, seq_len), generator=g)
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        else:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            batch = dict(
                tokenizer(
                    [texts[j] for j in pick],
                    padding="max_length",
                    truncation=True,
                    max_length=seq_len,
                    return_tensors="pt",
                )
            )
        batch["labels"] = y
        out.append(batch)
    return out


def measure(
    arm: str,
    model_id: str | None = DEFAULT_MODEL,
    steps: int = 6,
    batch_size: int = 8,
    seq_len: int = 128,
    device: torch.device | str | None = None,
    random_init: bool = False,
    simulate: bool = False,
) -> StudyRow:
    """One arm: load, train ``steps`` steps (the first is a warm-up, not timed), measure."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; the arms are {', '.join(ARMS)}")
    device = torch.device(device or ("cpu" if simulate else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: run the GPU study on a GPU kernel, or pass simulate=True")
    optimizer_name = "paged_adamw_8bit" if arm == "qlora" and device.type == "cuda" else "adamw"
    with PeakMemory(device) as peak:
        model = load(model_id, arm, device, random_init, simulate)
        params = [p for p in model.parameters() if p.requires_grad]
        if optimizer_name == "paged_adamw_8bit":
            import bitsandbytes as bnb

            optimizer = bnb.optim.PagedAdamW8bit(params, lr=2e-4)
        else:
            optimizer = torch.optim.AdamW(params, lr=2e-4)
        vocab = model.config.vocab_size if hasattr(model, "config") else 512
        model.train()
        timed = 0.0
        for i, batch in enumerate(batches(model_id, steps, batch_size, seq_len, vocab, simulate)):
            start = time.perf_counter()
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i > 0:
                timed += time.perf_counter() - start
    # Logical parameters: a packed 4-bit tensor holds two per byte.
    linear, other, trainable = parameter_split(model)
    width = 4 if device.type == "cpu" else 2  # the CPU path loads in float32
    row = StudyRow(
        arm=arm,
        total_params=linear + other + trainable,
        trainable_params=trainable,
        predicted_gb=predicted_bytes(arm, linear, other, trainable, optimizer_name, width, small_trainable(model))
        / 1e9,
        peak_gb=peak.added_mb * 2**20 / 1e9,
        seconds_per_step=timed / max(steps - 1, 1),
        memory_kind=peak.kind,
    )
    del model, optimizer, params
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def study(arms=ARMS, **kwargs) -> list[StudyRow]:
    """Every arm, one after the other, with the same settings."""
    return [measure(arm, **kwargs) for arm in arms]


def format_table(rows: list[StudyRow]) -> str:
    lines = [f"{'arm':<6}{'params':>14}{'trainable':>13}{'predicted GB':>14}{'peak GB':>10}{'s/step':>9}"]
    for r in rows:
        lines.append(
            f"{r.arm:<6}{r.total_params:>14,}{r.trainable_params:>13,}{r.predicted_gb:>14.2f}"
            f"{r.peak_gb:>10.2f}{r.seconds_per_step:>9.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m course.gpu_study", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--random-init", action="store_true", help="build the decoder from its config, at random")
    p.add_argument("--simulate", action="store_true", help="the GPU path on a CPU, with a tiny decoder")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument(
        "--check-arithmetic",
        action="store_true",
        help="on the CPU: Qwen2.5-0.5B's architecture at random, every byte it holds against the prediction",
    )
    p.add_argument("--json", action="store_true", help="with --check-arithmetic: print one JSON object")
    args = p.parse_args(argv)
    if args.check_arithmetic:
        from . import gpu_arithmetic

        return gpu_arithmetic.main(as_json=args.json)
    arms = tuple(a for a in args.arms.split(",") if a)
    try:
        rows = study(
            arms,
            model_id=args.model,
            steps=args.steps,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            random_init=args.random_init,
            simulate=args.simulate,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"course.gpu_study: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows))
    print([asdict(r) for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
