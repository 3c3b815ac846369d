"""Rejection sampling per prompt, pass rates, drop counting and the in-memory filter composition."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from factory import schema
from factory.rows import count_table_drops
from factory.stages.filter import FilterConfig
from factory.stages.filter.infra import mark_failures
from factory.stages.filter.quality import QualityConfig, QualityFilter
from factory.stages.filter.rejection import RejectionConfig, pass_rate, reject_group

GOOD = "7+5=12\n12+9=21\n21-3=18\n</think>\n\n\\boxed{18}"


def samples(*rows: dict, prompt_id: str = "p0") -> pa.Table:
    """SCORED_SCHEMA samples of one prompt; row i has sample_index i unless overridden."""
    base = dict(prompt_id=prompt_id, task="math", prompt="What is 7+5+9-3?", source="t", source_row=1, gen_key="k",
                completion=GOOD, finish_reason="stop", completion_tokens=30, gen_status="ok", verdict="correct")  # fmt: skip
    full = [{**base, "sample_index": i, "sample_id": f"{prompt_id}:k:{i}", **row} for i, row in enumerate(rows)]
    keys = {key for row in full for key in row}  # from_pylist reads the first row's keys only
    return schema.conform(pa.Table.from_pylist([{key: row.get(key) for key in keys} for row in full]), schema.SCORED_SCHEMA)


def kept_indices(table: pa.Table) -> list[int]:
    return sorted(row["sample_index"] for row in table.to_pylist() if row["drop_reason"] is None)


def reasons(table: pa.Table) -> dict[int, str | None]:
    return {r["sample_index"]: r["drop_reason"] for r in table.select(["sample_index", "drop_reason"]).to_pylist()}


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["correct", "wrong", "no_answer", "correct"], 0.5),
        (["correct", "error", "timeout", None], 1.0),
        (["wrong", "wrong"], 0.0),
        (["error", None], None),
        ([], None),
    ],
)
def test_pass_rate_excludes_infrastructure_verdicts(verdicts, expected):
    assert pass_rate(verdicts) == expected


def test_pass_rate_is_stored_on_every_row_including_dropped_ones():
    table = samples(
        {"verdict": "correct"},
        {"verdict": "wrong"},
        {"verdict": "wrong", "drop_reason": "truncated", "drop_stage": "quality"},
        {"verdict": "error", "drop_reason": "verify_error", "drop_stage": "infra"},
    )
    out = reject_group(table, RejectionConfig())
    assert out.column("pass_rate").to_pylist() == [pytest.approx(1 / 3)] * 4


@pytest.mark.parametrize(
    ("rows", "config", "expected"),
    [
        # keep-all-correct
        ([{"verdict": "correct"}, {"verdict": "wrong"}, {"verdict": "no_answer"}, {"verdict": None}], {},
         {0: None, 1: "verdict_wrong", 2: "verdict_no_answer", 3: "verdict_missing"}),
        ([{"verdict": "correct"}, {"verdict": "wrong"}], {"require_correct": False}, {0: None, 1: None}),
        # reward threshold; a missing reward is its own reason, not a 0
        ([{"reward": 0.9}, {"reward": -1.0}, {"reward": None}], {"min_reward": 0.0},
         {0: None, 1: "below_min_reward", 2: "no_reward"}),
        # best-of-n among correct: reward desc, then fewer tokens, then sample_index
        ([{"reward": 0.5}, {"reward": 0.9, "verdict": "wrong"}, {"reward": 0.7}, {"reward": 0.7, "completion_tokens": 10}],
         {"best_of_n": 1}, {0: "not_best_of_n", 1: "verdict_wrong", 2: "not_best_of_n", 3: None}),
        ([{"reward": 0.5}, {"reward": 0.5}, {"reward": 0.5}], {"best_of_n": 1},
         {0: None, 1: "not_best_of_n", 2: "not_best_of_n"}),
        # at most k per prompt, without rewards: fewer tokens first, then sample_index
        ([{"completion_tokens": 40}, {"completion_tokens": 20}, {"completion_tokens": 30}, {}], {"max_per_prompt": 2},
         {0: "over_max_per_prompt", 1: None, 2: None, 3: "over_max_per_prompt"}),
        # the cap counts only rows still kept
        ([{"drop_reason": "truncated", "drop_stage": "quality", "completion_tokens": 1}, {}, {}], {"max_per_prompt": 1},
         {0: "truncated", 1: None, 2: "over_max_per_prompt"}),
    ],
)  # fmt: skip
def test_rejection_policies(rows, config, expected):
    assert reasons(reject_group(samples(*rows), RejectionConfig(**config))) == expected


@pytest.mark.parametrize(
    ("verdicts", "band", "expected_reason"),
    [
        (["wrong", "wrong", "wrong", "wrong"], {"min_pass_rate": 0.01}, "pass_rate_below_min"),
        (["correct"] * 4, {"max_pass_rate": 0.99}, "pass_rate_above_max"),
        (["correct", "wrong", "correct", "wrong"], {"min_pass_rate": 0.01, "max_pass_rate": 0.99}, None),
        (["correct", "wrong", "wrong", "wrong"], {"min_pass_rate": 0.25}, None),
        (["error", "error"], {"min_pass_rate": 0.01}, "pass_rate_unknown"),
    ],
)
def test_pass_rate_band_drops_whole_prompts(verdicts, band, expected_reason):
    out = reject_group(samples(*({"verdict": v} for v in verdicts)), RejectionConfig(require_correct=False, **band))
    assert set(out.column("drop_reason").to_pylist()) == {expected_reason}


def test_rejection_marks_rejection_stage_and_keeps_row_count():
    out = reject_group(samples({}, {"verdict": "wrong"}, {}), RejectionConfig(max_per_prompt=1))
    assert out.num_rows == 3
    assert out.column("drop_stage").to_pylist() == [None, "rejection", "rejection"]


def test_reject_group_refuses_rows_of_several_prompts():
    table = pa.concat_tables([samples({}, prompt_id="a"), samples({}, prompt_id="b")])
    with pytest.raises(ValueError, match="one prompt_id"):
        reject_group(table, RejectionConfig())


def test_reject_group_is_independent_of_row_order():
    rows = [{"reward": r, "completion_tokens": t} for r, t in [(0.3, 9), (0.8, 12), (0.8, 7), (0.1, 3), (0.8, 7)]]
    config = RejectionConfig(best_of_n=3, max_per_prompt=2)
    table = samples(*rows)
    shuffled = table.take([3, 0, 4, 1, 2])
    assert reasons(reject_group(table, config)) == reasons(reject_group(shuffled, config))
    assert kept_indices(reject_group(table, config)) == [2, 4]


def test_count_table_drops_counts_by_stage_and_reason():
    truncated = {"drop_reason": "truncated", "drop_stage": "quality"}
    table = samples({}, truncated, truncated, {"drop_reason": "verify_error", "drop_stage": "infra"})
    assert count_table_drops(table) == {"infra:verify_error": 1, "quality:truncated": 2}


def test_infra_then_quality_then_rejection_per_prompt():
    table = pa.concat_tables(
        [
            samples({}, {"finish_reason": "length", "verdict": "no_answer"}, {"verdict": "wrong"}, prompt_id="a"),
            samples({"verdict": "error"}, {"gen_status": "engine_error", "completion": None, "verdict": None}, prompt_id="b"),
        ]
    )
    marked = QualityFilter(QualityConfig())(mark_failures(table))
    out = pa.concat_tables([reject_group(marked.filter(pc.equal(marked["prompt_id"], p)), RejectionConfig())
                            for p in ("a", "b")])
    assert count_table_drops(out) == {
        "infra:gen_engine_error": 1,
        "infra:verify_error": 1,
        "quality:truncated": 1,
        "rejection:verdict_wrong": 1,
    }
    rates = {r["prompt_id"]: r["pass_rate"] for r in out.select(["prompt_id", "pass_rate"]).to_pylist()}
    assert rates == {"a": pytest.approx(1 / 3), "b": None}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"best_of_n": 0}, "best_of_n"),
        ({"max_per_prompt": -1}, "max_per_prompt"),
        ({"min_pass_rate": 1.5}, "min_pass_rate"),
        ({"min_pass_rate": 0.8, "max_pass_rate": 0.2}, "min_pass_rate"),
    ],
)
def test_rejection_config_errors_name_the_field(config, field):
    with pytest.raises(ValidationError, match=field):
        RejectionConfig(**config)


def test_filter_config_defaults_validate():
    assert FilterConfig().rejection.require_correct is True


def test_decisions_in_process_equal_those_of_each_prompt_alone():
    """The driver path (every prompt of a small run at once) decides as the per-prompt groups of the shuffle do."""
    from factory.stages.filter.rejection import decide_group, decide_in_process

    config = RejectionConfig(max_per_prompt=1)
    groups = [samples({"verdict": "wrong"}, {}, {}, prompt_id="b"), samples({}, {"drop_reason": "truncated"}, prompt_id="a")]
    together = decide_in_process(pa.concat_tables(groups), config)
    alone = pa.concat_tables([decide_group(group, config) for group in groups])
    assert sorted(together.to_pylist(), key=str) == sorted(alone.to_pylist(), key=str)
    assert together.column_names == ["prompt_id", "sample_id", "pass_rate", "drop_reason"]
    dropped = {row["sample_id"]: row["drop_reason"] for row in together.to_pylist() if row["drop_reason"]}
    assert dropped == {"b:k:0": "verdict_wrong", "b:k:2": "over_max_per_prompt"}  # a:k:1 was dropped before


def test_listed_drops_and_looked_up_values_reach_their_rows():
    from factory.rows import looked_up, mark_listed

    table = samples({}, {}, {"drop_reason": "truncated", "drop_stage": "quality"})
    marked = mark_listed(table, {"sample_id": {"why": pa.array(["p0:k:1", "p0:k:2"])}, "absent": {}}, "rejection")
    assert [(r["drop_reason"], r["drop_stage"]) for r in marked.to_pylist()] == [
        (None, None), ("why", "rejection"), ("truncated", "quality")]
    found = looked_up(table, "sample_id", pa.array(["p0:k:2", "p0:k:0"]), pa.array([0.25, 0.5]))
    assert found.to_pylist() == [0.5, None, 0.25]
