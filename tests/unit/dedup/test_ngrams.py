"""Decontamination n-gram index: planted GSM8K questions are caught, nothing else is."""

from __future__ import annotations

import json
import random

import pytest

from factory.dedup.ngrams import NgramIndex


@pytest.fixture(scope="module")
def gsm8k_questions(shared_data):
    with open(shared_data / "gsm8k" / "test.jsonl", encoding="utf-8") as handle:
        return [json.loads(line)["question"] for line in handle]


def _synthetic_prompts(count: int) -> list[str]:
    rng = random.Random(0)
    names = ["Ava", "Ben", "Chen", "Dara", "Eli"]
    items = ["marbles", "stickers", "apples", "coins", "books"]
    return [
        f"{rng.choice(names)} has {rng.randint(2, 90)} {rng.choice(items)} and gives away {rng.randint(1, 9)} of them "
        f"each day for {rng.randint(2, 9)} days, then buys {rng.randint(1, 50)} more. How many are left? (case {i})"
        for i in range(count)
    ]


def _reword(question: str) -> str:
    """Change the first number (or else the first name), as a light paraphrase would."""
    words = question.split()
    numbers = [i for i, w in enumerate(words) if w.strip(".,?$%").isdigit()]
    names = [i for i, w in enumerate(words) if i > 0 and w[:1].isupper()]
    i = (numbers or names)[0]
    words[i] = str(int(words[i].strip(".,?$%")) + 7) if numbers else "Zorblax"
    return " ".join(words)


@pytest.mark.parametrize("n", [13, 8])
def test_planted_questions_caught_and_nothing_else(gsm8k_questions, n):
    index = NgramIndex.build({"gsm8k": gsm8k_questions}, n)
    planted = [q for q in gsm8k_questions[:200] if len(q.split()) >= 2 * n + 8][:20]
    reworded = [_reword(q) for q in planted[10:]]
    assert len(planted) == 20 and all(r != q for r, q in zip(reworded, planted[10:]))
    texts = _synthetic_prompts(300) + planted[:10] + reworded
    hits = index.match(texts)
    assert hits[:300] == [None] * 300
    assert hits[300:] == ["gsm8k"] * len(planted)


def test_text_matching_no_benchmark_is_clean():
    index = NgramIndex.build({"a": ["one two three four five six"], "b": ["seven eight nine ten eleven twelve"]}, 4)
    assert index.match(["ONE, two three four!", "nine ten eleven twelve", "four five six seven"]) == ["a", "b", None]
