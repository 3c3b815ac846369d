"""The fused word-shingle MinHash kernel (numba), compiled once per machine: ``cache=True`` keeps the
machine code beside this file (or in numba's user cache when the package directory is read-only), so
a new process loads it in well under a second instead of compiling it (~5 s on a 2-core machine, in
every Ray worker that computes signatures). Imported lazily by :mod:`factory.dedup.minhash`.

It reproduces :func:`factory.dedup.shingles.shingles` hash for hash (words, polynomial word hash,
shingle combination, fmix64) and then datasketch's affine32 update; tests compare both paths.
"""

from __future__ import annotations

import numba
import numpy as np

from factory.dedup.hashing import _M32_1, _M32_2, _M64_1, _M64_2, _S33
from factory.dedup.shingles import _COMBINE, _P_INV

# Module-level constants (the numpy finalizers' own): numba freezes them into the cached code, so editing
# them where they are defined needs this file touched (or numba's cache cleared) to take effect.
P_INV = np.uint64(_P_INV)
LOW32 = np.uint64(0xFFFFFFFF)
EMPTY = np.uint32(0xFFFFFFFF)


@numba.njit(inline="always", cache=True)
def fmix64(x):
    x ^= x >> _S33
    x *= _M64_1
    x ^= x >> _S33
    x *= _M64_2
    return x ^ (x >> _S33)


@numba.njit(inline="always", cache=True)
def fmix32(x):
    x ^= x >> np.uint32(16)
    x = np.uint32(x * _M32_1)
    x ^= x >> np.uint32(13)
    x = np.uint32(x * _M32_2)
    return x ^ (x >> np.uint32(16))


@numba.njit(inline="always", cache=True)
def word_hash(cps, i, end, table):
    """The hash of the word that starts at ``cps[i]`` (the run of code points ``table`` marks as word
    characters, before ``end``), and the index after it: the one word hash of the dedup and quality kernels."""
    h, power, j = np.uint64(0), np.uint64(1), i
    while j < end and table[cps[j]]:
        h += (np.uint64(cps[j]) + np.uint64(1)) * power
        power *= P_INV
        j += 1
    return fmix64(h ^ (np.uint64(j - i) * _COMBINE)), j


@numba.njit(inline="always", cache=True)
def document_words(cps, begin, end, table, words):
    """The hashes of the words of ``cps[begin:end]``, in order, into ``words``; returns how many there are."""
    n_words, i = 0, begin
    while i < end:
        if table[cps[i]]:
            words[n_words], i = word_hash(cps, i, end, table)
            n_words += 1
        else:
            i += 1
    return n_words


@numba.njit(inline="always", cache=True)
def shingle_hash(words, first, width):
    """The 32-bit MinHash input of the shingle of ``width`` words from ``words[first]``: its combined 64-bit
    hash (as :func:`factory.dedup.shingles.shingles` makes it), low 32 bits, pre-mixed as datasketch does."""
    acc = np.uint64(0)
    for j in range(width):
        acc = acc * _COMBINE + words[first + j]
    return fmix32(np.uint32(fmix64(acc ^ np.uint64(width)) & LOW32))


@numba.njit(nogil=True, cache=True)
def word_minhash(cps, starts, lengths, table, ngram, a, b, out):
    """``out[d]`` = the affine32 MinHash of document d's word ``ngram``-shingles; document d is
    ``cps[starts[d]:starts[d] + lengths[d]]`` (lower-cased code points), ``table`` marks word characters.

    Per document: the shingles' 32-bit hashes first, then one min-reduction over them per permutation (no
    branch, no store in the inner loop): 1.14-1.24x the docs/s of the permutation loop inside the shingle
    loop on R1-length chains (benchmarks/bench_minhash.py, measure 5)."""
    capacity = lengths.max() // 2 + 2 if lengths.size else 1
    words = np.empty(capacity, np.uint64)
    hashes = np.empty(capacity, np.uint32)
    for d in range(starts.size):
        n_words = document_words(cps, starts[d], starts[d] + lengths[d], table, words)
        width = min(ngram, n_words)
        n_shingles = n_words - width + 1 if n_words else 0
        for first in range(n_shingles):
            hashes[first] = shingle_hash(words, first, width)
        for k in range(a.size):
            ak, bk, low = a[k], b[k], EMPTY
            for s in range(n_shingles):
                low = min(low, np.uint32(ak * hashes[s] + bk))
            out[d, k] = low
