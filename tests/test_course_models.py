"""course.models: the bundled MiniLM loads offline, by its alias or by path (the hub code path)."""

from __future__ import annotations

import pytest
import torch

from course import models


def test_bundled_alias_and_explicit_path_load_the_same_weights():
    by_alias = models.load_encoder(device="cpu")
    by_path = models.load_encoder(str(models.bundled_model_path()), device="cpu")
    for (name, a), (_, b) in zip(by_alias.state_dict().items(), by_path.state_dict().items()):
        assert torch.equal(a, b), name
    assert sum(p.numel() for p in by_alias.parameters()) == 22_713_216  # all-MiniLM-L6-v2 with its pooler


def test_classifier_heads_are_seeded():
    a = models.load_classifier(num_labels=3, device="cpu", seed=1)
    b = models.load_classifier(num_labels=3, device="cpu", seed=1)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert a.classifier.out_features == 3


def test_an_unknown_hub_id_offline_fails_clearly(monkeypatch):
    import huggingface_hub.constants

    # huggingface_hub reads the variable once, at import: set the constant too, or the call waits
    # on the network for its time-outs.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError):
        models.load_tokenizer("no-such-org/no-such-model")
