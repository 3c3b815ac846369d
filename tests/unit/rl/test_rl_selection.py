"""RL prompt selection from a committed snapshot: prompts solved sometimes are selected, the rest counted by reason."""

from __future__ import annotations

import pyarrow as pa
import pytest

from factory.rl.config import SelectionConfig
from factory.rl.selection import select_from_snapshot
from factory.schema import DATASET_SCHEMA, SCORED_SCHEMA, conform
from factory.store import SnapshotStore


def _rows(prompt_ids: list[str], pass_rates: list, drop_stage=None, drop_reason=None) -> list[dict]:
    return [{"prompt_id": pid, "task": "math", "prompt": f"What is {i}+1?", "reference": str(i + 1), "source": "s",
             "source_row": i + 1, "sample_index": 0, "sample_id": f"{pid}:0", "gen_key": "k", "gen_status": "ok",
             "pass_rate": rate, "drop_stage": drop_stage, "drop_reason": drop_reason}
            for i, (pid, rate) in enumerate(zip(prompt_ids, pass_rates))]


def _commit(tmp_path, kept: list[dict], dropped: list[dict] | None):
    store = SnapshotStore(str(tmp_path / "store"), "rl")
    with store.begin(schema=DATASET_SCHEMA) as staged:
        staged.write_table(conform(pa.Table.from_pylist(kept), DATASET_SCHEMA))
        if dropped is not None:
            staged.write_table(conform(pa.Table.from_pylist(dropped), SCORED_SCHEMA), side="dropped")
        return staged.commit({"note": "test"})


@pytest.fixture
def snapshot(tmp_path):
    kept = _rows(["half", "quarter", "always", "contaminated"], [0.5, 0.25, 1.0, 0.5])
    dropped = (_rows(["half", "never", "unknown"], [0.5, 0.0, None], "rejection", "verdict_wrong")
               + _rows(["contaminated"], [0.5], "decontam", "benchmark_ngram"))
    return _commit(tmp_path, kept, dropped)


def test_prompts_solved_sometimes_are_selected(snapshot):
    selection = select_from_snapshot(snapshot, SelectionConfig())
    assert selection.prompts.column("prompt_id").to_pylist() == ["half", "quarter"]
    assert selection.prompts.column("pass_rate").to_pylist() == [0.5, 0.25]


def test_every_other_prompt_is_counted_by_reason(snapshot):
    report = select_from_snapshot(snapshot, SelectionConfig()).report
    assert report["left_out"] == {"always_solved": 1, "decontaminated": 1, "never_solved": 1, "unknown_pass_rate": 1}
    assert report["seen"] == 6 and report["selected"] == 2 and report["dropped_side_table"] is True


def test_never_solved_prompts_are_found_in_the_dropped_side_table(snapshot):
    report = select_from_snapshot(snapshot, SelectionConfig()).report
    assert report["left_out"]["never_solved"] == 1  # "never" has no kept row at all


def test_a_narrower_band_leaves_out_prompts_at_its_edges(snapshot):
    report = select_from_snapshot(snapshot, SelectionConfig(min_pass_rate=0.25, max_pass_rate=0.9)).report
    assert report["selected"] == 1 and report["left_out"]["at_or_below_min_pass_rate"] == 1


def test_max_prompts_keeps_a_seeded_choice(snapshot):
    first = select_from_snapshot(snapshot, SelectionConfig(max_prompts=1), seed=3)
    again = select_from_snapshot(snapshot, SelectionConfig(max_prompts=1), seed=3)
    assert first.prompts.column("prompt_id").to_pylist() == again.prompts.column("prompt_id").to_pylist()
    assert first.report["left_out"]["over_max_prompts"] == 1


def _with_estimates(tmp_path, rates, estimates):
    rows = _rows(["a", "b"], rates)
    for row, estimate in zip(rows, estimates):
        row["pass_rate_estimate"] = estimate
    return _commit(tmp_path, rows, None)


def test_adaptive_samplings_estimate_is_used_where_a_row_has_one(tmp_path):
    snapshot = _with_estimates(tmp_path, [1.0, 1.0], [0.4, None])
    selection = select_from_snapshot(snapshot, SelectionConfig())
    assert selection.prompts.column("prompt_id").to_pylist() == ["a"]
    assert selection.prompts["pass_rate"][0].as_py() == 0.4


def test_the_pass_rate_column_can_be_chosen(tmp_path):
    snapshot = _with_estimates(tmp_path, [1.0, 0.5], [0.4, 0.3])
    selection = select_from_snapshot(snapshot, SelectionConfig(pass_rate_from="pass_rate"))
    assert selection.prompts.column("prompt_id").to_pylist() == ["b"]
    assert selection.report["pass_rate_from"] == "pass_rate"


def test_without_a_dropped_side_table_the_report_says_so(tmp_path):
    snapshot = _commit(tmp_path, _rows(["half"], [0.5]), None)
    report = select_from_snapshot(snapshot, SelectionConfig()).report
    assert report["dropped_side_table"] is False and report["selected"] == 1
