"""Vectorised shingling: batch-independent, normalising, counting windows as documented."""

from __future__ import annotations

import numpy as np
import pytest

from factory.dedup.shingles import shingles

TEXTS = ["alpha beta gamma delta epsilon zeta eta", "one two", "", "a b c d e f g h i j k l m n o p", "x" * 40]


@pytest.mark.parametrize("kind", ["word", "char"])
def test_hashes_do_not_depend_on_the_batch(kind):
    together = shingles(TEXTS, kind, 3)
    for i, text in enumerate(TEXTS):
        alone = shingles([text], kind, 3)
        assert np.array_equal(alone.hashes, together.hashes[together.doc == i])


@pytest.mark.parametrize(
    "text,ngram,expected",
    [
        ("a b c d e", 3, 3),  # words - n + 1 windows
        ("a b", 3, 1),  # shorter than one shingle: one shingle of all words
        ("", 3, 0),
        ("... ,,, !!!", 2, 0),  # no words
        ("a b c", 3, 1),
    ],
)
def test_word_shingle_count(text, ngram, expected):
    assert shingles([text], "word", ngram).hashes.size == expected


def test_word_shingles_ignore_case_and_punctuation():
    a = shingles(["Hello, World! How are you today?"], "word", 2).hashes
    b = shingles(["hello world how   are you -- today"], "word", 2).hashes
    assert np.array_equal(a, b)


def test_char_shingles_collapse_whitespace_but_keep_punctuation():
    a = shingles(["Hello   World"], "char", 4).hashes
    assert np.array_equal(a, shingles(["hello world"], "char", 4).hashes)
    assert not np.array_equal(a, shingles(["hello, world"], "char", 4).hashes[: a.size])


def test_different_words_give_different_hashes():
    hashes = shingles([f"word{i}" for i in range(5000)], "word", 1).hashes
    assert np.unique(hashes).size == 5000


def test_rejects_unknown_kind():
    with pytest.raises(ValueError, match="shingle"):
        shingles(["a"], "line", 1)
