"""The repetition kernel of the quality filter (numba, ``cache=True``: compiled once per machine, loaded in
well under a second by each new worker). Imported lazily by :func:`factory.stages.filter.quality.repeated_shares`.

Contract: for a text's code points, the share of its word n-grams and of its character n-grams that repeat an
earlier n-gram of the same kind, in one pass with a hash set (no sort): words are the runs of non-whitespace
code points (``str.split()``'s words when ``table`` marks what ``str.isspace`` does not), each hashed by the
MinHash kernel's :func:`~factory.dedup.minhash_kernel.word_hash`; n-grams are compared by 64-bit hashes, so a collision (~1e-10 for a 100k-character text)
could only lower the distinct count by one.
"""

from __future__ import annotations

import numba
import numpy as np

from factory.dedup.minhash_kernel import fmix64, word_hash
from factory.dedup.shingles import _COMBINE

CHAR_BASE = np.uint64(0x100000001B3)


@numba.njit(nogil=True, cache=True)
def distinct_count(hashes):
    """How many distinct values ``hashes`` (uint64) holds: open addressing, linear probing."""
    size = 2
    while size < 2 * hashes.size:
        size <<= 1
    mask = np.uint64(size - 1)
    slots = np.zeros(size, np.uint64)
    used = np.zeros(size, np.bool_)
    distinct = 0
    for i in range(hashes.size):
        value = hashes[i]
        slot = fmix64(value) & mask
        while used[slot] and slots[slot] != value:
            slot = (slot + np.uint64(1)) & mask
        if not used[slot]:
            used[slot] = True
            slots[slot] = value
            distinct += 1
    return distinct


@numba.njit(nogil=True, cache=True)
def ngram_hashes(units, n, base):
    """The polynomial hashes sum(units[i + j] * base ** (n - 1 - j)) of every n-gram (mod 2**64), rolled:
    O(1) per position whatever n."""
    total = units.size - n + 1 if n > 0 else 0
    out = np.empty(max(total, 0), np.uint64)
    if out.size == 0:
        return out
    top, acc = np.uint64(1), np.uint64(0)
    for j in range(n):
        acc = acc * base + np.uint64(units[j])
        if j:
            top *= base
    out[0] = acc
    for first in range(1, out.size):
        acc = (acc - np.uint64(units[first - 1]) * top) * base + np.uint64(units[first + n - 1])
        out[first] = acc
    return out


@numba.njit(nogil=True, cache=True)
def _share(hashes):
    return 1.0 - distinct_count(hashes) / hashes.size if hashes.size else 0.0


@numba.njit(nogil=True, cache=True)
def repeated_shares(cps, table, word_ngram, char_ngram):
    """``(word share, character share)`` of the text ``cps`` (uint32 code points); ``table[c]`` marks the
    non-whitespace code points (sized for every code point). An n of 0, or a text with fewer than n units, gives 0."""
    n = cps.size
    words = np.empty(n // 2 + 1, np.uint64)
    count, i = 0, 0
    while i < n and word_ngram > 0:
        if not table[cps[i]]:
            i += 1
            continue
        words[count], i = word_hash(cps, i, n, table)
        count += 1
    return _share(ngram_hashes(words[:count], word_ngram, _COMBINE)), _share(ngram_hashes(cps, char_ngram, CHAR_BASE))
