"""Policy selection over a small hand-made pool (kept rows + dropped side table), and writing a policy's rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.ablate.config import PolicySpec
from factory.ablate.policies import eligible, pool_index, select, write_policy
from factory.prompting import PromptingConfig
from factory.schema import DATASET_SCHEMA, conform

# (sample_id, prompt_id, verdict, reward, gen_status, completion_tokens, drop_stage): None = a kept row
POOL = [
    ("a0", "a", "correct", 0.9, "ok", 40, None),           # kept
    ("a1", "a", "correct", 0.95, "ok", 40, "dedup"),       # exact duplicate of a kept chain, higher reward
    ("a2", "a", "wrong", 0.99, "ok", 40, "rejection"),     # the RM likes it best, but it is wrong
    ("b0", "b", "correct", 0.2, "ok", 40, None),           # kept
    ("b1", "b", "correct", None, "ok", 40, "quality"),     # correct but unscored: never RM-chosen
    ("c0", "c", "wrong", 0.5, "ok", 40, "rejection"),      # never solved
    ("c1", "c", None, None, "error", 0, "infra"),          # no response
    ("d0", "d", "correct", 0.7, "ok", 40, "decontam"),     # contaminated: no policy trains on it
    ("e0", "e", "correct", 0.8, "ok", 40, None),           # a held-out problem's text
]
HELDOUT = {"prompt e"}


def _row(sample_id, prompt_id, verdict, reward, status, tokens, stage) -> dict:
    return {"prompt_id": prompt_id, "task": "math", "prompt": f"prompt {prompt_id}", "reference": "1",
            "source": "test", "source_row": 1, "sample_index": int(sample_id[1]), "sample_id": sample_id,
            "gen_key": "k", "gen_status": status, "completion": f"chain {sample_id}" if tokens else None,
            "completion_tokens": tokens, "verdict": verdict, "reward": reward, "pass_rate": 0.5,
            "drop_stage": stage, "drop_reason": None if stage is None else f"{stage}_reason"}


class FakeSnapshot:
    """The read API run_ablation uses of a Snapshot, over two in-memory tables."""

    version = "v000001"
    manifest = {"lineage": {}}

    def __init__(self):
        rows = [_row(*r) for r in POOL]
        kept = [r for r in rows if r["drop_stage"] is None]
        self.kept = conform(pa.Table.from_pylist([{**r, "messages": []} for r in kept]), DATASET_SCHEMA)
        self.dropped = pa.Table.from_pylist([r for r in rows if r["drop_stage"] is not None])

    def side_tables(self):
        return ["dropped"]

    def read(self, columns=None):
        return self.kept.select(columns)

    def read_side(self, name, columns=None):
        return self.dropped.select(columns)

    def to_arrow_dataset(self, side=None):
        import pyarrow.dataset as ds

        return ds.dataset(self.kept if side is None else self.dropped)


@pytest.fixture
def pool():
    table, left_out = eligible(pool_index(FakeSnapshot()), HELDOUT)
    assert left_out == {"no_response": 1, "contaminated": 1, "heldout_problem": 1}
    return table


def _ids(pool, **spec) -> list[str]:
    return select(pool, PolicySpec(name="p", **spec))["sample_id"].to_pylist()


def test_unfiltered_is_every_sample_with_a_response_wrong_and_filtered_ones_included(pool):
    assert _ids(pool, select="all") == ["a0", "a1", "a2", "b0", "b1", "c0"]


def test_verified_is_every_correct_sample_whatever_dropped_it_later(pool):
    assert _ids(pool, select="verified") == ["a0", "a1", "b0", "b1"]


def test_rm_best_is_per_prompt_the_best_scored_correct_samples(pool):
    assert _ids(pool, select="rm_best") == ["a1", "b0"]  # not a2 (wrong), not b1 (no reward)
    assert _ids(pool, select="rm_best", rm_top_k=2) == ["a0", "a1", "b0"]
    assert _ids(pool, select="rm_best", rm_top_k=2, min_reward=0.5) == ["a0", "a1"]


def test_dedup_is_the_snapshots_kept_rows(pool):
    assert _ids(pool, select="dedup") == ["a0", "b0"]


def test_a_policys_rows_are_written_with_their_chat_messages(pool, tmp_path):
    ids = _ids(pool, select="verified")
    prompting = PromptingConfig()
    files = write_policy(FakeSnapshot(), ids, tmp_path / "verified", prompting)
    table = pq.read_table(files[0])
    assert sorted(table["sample_id"].to_pylist()) == ids and table.schema.equals(DATASET_SCHEMA, check_metadata=False)
    by_id = {r["sample_id"]: r["messages"] for r in table.to_pylist()}
    assert by_id["a1"][-1] == {"role": "assistant", "content": "<think>\nchain a1"}
    assert by_id["a1"][0]["role"] == "user" and by_id["a1"][0]["content"].startswith("prompt a")
    mtime = (tmp_path / "verified" / "part-00000.parquet").stat().st_mtime_ns
    write_policy(FakeSnapshot(), ids, tmp_path / "verified", prompting)  # a rerun keeps the same file
    assert (tmp_path / "verified" / "part-00000.parquet").stat().st_mtime_ns == mtime
