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

from factory.dedup.shingles import _COMBINE, _P_INV

# Module-level constants: numba freezes them into the cached code (this file's edits invalidate it).
P_INV = np.uint64(_P_INV)
COMBINE = np.uint64(_COMBINE)
S33 = np.uint64(33)
M1 = np.uint64(0xFF51AFD7ED558CCD)
M2 = np.uint64(0xC4CEB9FE1A85EC53)
LOW32 = np.uint64(0xFFFFFFFF)
EMPTY = np.uint32(0xFFFFFFFF)


@numba.njit(inline="always", cache=True)
def fmix64(x):
    x ^= x >> S33
    x *= M1
    x ^= x >> S33
    x *= M2
    return x ^ (x >> S33)


@numba.njit(inline="always", cache=True)
def fmix32(x):
    x ^= x >> np.uint32(16)
    x = np.uint32(x * np.uint32(0x85EBCA6B))
    x ^= x >> np.uint32(13)
    x = np.uint32(x * np.uint32(0xC2B2AE35))
    return x ^ (x >> np.uint32(16))


@numba.njit(nogil=True, cache=True)
def word_minhash(cps, starts, lengths, table, ngram, a, b, out):
    """``out[d]`` = the affine32 MinHash of document d's word ``ngram``-shingles; document d is
    ``cps[starts[d]:starts[d] + lengths[d]]`` (lower-cased code points), ``table`` marks word characters."""
    words = np.empty(lengths.max() // 2 + 2 if lengths.size else 1, np.uint64)
    mins = np.empty(a.size, np.uint32)
    for d in range(starts.size):
        n_words, i, end = 0, starts[d], starts[d] + lengths[d]
        while i < end:
            if table[cps[i]]:
                h, power, j = np.uint64(0), np.uint64(1), i
                while j < end and table[cps[j]]:
                    h += (np.uint64(cps[j]) + np.uint64(1)) * power
                    power *= P_INV
                    j += 1
                words[n_words] = fmix64(h ^ (np.uint64(j - i) * COMBINE))
                n_words += 1
                i = j
            else:
                i += 1
        mins[:] = EMPTY
        width = min(ngram, n_words)
        for first in range(n_words - width + 1 if n_words else 0):
            acc = np.uint64(0)
            for j in range(width):
                acc = acc * COMBINE + words[first + j]
            hv = fmix32(np.uint32(fmix64(acc ^ np.uint64(width)) & LOW32))
            for k in range(a.size):
                v = np.uint32(a[k] * hv + b[k])
                if v < mins[k]:
                    mins[k] = v
        out[d] = mins
