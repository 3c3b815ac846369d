"""Driver-side decisions: keep rule, levels, rows already dropped, earlier snapshots."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from factory.dedup.resolve import resolve

LEVELS = {"exact_prompts": True, "near_prompts": False, "exact_responses": True, "near_responses": False}
NO_PRIOR = {"exact": np.zeros(0, np.uint64), "bands": np.zeros((0, 1), np.uint64)}


def _features(rows):
    names = ["prompt_id", "sample_id", "live", "reward", "prompt_len", "completion_len", "prompt_exact", "completion_exact"]
    table = pa.Table.from_pylist([dict(zip(names, r)) for r in rows])
    return table.set_column(6, "prompt_exact", table["prompt_exact"].cast(pa.uint64())).set_column(
        7, "completion_exact", table["completion_exact"].cast(pa.uint64())
    )


def test_keep_rule_prefers_highest_reward_then_shortest_then_smallest_id():
    features = _features([
        ("p", "p:0", True, 0.5, 9, 30, 1, 7),
        ("p", "p:1", True, 0.9, 9, 50, 1, 7),
        ("p", "p:2", True, 0.9, 9, 40, 1, 7),
        ("p", "p:3", True, None, 9, 10, 1, 7),
    ])
    decisions = resolve(features, NO_PRIOR, NO_PRIOR, LEVELS, ("highest_reward", "shortest"))
    assert sorted(decisions.sample_drops["dup_exact_response"]) == ["p:0", "p:1", "p:3"]


def test_rows_already_dropped_are_never_representatives():
    features = _features([("p", "p:0", False, 1.0, 9, 10, 1, 7), ("p", "p:1", True, 0.1, 9, 10, 1, 7)])
    decisions = resolve(features, NO_PRIOR, NO_PRIOR, LEVELS, ("highest_reward",))
    assert decisions.sample_drops.get("dup_exact_response", []) == []


def test_prompt_drop_counts_all_live_samples_of_the_prompt():
    features = _features([
        ("a", "a:0", True, 0.9, 9, 10, 5, 1), ("b", "b:0", True, 0.1, 9, 10, 5, 2),
        ("b", "b:1", True, 0.2, 9, 10, 5, 3), ("b", "b:2", False, 0.2, 9, 10, 5, 4),
    ])
    decisions = resolve(features, NO_PRIOR, NO_PRIOR, LEVELS, ("highest_reward",))
    assert decisions.prompt_drops["dup_exact_prompt"] == ["b"] and decisions.stats["dropped_rows"] == {"dup_exact_prompt": 2}


def test_match_with_earlier_snapshot_drops_every_new_member():
    features = _features([("a", "a:0", True, 0.9, 9, 10, 5, 1), ("b", "b:0", True, 0.1, 9, 10, 5, 2)])
    prior = {"exact": np.array([5], np.uint64), "bands": np.zeros((0, 1), np.uint64)}
    decisions = resolve(features, prior, NO_PRIOR, LEVELS, ("highest_reward",))
    assert sorted(decisions.prompt_drops["dup_previous_snapshot"]) == ["a", "b"]
