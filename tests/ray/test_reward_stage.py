"""Reward-model stage on the tiny RM: real Ray actor pool (one CPU actor) and the scorer in-process
(for packing, fault injection and non-finite scores)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from pydantic import ValidationError

from factory import schema
from config_helpers import make_config
from factory.pipeline import Pipeline, run_small
from factory.stages.reward import Reward, RewardConfig, RewardScorer, pack_micro_batches

GOOD = "7+5=12\n12+9=21\n21-3=18\n</think>\n\n\\boxed{18}"
MAX_LENGTH = 120


def samples(*rows: dict) -> pa.Table:
    """SCORED_SCHEMA samples; row i has sample_index i unless overridden."""
    base = dict(prompt_id="p0", task="math", prompt="What is 7+5+9-3?", source="t", source_row=1, gen_key="k",
                completion=GOOD, finish_reason="stop", gen_status="ok")  # fmt: skip
    full = [{**base, "sample_index": i, "sample_id": f"p0:k:{i}", **row} for i, row in enumerate(rows)]
    keys = {key for row in full for key in row}  # from_pylist reads the first row's keys only
    return schema.conform(pa.Table.from_pylist([{key: row.get(key) for key in keys} for row in full]), schema.SCORED_SCHEMA)


def config(**overrides) -> RewardConfig:
    values = dict(enabled=True, model="tiny:reward", num_gpus_per_actor=0.0, max_length=MAX_LENGTH)
    return RewardConfig(**(values | {"max_tokens_per_batch": 4 * MAX_LENGTH} | overrides))


# Rows by case: varied lengths so packing forms several micro-batches.
CASES = [
    {},
    {"completion": "7+5=12\n</think>\n\n\\boxed{12}"},
    {"completion": "9-3=6\n6+1=7\n</think>\n\n\\boxed{7}"},
    {"completion": GOOD.replace("18", "17")},
    {"gen_status": "engine_error", "completion": None},
    {"gen_status": "prompt_too_long", "completion": None},
    {"drop_reason": "truncated", "drop_stage": "quality"},
    {"completion": "1+1=2\n" * 40 + "</think>\n\n\\boxed{2}"},  # > MAX_LENGTH tokens
]
SCORED, SKIPPED, TOO_LONG = [0, 1, 2, 3], [4, 5, 6], 7


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return samples(*CASES)


@pytest.fixture(scope="module")
def scorer(tiny_models) -> RewardScorer:
    return RewardScorer(config())


@pytest.fixture(scope="module")
def ray_scored(ray_local, tiny_models, table) -> dict[int, dict]:
    import ray

    ds = ray.data.from_arrow([table.slice(0, 4), table.slice(4)])
    rows = run_small([Reward], make_config(reward=config(batch_size=3)), ds)[0].to_pylist()
    return {row["sample_index"]: row for row in rows}


def test_ray_stage_returns_one_row_per_input_row(ray_scored, table):
    assert sorted(ray_scored) == list(range(table.num_rows))


def test_ray_stage_scores_ok_rows_with_finite_rewards(ray_scored):
    for index in SCORED:
        assert math.isfinite(ray_scored[index]["reward"]) and ray_scored[index]["reward_error"] is None


def test_ray_stage_skips_failed_and_dropped_rows(ray_scored):
    for index in SKIPPED:
        assert ray_scored[index]["reward"] is None and ray_scored[index]["reward_error"] is None


def test_row_longer_than_max_length_is_an_error_not_a_score(ray_scored):
    assert ray_scored[TOO_LONG]["reward"] is None
    assert ray_scored[TOO_LONG]["reward_error"].startswith("input_too_long")


def test_ray_stage_matches_in_process_scores(ray_scored, scorer, table):
    local = scorer(table).column("reward").to_pylist()
    assert [ray_scored[i]["reward"] for i in SCORED] == pytest.approx([local[i] for i in SCORED], abs=1e-5)


def test_scores_do_not_depend_on_micro_batch_packing(scorer, table):
    packed = scorer(table).column("reward").to_pylist()
    single = RewardScorer(config(max_tokens_per_batch=MAX_LENGTH))(table).column("reward").to_pylist()
    assert [single[i] for i in SCORED] == pytest.approx([packed[i] for i in SCORED], abs=1e-5)


def test_rm_crash_mid_batch_yields_reward_error_rows(scorer, monkeypatch):
    calls = []
    real_forward = scorer.forward

    def crash_on_second_micro_batch(sequences):
        calls.append(len(sequences))
        if len(calls) == 2:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return real_forward(sequences)

    monkeypatch.setattr(scorer, "forward", crash_on_second_micro_batch)
    monkeypatch.setattr(scorer, "cfg", config(max_tokens_per_batch=MAX_LENGTH))  # about one row per micro-batch
    out = scorer(scorer_table := samples(*CASES[:4]))
    assert len(calls) >= 2
    rewards, errors = out.column("reward").to_pylist(), out.column("reward_error").to_pylist()
    failed = [i for i in range(scorer_table.num_rows) if errors[i] is not None]
    assert len(failed) == calls[1]
    assert all(errors[i].startswith("rm_failure: RuntimeError") and rewards[i] is None for i in failed)
    survivors = [i for i in range(scorer_table.num_rows) if i not in failed]
    assert survivors and all(math.isfinite(rewards[i]) for i in survivors)


def test_non_finite_rm_output_is_reward_error(scorer, monkeypatch):
    monkeypatch.setattr(scorer, "forward", lambda sequences: [float("nan")] * len(sequences))
    out = scorer(samples({}))
    assert out.column("reward").to_pylist() == [None]
    assert out.column("reward_error").to_pylist()[0].startswith("rm_non_finite")


def test_cpu_actor_runs_the_rm_in_fp32(scorer):
    import torch

    assert scorer.device.type == "cpu" and scorer.model.dtype == torch.float32


def test_render_uses_the_rm_template_with_think_prefix(scorer):
    text = scorer.render("What is 1+2?", "1+2=3\n</think>\n\n\\boxed{3}")
    assert text.endswith("What is 1+2?<｜Assistant｜><think>\n1+2=3\n</think>\n\n\\boxed{3}<｜end▁of▁sentence｜>")


@pytest.mark.parametrize(
    ("lengths", "budget", "expected"),
    [
        ([], 100, []),
        ([10, 10, 10], 100, [[0, 1, 2]]),
        ([50, 10, 30, 20], 60, [[1, 3], [2], [0]]),
        ([40, 40, 40], 100, [[0, 1], [2]]),
        ([150, 10], 100, [[1], [0]]),
    ],
)
def test_pack_micro_batches_respects_the_padded_token_budget(lengths, budget, expected):
    assert pack_micro_batches(lengths, budget) == expected


def test_disabled_scoring_is_left_out_of_the_pipeline():
    assert Pipeline([Reward], make_config(), run=None).stages == []


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"enabled": True}, "model"),
        ({"trust_remote_code": True}, "revision"),
        ({"max_length": 1000, "max_tokens_per_batch": 500}, "max_tokens_per_batch"),
        ({"num_actors": 0}, "num_actors"),
        ({"num_gpus_per_actor": -1}, "num_gpus_per_actor"),
    ],
)
def test_reward_config_errors_name_the_field(values, field):
    with pytest.raises(ValidationError, match=field):
        RewardConfig(**values)
