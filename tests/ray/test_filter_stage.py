"""The filter stages (infra, quality, rejection) on a real Ray Dataset (several blocks, prompts split across
blocks): the expected reasons, pass rates on every row, and each stage counting exactly its own drops."""

from __future__ import annotations

import pyarrow as pa
import pytest

from config_helpers import make_config
from factory import schema
from factory.pipeline import run_small
from factory.rows import count_table_drops
from factory.stages.filter import FilterConfig, QualityConfig, RejectionConfig
from factory.stages.filter.infra import FailedUpstream
from factory.stages.filter.quality import Quality
from factory.stages.filter.rejection import Rejection

GOOD = "7+5=12\n12+9=21\n21-3=18\n</think>\n\n\\boxed{18}"
CONFIG = FilterConfig(
    quality=QualityConfig(max_completion_tokens=100),
    rejection=RejectionConfig(min_reward=-0.5, best_of_n=2, min_pass_rate=0.01),
)

# (verdict, reward, overrides) per sample of each prompt.
PROMPTS = {
    "easy": [("correct", 0.9, {}), ("correct", 0.2, {}), ("correct", 0.9, {"completion_tokens": 12}), ("correct", -0.9, {})],
    "mixed": [("correct", 0.1, {}), ("wrong", 0.8, {}), ("no_answer", None, {"finish_reason": "length", "completion": "7+5"}),
              ("error", 0.3, {}), ("correct", None, {"reward_error": "rm_failure: RuntimeError: boom"})],
    "never": [("wrong", 0.5, {}), ("wrong", 0.4, {}), (None, None, {"gen_status": "engine_error", "completion": None})],
    "long": [("correct", 0.5, {"completion_tokens": 500}), ("correct", 0.1, {})],
}  # fmt: skip


def build_table() -> pa.Table:
    rows = []
    for prompt_id, prompt_samples in PROMPTS.items():
        for index, (verdict, reward, overrides) in enumerate(prompt_samples):
            rows.append(
                {"prompt_id": prompt_id, "task": "math", "prompt": f"question {prompt_id}", "source": "t", "source_row": 1,
                 "sample_index": index, "sample_id": f"{prompt_id}:k:{index}", "gen_key": "k", "completion": GOOD,
                 "finish_reason": "stop", "completion_tokens": 30, "gen_status": "ok", "verdict": verdict, "reward": reward,
                 "reward_error": None, **overrides}  # fmt: skip
            )
    return schema.conform(pa.Table.from_pylist(rows), schema.SCORED_SCHEMA)


def by_sample(rows: list[dict]) -> dict[str, tuple]:
    return {row["sample_id"]: (row["drop_stage"], row["drop_reason"], row["pass_rate"]) for row in rows}


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return build_table()


@pytest.fixture(scope="module", params=["in_process", "shuffle"])
def filtered(request, ray_local, table):
    """The Ray result, materialised once; blocks of 4 rows split prompts across blocks. Rejection decides in the
    driver (a small run) and, with the in-process ceiling at 0, in a Ray shuffle of the judged columns."""
    import ray

    from factory import runtime

    ds = ray.data.from_arrow([table.slice(start, 4) for start in range(0, table.num_rows, 4)])
    cfg = make_config(filter=CONFIG, reward={"enabled": True, "model": "tiny:reward"})  # the policies use rewards
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "IN_PROCESS_MAX_ROWS", 0 if request.param == "shuffle" else runtime.IN_PROCESS_MAX_ROWS)
        return run_small([FailedUpstream, Quality, Rejection], cfg, ds)


def test_ray_filters_keep_every_row(filtered, table):
    assert filtered[0].num_rows == table.num_rows


def test_ray_filters_mark_expected_reasons(filtered):
    reasons = {sid: (stage, reason) for sid, (stage, reason, _) in by_sample(filtered[0].to_pylist()).items()}
    assert reasons == {
        "easy:k:0": (None, None),
        "easy:k:1": ("rejection", "not_best_of_n"),
        "easy:k:2": (None, None),
        "easy:k:3": ("rejection", "below_min_reward"),
        "mixed:k:0": (None, None),
        "mixed:k:1": ("rejection", "verdict_wrong"),
        "mixed:k:2": ("quality", "truncated"),
        "mixed:k:3": ("infra", "verify_error"),
        "mixed:k:4": ("infra", "reward_error"),
        "never:k:0": ("rejection", "pass_rate_below_min"),
        "never:k:1": ("rejection", "pass_rate_below_min"),
        "never:k:2": ("infra", "gen_engine_error"),
        "long:k:0": ("quality", "too_long"),
        "long:k:1": (None, None),
    }


def test_ray_filters_store_pass_rate_on_every_row(filtered):
    rates = {row["sample_id"]: row["pass_rate"] for row in filtered[0].to_pylist()}
    expected = {"easy": 1.0, "mixed": 2 / 4, "never": 0.0, "long": 1.0}
    assert rates == {sid: pytest.approx(expected[sid.split(":")[0]]) for sid in rates}


def test_each_stage_counts_exactly_its_own_drops(filtered):
    table, records = filtered
    counted = {f"{record.name}:{reason}": n for record in records for reason, n in record.drops.items()}
    assert counted == count_table_drops(table)
    assert sum(counted.values()) == 10
    assert [record.kept_out for record in records] == [11, 9, 4]


def test_rejection_shuffles_only_the_judged_columns(monkeypatch, ray_local, table):
    """The hash shuffle moves the judged columns, never the text (the driver path collects the same columns)."""
    import ray
    from ray.data import Dataset

    from factory import runtime
    from factory.stages.filter.rejection import JUDGED_COLUMNS

    shuffled: list[list[str]] = []
    groupby = Dataset.groupby

    def spy(self, key, **kwargs):
        shuffled.append(self.schema().names)
        return groupby(self, key, **kwargs)

    monkeypatch.setattr(runtime, "IN_PROCESS_MAX_ROWS", 0)
    monkeypatch.setattr(Dataset, "groupby", spy)
    cfg = make_config(filter=CONFIG, reward={"enabled": True, "model": "tiny:reward"})
    out, _ = run_small([Rejection], cfg, ray.data.from_arrow(table))
    assert out.num_rows == table.num_rows
    assert len(shuffled) == 1 and set(shuffled[0]) <= set(JUDGED_COLUMNS) and "completion" not in shuffled[0]


def test_rejection_passes_an_empty_dataset_through(ray_local, table):
    import ray

    cfg = make_config(filter=CONFIG, reward={"enabled": True, "model": "tiny:reward"})
    out, records = run_small([Rejection], cfg, ray.data.from_arrow(table.slice(0, 0)))
    assert out.num_rows == 0 and records[0].drops == {}
