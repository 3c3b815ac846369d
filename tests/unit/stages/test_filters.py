"""Quality filters: each pure check on a table of cases, and QualityFilter on hand-made pyarrow tables."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from factory import schema
from factory.stages.filter.infra import infra_failure, mark_failures
from factory.stages.filter.quality import (
    QualityConfig,
    QualityFilter,
    length_outlier,
    repeated_shares,
    truncated,
)

GOOD = "7+5=12\n12+9=21\n21-3=18\n</think>\n\n\\boxed{18}"


def rows_table(*rows: dict) -> pa.Table:
    """SCORED_SCHEMA rows: a correct, ok sample of prompt p0 overridden by each dict."""
    base = dict(prompt_id="p0", task="math", prompt="What is 7+5+9-3?", source="t", source_row=1, sample_index=0,
                sample_id="p0:k:0", gen_key="k", completion=GOOD, finish_reason="stop", completion_tokens=30,
                gen_status="ok", verdict="correct")  # fmt: skip
    full = [{**base, **row} for row in rows]
    keys = {key for row in full for key in row}  # from_pylist reads the first row's keys only
    return schema.conform(pa.Table.from_pylist([{key: row.get(key) for key in keys} for row in full]), schema.SCORED_SCHEMA)


@pytest.mark.parametrize(
    ("gen_status", "verdict", "reward_error", "expected"),
    [
        ("ok", "correct", None, None),
        ("ok", None, None, None),
        ("prompt_too_long", None, None, "gen_prompt_too_long"),
        ("engine_error", "error", "x", "gen_engine_error"),
        ("ok", "error", None, "verify_error"),
        ("ok", "timeout", "x", "verify_timeout"),
        ("ok", "wrong", "rm_failure: boom", "reward_error"),
    ],
)
def test_infra_failure_names_the_failed_stage(gen_status, verdict, reward_error, expected):
    assert infra_failure(gen_status, verdict, reward_error) == expected


@pytest.mark.parametrize(("finish_reason", "expected"), [("stop", None), (None, None), ("length", "truncated")])
def test_truncated_flags_length_stops(finish_reason, expected):
    assert truncated(finish_reason) == expected


@pytest.mark.parametrize(
    ("tokens", "low", "high", "expected"),
    [(50, None, None, None), (5, 10, None, "too_short"), (10, 10, 100, None), (101, 10, 100, "too_long"), (None, 10, 100, None)],
)
def test_length_outlier_uses_fixed_bounds(tokens, low, high, expected):
    assert length_outlier(tokens, low, high) == expected


@pytest.mark.parametrize(
    ("text", "word_ngram", "char_ngram", "expected"),
    [
        ("a b c d e f g h", 4, 0, (0.0, 0.0)),
        ("a b c d a b c d a b c d", 4, 0, (1 - 4 / 9, 0.0)),
        ("a b", 4, 3, (0.0, 0.0)),
        ("abcabcabc", 1, 3, (0.0, 1 - 3 / 7)),
        ("", 4, 10, (0.0, 0.0)),
    ],
)
def test_repeated_shares_count_repeated_ngrams(text, word_ngram, char_ngram, expected):
    assert repeated_shares(text, word_ngram, char_ngram) == pytest.approx(expected)


def exact_share(units, n: int) -> float:
    """The reference: the exact set of n-gram tuples."""
    total = len(units) - n + 1
    return 1 - len({tuple(units[i : i + n]) for i in range(total)}) / total if total > 0 else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_repeated_shares_equal_the_exact_sets_of_ngrams(seed):
    """Words are str.split()'s (Unicode whitespace included); loops, CJK and formulas alike."""
    import random

    rng = random.Random(seed)
    pieces = ["Let", "me", "check", "7+5=12", "所以", "答案", "\\boxed{12}", "the", "sum", "é"]
    spaces = [" ", "\n", "\t", "\u3000", "\xa0", "  "]
    text = "".join(rng.choice(pieces) + rng.choice(spaces) for _ in range(rng.randint(50, 400)))
    word, char = repeated_shares(text, 4, 10)
    assert word == pytest.approx(exact_share(text.split(), 4))
    assert char == pytest.approx(exact_share(text, 10))


LOOP = "Let me check the sum again. " * 40
MIXED = "7+5=12 所以 答案是 12\n</think>\n\n\\boxed{12}"


@pytest.mark.parametrize(
    ("row", "config", "expected"),
    [
        ({}, {}, None),
        ({"finish_reason": "length", "completion": "7+5=12"}, {}, "truncated"),
        ({"finish_reason": "length", "completion": "7+5=12"}, {"drop_truncated": False}, "unclosed_think"),
        ({"completion": "7+5=12\n</think>\n"}, {}, "missing_answer"),
        ({"completion_tokens": 3}, {"min_completion_tokens": 5}, "too_short"),
        ({"completion_tokens": 3000}, {"max_completion_tokens": 2048}, "too_long"),
        ({"completion": LOOP + "\n</think>\n\n\\boxed{1}"}, {}, "word_repetition"),
        ({"completion": LOOP + "\n</think>\n\n\\boxed{1}"}, {"max_repeated_word_ngram_share": None}, "char_repetition"),
        ({"completion": MIXED}, {}, None),  # the language stage's check, not quality's
    ],
)
def test_quality_filter_sets_first_reason(row, config, expected):
    out = QualityFilter(QualityConfig(**config))(rows_table(row))
    assert out.column("drop_reason").to_pylist() == [expected]
    assert out.column("drop_stage").to_pylist() == [None if expected is None else "quality"]


def test_infra_stage_marks_upstream_failures_with_its_name():
    table = rows_table(
        {"gen_status": "engine_error", "completion": None}, {"verdict": "timeout"}, {"reward_error": "rm_failure: x"}
    )
    out = mark_failures(table)
    assert out.column("drop_reason").to_pylist() == ["gen_engine_error", "verify_timeout", "reward_error"]
    assert set(out.column("drop_stage").to_pylist()) == {"infra"}


def test_quality_filter_keeps_earlier_drop_reasons():
    table = rows_table({"drop_reason": "exact_duplicate", "drop_stage": "dedup", "finish_reason": "length"})
    out = QualityFilter(QualityConfig())(table)
    assert out.select(["drop_reason", "drop_stage"]).to_pylist() == [{"drop_reason": "exact_duplicate", "drop_stage": "dedup"}]


def test_quality_filter_returns_one_row_per_row_with_all_columns():
    table = rows_table(*({"sample_index": i, "finish_reason": "length" if i % 2 else "stop"} for i in range(6)))
    out = QualityFilter(QualityConfig())(table)
    assert out.num_rows == 6
    assert out.column_names == table.column_names
    assert out.column("sample_index").to_pylist() == list(range(6))


def test_quality_filter_adds_drop_columns_when_absent():
    table = rows_table({"finish_reason": "length"}).drop_columns(["drop_reason", "drop_stage"])
    out = QualityFilter(QualityConfig())(table)
    assert out.column("drop_reason").type == pa.string()
    assert out.column("drop_reason").to_pylist() == ["truncated"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"word_ngram": 0}, "word_ngram"),
        ({"min_completion_tokens": 10, "max_completion_tokens": 5}, "min_completion_tokens"),
    ],
)
def test_quality_config_errors_name_the_field(config, field):
    with pytest.raises(ValidationError, match=field):
        QualityConfig(**config)
