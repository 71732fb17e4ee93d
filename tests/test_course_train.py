"""course.train on a tiny randomly initialised BERT: it learns, it measures, it refuses nonsense."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from course.models import load_tokenizer
from course.train import PeakMemory, TrainConfig, predict, train


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


TEXTS = ["great fun today", "what a lovely car", "awful crash again", "terrible and slow"] * 8
LABELS = [1, 1, 0, 0] * 8


def test_training_lowers_the_loss_and_learns_a_separable_task(tokenizer):
    model = tiny_model(tokenizer)
    result = train(
        model,
        tokenizer,
        TEXTS,
        LABELS,
        TEXTS[:8],
        LABELS[:8],
        TrainConfig(epochs=6, batch_size=8, lr=3e-3, progress=False),
    )
    assert result.steps == 6 * 4 == len(result.train_loss)
    assert np.mean(result.train_loss[-4:]) < np.mean(result.train_loss[:4])
    assert [step for step, _ in result.val_loss] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    assert (predict(model, tokenizer, TEXTS) == np.array(LABELS)).mean() == 1.0
    assert result.seconds_per_step > 0 and result.peak_memory_mb > 0 and result.memory_kind == "process resident memory"


def test_same_seed_same_run(tokenizer):
    runs = [
        train(
            tiny_model(tokenizer), tokenizer, TEXTS, LABELS, config=TrainConfig(epochs=1, batch_size=8, progress=False)
        )
        for _ in range(2)
    ]
    assert runs[0].train_loss == runs[1].train_loss


def test_a_model_with_nothing_to_train_is_refused(tokenizer):
    model = tiny_model(tokenizer)
    for p in model.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="no trainable parameter"):
        train(model, tokenizer, TEXTS, LABELS, config=TrainConfig(progress=False))


def test_peak_memory_sees_an_allocation():
    with PeakMemory(torch.device("cpu"), interval=0.001) as before:
        pass
    with PeakMemory(torch.device("cpu"), interval=0.001) as during:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        block += 1
        del block
    assert during.peak_mb >= before.peak_mb + 48
