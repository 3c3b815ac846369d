"""Shingle hashes for a whole batch of documents at once (numpy, no per-shingle Python).

Covered:
- ``word`` shingles: the text is lowercased and split into words = maximal runs of alphanumeric
  characters (``str.isalnum`` for code points below U+30000, anything above counts as a letter);
  every other character (punctuation, symbols, whitespace) separates words and is dropped. A
  shingle is ``ngram`` consecutive words.
- ``char`` shingles: the text is lowercased and whitespace runs collapse to one space; a shingle
  is ``ngram`` consecutive code points.
- A non-empty document shorter than one shingle gives one shingle of all its words / characters;
  a document with no words (or no characters) gives none (its MinHash stays empty).

Hashes are 64-bit (:func:`factory.dedup.hashing.fmix64` of a polynomial hash), identical for the
same shingle whichever batch the document is in. MinHash uses their low 32 bits.

How: the batch is joined into one UTF-32 code point array. A polynomial hash of any span
``[s, e)`` is ``(G[e] - G[s]) * P**s`` where ``G`` is the prefix sum of ``c_j * P**-j`` (``P`` odd,
so invertible mod 2^64) — one cumulative sum for the whole batch, then one gather per span.
Not covered: stemming, stop words, Unicode word segmentation for scripts without spaces (CJK text
becomes long "words"; use ``char`` shingles for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np

from factory.dedup.hashing import fmix64

ShingleKind = Literal["word", "char"]
_P = 0x100000001B3  # FNV-64 prime: odd, so invertible modulo 2^64
_P_INV = pow(_P, -1, 1 << 64)
_COMBINE = np.uint64(0x9E3779B97F4A7C15)
_WORD_TABLE_SIZE = 0x30000
_CHUNK_CODEPOINTS = 1 << 21  # documents are hashed in groups of about this many code points


@dataclass(frozen=True)
class Shingles:
    """Shingle hashes of a batch: ``hashes[i]`` belongs to document ``doc[i]`` (non-decreasing)."""

    hashes: np.ndarray  # uint64
    doc: np.ndarray  # int64, sorted
    n_docs: int


@lru_cache(maxsize=1)
def _word_char_table() -> np.ndarray:
    """Indexed by code point: True for word characters (built once per process, ~0.1 s)."""
    table = np.ones(0x110000, dtype=bool)
    table[:_WORD_TABLE_SIZE] = np.fromiter(
        (chr(c).isalnum() for c in range(_WORD_TABLE_SIZE)), dtype=bool, count=_WORD_TABLE_SIZE
    )
    return table


def _codepoints(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(code points of the texts joined by NUL, start offset of each text in that array)."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    cps = np.frombuffer("\x00".join(texts).encode("utf-32-le"), dtype=np.uint32)
    return cps, starts


@lru_cache(maxsize=1)
def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(P**j, P**-j) mod 2^64 for j < size; cached, as they do not depend on the data."""
    p_pow = np.full(size, _P, dtype=np.uint64)
    inv_pow = np.full(size, _P_INV, dtype=np.uint64)
    p_pow[0] = inv_pow[0] = 1
    np.cumprod(p_pow.view(np.int64), out=p_pow.view(np.int64))  # int64 kernels are faster; same bits
    np.cumprod(inv_pow.view(np.int64), out=inv_pow.view(np.int64))
    return p_pow, inv_pow


