"""Short eval items (too few words for the n-gram index) are matched by whole text and by formula."""

from __future__ import annotations

from factory.dedup.ngrams import NgramIndex
from factory.dedup.short_items import ShortItemIndex, formulas, text_key


def test_formulas_need_three_numbers_and_ignore_spaces():
    assert formulas("What is 7 + 2+ 4?") == {"7+2+4"}
    assert formulas("What is 7+2?") == set()
    assert formulas("Then 3*4-1.5 and 2^3^2") == {"3*4-1.5", "2^3^2"}


def test_text_key_ignores_case_whitespace_and_the_final_mark():
    assert text_key("What is 7 + 2?") == text_key("what is 7+2") == "whatis7+2"


def test_a_short_item_is_invisible_to_the_ngram_index():
    assert NgramIndex.build({"eval": ["What is 7+2+4?"]}, 13).match(["What is 7+2+4?"]) == [None]


def test_verbatim_and_reworded_short_items_are_matched():
    index = ShortItemIndex.build({"eval": ["What is 7+2+4+1+8?", "What is 9+9?"]}, max_words=13)
    texts = ["What is 7+2+4+1+8?", "Compute 7 + 2 + 4 + 1 + 8.", "what is 9+9", "Evaluate: 7+2+4+1+8"]
    assert index.match(texts) == ["eval"] * 4


def test_other_problems_are_not_matched():
    index = ShortItemIndex.build({"eval": ["What is 7+2+4+1+8?"]}, max_words=13)
    texts = ["What is 7+2+4+1+9?", "What is 2+4+1+8?", "What is 7+2?", "Compute 8 + 1 + 4 + 2 + 7."]
    assert index.match(texts) == [None] * 4


def test_long_entries_are_left_to_the_ngram_index():
    long_item = "A train leaves at 3 and travels 7+2+4 miles every hour for several long and tiring hours"
    index = ShortItemIndex.build({"eval": [long_item]}, max_words=13)
    assert index.entries == {"eval": 0}
    assert index.match(["What is 7+2+4?"]) == [None]


def test_the_first_benchmark_in_order_wins():
    index = ShortItemIndex.build({"a": ["What is 1+2+3?"], "b": ["Compute 1+2+3"]}, max_words=13)
    assert index.match(["Find 1 + 2 + 3."]) == ["a"]
