"""Word n-gram index of eval sets, for decontamination.

Covered: texts are normalised as for word shingles (:mod:`factory.dedup.shingles`: lowercased,
punctuation and symbols stripped, split into alphanumeric words), then every run of ``n``
consecutive words is hashed (64 bits). A text is contaminated by a benchmark when it shares at
least one n-gram with any of the benchmark's entries. Benchmark entries shorter than ``n`` words
(but at least ``ceil(n / 2)`` words) are matched as whole word sequences; shorter ones are
skipped, as they would match ordinary phrases.
Not covered: paraphrases that change more than a few words per ``n``-word window, translations,
matching of numbers written differently ("12" vs "twelve").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from factory.dedup.shingles import shingles


@dataclass(frozen=True)
class NgramIndex:
    """Sorted n-gram hashes per n-gram length, with the benchmark each hash came from."""

    n: int
    names: tuple[str, ...]
    hashes: dict[int, np.ndarray]  # length -> sorted uint64 hashes
    owners: dict[int, np.ndarray]  # length -> benchmark index of each hash
    entries: dict[str, int]
    ngrams: dict[str, int]

    @classmethod
    def build(cls, benchmarks: dict[str, Sequence[str]], n: int) -> "NgramIndex":
        """Index every entry of every benchmark (name -> texts)."""
        if n < 1:
            raise ValueError(f"ngram must be >= 1, got {n}")
        min_words = (n + 1) // 2
        per_length: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        ngrams = {}
        for index, (name, texts) in enumerate(benchmarks.items()):
            grams = shingles(list(texts), "word", n)
            words = np.bincount(shingles(list(texts), "word", 1).doc, minlength=len(texts))
            length = np.minimum(words[grams.doc], n)
            usable = length >= min_words
            ngrams[name] = int(np.unique(grams.hashes[usable]).size)
            for k in np.unique(length[usable]):
                picked = grams.hashes[usable & (length == k)]
                per_length.setdefault(int(k), []).append((picked, np.full(picked.size, index, dtype=np.int32)))
        hashes, owners = {}, {}
        for k, parts in per_length.items():
            values = np.concatenate([p[0] for p in parts])
            owner = np.concatenate([p[1] for p in parts])
            values, first = np.unique(values, return_index=True)
            hashes[k], owners[k] = values, owner[first]
        return cls(n, tuple(benchmarks), hashes, owners, {k: len(v) for k, v in benchmarks.items()}, ngrams)

    def match(self, texts: Sequence[str]) -> list[str | None]:
        """Name of the first benchmark (in config order) sharing an n-gram with each text, or None."""
        best = np.full(len(texts), len(self.names), dtype=np.int64)
        for k, values in self.hashes.items():
            grams = shingles(list(texts), "word", k)  # a text shorter than k words hashes differently
            grams_hashes, grams_doc = grams.hashes, grams.doc
            pos = np.searchsorted(values, grams_hashes)
            pos_clipped = np.minimum(pos, values.size - 1)
            found = (pos < values.size) & (values[pos_clipped] == grams_hashes)
            np.minimum.at(best, grams_doc[found], self.owners[k][pos_clipped[found]])
        return [self.names[b] if b < len(self.names) else None for b in best]