def _span_hasher(cps: np.ndarray):
    """Return ``span(s, e)`` giving the raw polynomial hash of ``cps[s:e]`` for index arrays."""
    n = cps.size
    p_pow, inv_pow = _powers(1 << max(_CHUNK_CODEPOINTS, n).bit_length())
    prefix = np.zeros(n + 1, dtype=np.uint64)
    terms = (cps.astype(np.uint64) + np.uint64(1)) * inv_pow[:n]
    np.cumsum(terms.view(np.int64), out=prefix[1:].view(np.int64))

    def span(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        return (prefix[e] - prefix[s]) * p_pow[s]

    return span


def _windows(unit_hash: np.ndarray, unit_doc: np.ndarray, n_docs: int, ngram: int, combine) -> Shingles:
    """Shingles of ``ngram`` consecutive units (words or characters) within each document;
    documents with fewer units get one shingle of all of them. ``combine(first, count)`` hashes
    ``count`` units starting at index ``first``."""
    counts = np.bincount(unit_doc, minlength=n_docs)
    first_unit = np.zeros(n_docs, dtype=np.int64)
    np.cumsum(counts[:-1], out=first_unit[1:])
    total = unit_hash.size
    starts = np.arange(max(total - ngram + 1, 0), dtype=np.int64)
    starts = starts[unit_doc[starts] == unit_doc[starts + ngram - 1]] if starts.size else starts
    full = combine(starts, np.full(starts.size, ngram, dtype=np.int64))
    full_doc = unit_doc[starts]
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if short.size == 0:
        return Shingles(full, full_doc, n_docs)
    hashes = np.concatenate([full, combine(first_unit[short], counts[short])])
    doc = np.concatenate([full_doc, short])
    order = np.argsort(doc, kind="stable")
    return Shingles(hashes[order], doc[order], n_docs)


def _word_shingles(texts: Sequence[str], ngram: int) -> Shingles:
    """Hashes of ``ngram``-word shingles of each lowercased text."""
    cps, doc_starts = _codepoints(texts)
    is_word = _word_char_table()[cps]
    edges = np.diff(np.concatenate([[False], is_word, [False]]).astype(np.int8))
    word_start = np.flatnonzero(edges == 1)
    word_end = np.flatnonzero(edges == -1)
    span = _span_hasher(cps)
    lengths = (word_end - word_start).astype(np.uint64)
    word_hash = fmix64(span(word_start, word_end) ^ (lengths * _COMBINE))
    word_doc = np.searchsorted(doc_starts, word_start, side="right") - 1

    def combine(first: np.ndarray, count: np.ndarray) -> np.ndarray:
        acc = np.zeros(first.size, dtype=np.uint64)
        all_full = bool((count == count.max(initial=0)).all())
        for j in range(int(count.max(initial=0))):
            if all_full:
                acc = acc * _COMBINE + word_hash[first + j]
            else:
                inside = j < count
                acc = np.where(inside, acc * _COMBINE + word_hash[np.where(inside, first + j, first)], acc)
        return fmix64(acc ^ count.astype(np.uint64))

    return _windows(word_hash, word_doc, len(texts), ngram, combine)


def _char_shingles(texts: Sequence[str], ngram: int) -> Shingles:
    """Hashes of ``ngram``-code-point shingles of each normalised text (no NUL characters)."""
    cps, doc_starts = _codepoints(texts)
    is_char = cps != 0
    positions = np.flatnonzero(is_char)
    char_doc = np.searchsorted(doc_starts, positions, side="right") - 1
    span = _span_hasher(cps)

    def combine(first: np.ndarray, count: np.ndarray) -> np.ndarray:
        begin = positions[first]
        return fmix64(span(begin, begin + count) ^ count.astype(np.uint64))

    return _windows(np.zeros(positions.size, dtype=np.uint64), char_doc, len(texts), ngram, combine)


def chunk_bounds(texts: Sequence[str]) -> list[tuple[int, int]]:
    """Consecutive (begin, end) ranges of texts holding about ``_CHUNK_CODEPOINTS`` code points
    each (a longer text gets a range of its own), to bound memory per vectorised step."""
    bounds, size = [0], 0
    for i, text in enumerate(texts):
        if size and size + len(text) + 1 > _CHUNK_CODEPOINTS:
            bounds.append(i)
            size = 0
        size += len(text) + 1
    bounds.append(len(texts))
    return [(begin, end) for begin, end in zip(bounds[:-1], bounds[1:]) if end > begin]


def codepoints(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code points of the texts joined by NUL, start of each text, length of each text)."""
    cps, starts = _codepoints(texts)
    return cps, starts, np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))


def word_char_table() -> np.ndarray:
    """Boolean table indexed by code point: which characters belong to words."""
    return _word_char_table()


def shingles(texts: Sequence[str], kind: ShingleKind, ngram: int) -> Shingles:
    """Shingle hashes of every text, computed in groups of about ``_CHUNK_CODEPOINTS`` code points
    (bounding memory for long documents)."""
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    if kind == "word":
        normalised, per_chunk = [t.lower() for t in texts], _word_shingles
    elif kind == "char":
        normalised, per_chunk = [" ".join(t.lower().replace("\x00", " ").split()) for t in texts], _char_shingles
    else:
        raise ValueError(f"shingle must be 'word' or 'char', got {kind!r}")
    parts = []
    for begin, end in chunk_bounds(normalised):
        part = per_chunk(normalised[begin:end], ngram)
        parts.append(Shingles(part.hashes, part.doc + begin, part.n_docs))
    if not parts:
        return Shingles(np.zeros(0, np.uint64), np.zeros(0, np.int64), 0)
    if len(parts) == 1:
        return Shingles(parts[0].hashes, parts[0].doc, len(texts))
    return Shingles(
        np.concatenate([p.hashes for p in parts]), np.concatenate([p.doc for p in parts]), len(texts)
    )
