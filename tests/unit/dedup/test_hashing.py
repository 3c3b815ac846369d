"""Exact-dedup normalisation and scoping."""

from __future__ import annotations

import numpy as np
import pytest

from factory.dedup.hashing import exact_hashes, normalize_exact, scoped


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Hello   World", "hello world"),
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("ｆｕｌｌｗｉｄｔｈ", "fullwidth"),  # NFKC
        ("ﬁne", "fine"),  # NFKC ligature
        ("Keep, punctuation!", "keep, punctuation!"),
    ],
)
def test_normalize_exact(text, expected):
    assert normalize_exact(text) == expected


def test_exact_hashes_equal_for_equal_normalised_text():
    a, b, c = exact_hashes(["A  b", "a b", "a c"])
    assert a == b != c


def test_scoped_keys_differ_across_scopes_only():
    keys = np.array([5, 5, 5], dtype=np.uint64)
    out = scoped(keys, np.array([1, 1, 2], dtype=np.uint64))
    assert out[0] == out[1] != out[2]
