"""MinHash signatures and LSH parameters match datasketch 2.x."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash
from datasketch.lsh import _optimal_param

from factory.dedup.minhash import MinHasher, lsh_params
from factory.dedup.shingles import shingles

DOCS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat.",
    "Short text",
    "",
    "!!! ???",
    "Ünïcödé wörds, 数学 problems and emoji 🙂 mixed with ASCII words for good measure here.",
]


def _datasketch_signature(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=lambda value: value)
    for value in hashes & np.uint64(0xFFFFFFFF):
        m.update(int(value))
    return m.hashvalues


@pytest.mark.parametrize("kind,ngram,num_perm,seed", [("word", 5, 128, 1), ("word", 1, 64, 7), ("char", 5, 128, 1)])
def test_signatures_equal_datasketch_for_same_shingle_hashes(kind, ngram, num_perm, seed):
    sh = shingles(DOCS, kind, ngram)
    sig = MinHasher(num_perm, seed).signatures(sh)
    for i in range(len(DOCS)):
        assert np.array_equal(sig[i], _datasketch_signature(sh.hashes[sh.doc == i], num_perm, seed))


def test_stored_signature_rebuilds_as_lean_minhash_with_scheme():
    sig = MinHasher(128, 1).signatures(shingles(DOCS[:2], "word", 2))
    a = LeanMinHash(seed=1, hashvalues=sig[0], scheme="affine32")
    b = LeanMinHash(seed=1, hashvalues=sig[0], scheme="affine32")
    c = LeanMinHash(seed=1, hashvalues=sig[1], scheme="affine32")
    assert a.jaccard(b) == 1.0 and a.jaccard(c) < 1.0


@pytest.mark.parametrize("threshold,num_perm", [(0.8, 128), (0.5, 128), (0.9, 256), (0.7, 64)])
def test_lsh_params_equal_datasketch_optimal_param(threshold, num_perm):
    assert lsh_params(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_document_without_shingles_has_empty_signature():
    sig = MinHasher(16, 1).signatures(shingles(["", "..."], "word", 3))
    assert (sig == np.uint32(0xFFFFFFFF)).all()


@pytest.mark.parametrize("kind,ngram", [("word", 5), ("word", 1), ("word", 13), ("char", 4)])
def test_text_signatures_equal_the_shingle_path(kind, ngram):
    texts = DOCS + [" ".join(f"w{i % 37}" for i in range(500)), "x\x00y z"]
    hasher = MinHasher(128, 1)
    assert np.array_equal(hasher.text_signatures(texts, kind, ngram), hasher.signatures(shingles(texts, kind, ngram)))
