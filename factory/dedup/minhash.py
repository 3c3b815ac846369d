"""MinHash signatures for a batch of documents, bit-identical to datasketch's ``MinHash``.

Contract:
- :class:`MinHasher` reproduces datasketch 2.x's default ``"affine32"`` scheme: permutation
  parameters drawn by ``np.random.RandomState(seed)`` exactly as ``MinHash._init_permutations``
  draws them, each 32-bit input hash pre-mixed with the MurmurHash3 32-bit finalizer, then
  ``a * h + b mod 2^32``, minimum per permutation. So for the same 32-bit shingle hashes,
  ``signatures(...)[i]`` equals ``MinHash(num_perm, seed, hashfunc=identity)`` updated with
  document i's hashes (tests check this). A stored signature can be rebuilt as a datasketch
  object with ``LeanMinHash(seed=seed, hashvalues=sig, scheme="affine32")``.
- A document without shingles gets the empty signature (all ``2^32 - 1``), as datasketch does.
- :func:`lsh_params` picks (bands, rows) for a threshold exactly as ``datasketch.MinHashLSH``
  does (``_optimal_param``: minimise the weighted false-positive + false-negative areas).
- :meth:`MinHasher.text_signatures` (what the stages call) gives the same values; for word
  shingles it runs a numba kernel, compiled once per machine and cached on disk.
Not covered: the ``legacy`` and ``affine64`` schemes, weighted MinHash.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from factory.dedup.hashing import fmix32
from factory.dedup.shingles import Shingles, ShingleKind, chunk_bounds, codepoints, shingles, word_char_table

SCHEME = "affine32"
EMPTY_VALUE = np.uint32(0xFFFFFFFF)


class MinHasher:
    """Computes ``num_perm``-value signatures with datasketch's permutations for ``seed``."""

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        self.num_perm = num_perm
        self.seed = seed
        gen = np.random.RandomState(seed)
        self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)

    def signatures(self, shingles: Shingles) -> np.ndarray:
        """(n_docs, num_perm) uint32 signatures from the low 32 bits of the shingle hashes.

        One vectorised pass per permutation over all shingles of the batch, reduced per document
        with ``np.minimum.reduceat`` (faster than a (shingles × permutations) matrix, which does
        not fit in cache)."""
        sig = np.full((shingles.n_docs, self.num_perm), EMPTY_VALUE, dtype=np.uint32)
        if shingles.hashes.size == 0:
            return sig
        hv = fmix32((shingles.hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        doc = shingles.doc
        seg_starts = np.flatnonzero(np.concatenate([[True], doc[1:] != doc[:-1]]))
        per_perm = np.empty((self.num_perm, seg_starts.size), dtype=np.uint32)
        for k in range(self.num_perm):
            per_perm[k] = np.minimum.reduceat(hv * self.a[k] + self.b[k], seg_starts)
        sig[doc[seg_starts]] = per_perm.T
        return sig


    def text_signatures(self, texts: Sequence[str], kind: ShingleKind, ngram: int) -> np.ndarray:
        """(len(texts), num_perm) signatures of the texts' shingles; equal to
        ``signatures(shingles(texts, kind, ngram))``. Word shingles take the fused compiled kernel
        (tokenise, hash, shingle and min in one pass per document: ~10x faster than the numpy path
        in ``benchmarks/bench_minhash.py``); character shingles take the numpy path."""
        if kind != "word":
            return self.signatures(shingles(texts, kind, ngram))
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        lowered = [t.lower() for t in texts]
        sig = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        from factory.dedup.minhash_kernel import word_minhash  # numba on first use: not at `import factory`

        table = word_char_table()
        for begin, end in chunk_bounds(lowered):
            cps, starts, lengths = codepoints(lowered[begin:end])
            word_minhash(cps, starts, lengths, table, ngram, self.a, self.b, sig[begin:end])
        return sig


def _false_positive(threshold: float, b: int, r: int) -> float:
    from scipy.integrate import quad

    return quad(lambda s: 1 - (1 - s ** float(r)) ** float(b), 0.0, threshold)[0]


def _false_negative(threshold: float, b: int, r: int) -> float:
    from scipy.integrate import quad

    return quad(lambda s: 1 - (1 - (1 - s ** float(r)) ** float(b)), threshold, 1.0)[0]


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) minimising ``fp * weights[0] + fn * weights[1]``, as ``MinHashLSH`` chooses."""
    best, best_error = (0, 0), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            error = _false_positive(threshold, b, r) * weights[0] + _false_negative(threshold, b, r) * weights[1]
            if error < best_error:
                best, best_error = (b, r), error
    return best


def collision_probability(jaccard: float | np.ndarray, bands: int, rows: int):
    """Probability that two sets with this Jaccard similarity share at least one band (S-curve)."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=float) ** rows) ** bands
