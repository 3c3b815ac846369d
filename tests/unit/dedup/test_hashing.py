"""Exact-dedup normalisation and scoping."""

from __future__ import annotations

import unicodedata

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


def test_normalize_exact_collapses_exactly_the_whitespace_of_the_regex_definition():
    """Split-and-join must equal ``re.sub(r"\\s+", " ", t).strip()`` (what snapshots' hashes were made with), so
    the same text keeps its exact-dedup hash across versions: both treat the same code points as whitespace."""
    import re
    import sys

    whitespace = re.compile(r"\s")
    differ = [hex(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() != bool(whitespace.fullmatch(chr(c)))]
    assert differ == []
    for text in ["\u00a0a\u2028\u2029b\x1c\x1fc\u3000\u3000d\u0085", "\u00a8x", " \t\n ", ""]:
        assert normalize_exact(text) == re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def test_exact_hashes_equal_for_equal_normalised_text():
    a, b, c = exact_hashes(["A  b", "a b", "a c"])
    assert a == b != c


def test_scoped_keys_differ_across_scopes_only():
    keys = np.array([5, 5, 5], dtype=np.uint64)
    out = scoped(keys, np.array([1, 1, 2], dtype=np.uint64))
    assert out[0] == out[1] != out[2]
