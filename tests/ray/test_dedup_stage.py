"""Dedup stage on real Ray Data: exact/near prompts and responses, keep rule, rows already
dropped, cross-snapshot side tables."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from config_helpers import make_config
from factory.pipeline import run_small
from factory.stages.dedup import Dedup, DedupConfig, signature_tables

_RNG = random.Random(1)
_VOCAB = [f"w{i}" for i in range(3000)]


def _text(words: int) -> str:
    return " ".join(_RNG.choice(_VOCAB) for _ in range(words))


def _edit(text: str) -> str:
    words = text.split()
    words[len(words) // 2] = "CHANGED"
    return " ".join(words)


BASE = _text(200)
OTHER = _text(200)
LONG_ANSWER = _text(300)
SHORT_ANSWER = _text(40)
PROMPTS = {"pa": BASE, "pb": _edit(BASE), "pc": "  " + BASE.upper(), "pd": OTHER, "pe": _text(200)}
SAMPLES = [  # (prompt_id, index, completion, reward, already dropped)
    ("pa", 0, _text(50), 0.9, None),
    ("pb", 0, _text(50), 0.5, None),
    ("pc", 0, _text(50), 0.1, None),
    ("pd", 0, LONG_ANSWER, 0.8, None),
    ("pd", 1, _edit(LONG_ANSWER), 0.3, None),
    ("pd", 2, SHORT_ANSWER, 0.7, None),
    ("pd", 3, SHORT_ANSWER.upper() + "   ", 0.2, None),
    ("pe", 0, SHORT_ANSWER, 0.9, "filter:too_long"),
    ("pe", 1, SHORT_ANSWER, None, None),
]


def _rows(prompts: dict[str, str], samples) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "prompt_id": pid,
                "sample_id": f"{pid}:{k}",
                "prompt": prompts[pid],
                "completion": completion,
                "reward": reward,
                "drop_reason": dropped,
                "drop_stage": "filter" if dropped else None,
            }
            for pid, k, completion, reward, dropped in samples
        ]
    )


@pytest.fixture(scope="module")
def result(ray_local):
    table, [record] = run_small([Dedup], make_config(dedup=DedupConfig(batch_size=4)), _rows(PROMPTS, SAMPLES))
    return {r["sample_id"]: r for r in table.to_pylist()}, record.stats, table


def test_one_row_out_per_row_in(result):
    rows, _, _ = result
    assert sorted(rows) == sorted(f"{pid}:{k}" for pid, k, *_ in SAMPLES)


@pytest.mark.parametrize(
    "sample_id,reason",
    [
        ("pa:0", None),
        ("pb:0", "dup_near_prompt"),
        ("pc:0", "dup_exact_prompt"),
        ("pd:0", None),
        ("pd:1", "dup_near_response"),
        ("pd:2", None),
        ("pd:3", "dup_exact_response"),
        ("pe:0", "filter:too_long"),
        ("pe:1", None),
    ],
)
def test_drop_reasons(result, sample_id, reason):
    rows, _, _ = result
    assert rows[sample_id]["drop_reason"] == reason


def test_dedup_sets_drop_stage_only_on_its_own_drops(result):
    rows, _, _ = result
    assert {r["drop_stage"] for r in rows.values() if r["drop_reason"] and r["drop_reason"].startswith("dup_")} == {"dedup"}
    assert rows["pe:0"]["drop_stage"] == "filter"


def test_stats_count_rows_per_reason_and_cluster_sizes(result):
    _, stats, _ = result
    assert stats["dropped_rows"] == {"dup_exact_prompt": 1, "dup_near_prompt": 1, "dup_exact_response": 1, "dup_near_response": 1}
    assert stats["cluster_sizes"]["near_prompt"] == {"2": 1} and stats["lsh"]["bands"] == 9


def _rerun(ray_local, committed, cfg, prompts, samples) -> dict[str, str | None]:
    prior = list(signature_tables(ray_local.data.from_arrow(committed), DedupConfig()))
    table, _ = run_small([Dedup], make_config(dedup=cfg), _rows(prompts, samples), extras={"prior_signatures": prior})
    return {r["sample_id"]: r["drop_reason"] for r in table.to_pylist()}


def test_later_snapshot_drops_prompts_matching_committed_prompts(result, ray_local):
    prompts = {"qa": _edit(BASE), "qb": BASE.lower(), "qz": _text(200)}
    samples = [("qa", 0, _text(50), 0.5, None), ("qb", 0, _text(50), 0.5, None), ("qz", 0, _text(50), 0.5, None)]
    reasons = _rerun(ray_local, result[2], DedupConfig(), prompts, samples)
    assert reasons == {"qa:0": "dup_previous_snapshot", "qb:0": "dup_previous_snapshot", "qz:0": None}


def test_later_snapshot_drops_responses_matching_committed_responses_of_the_same_prompt(result, ray_local):
    cfg = DedupConfig(exact_prompts=False, near_prompts=False)
    samples = [("pd", 8, LONG_ANSWER, 0.9, None), ("pd", 9, _edit(LONG_ANSWER), 0.9, None),
               ("pd", 10, _text(300), 0.1, None), ("pa", 5, LONG_ANSWER, 0.1, None)]
    reasons = _rerun(ray_local, result[2], cfg, {"pd": OTHER, "pa": BASE}, samples)
    assert reasons == {"pd:8": "dup_previous_snapshot", "pd:9": "dup_previous_snapshot", "pd:10": None, "pa:5": None}


def test_cross_snapshot_off_ignores_prior_signatures(result, ray_local):
    reasons = _rerun(ray_local, result[2], DedupConfig(cross_snapshot=False), {"qb": BASE}, [("qb", 0, "x", 0.5, None)])
    assert reasons == {"qb:0": None}


def test_empty_dataset_passes_through(ray_local):
    empty = _rows(PROMPTS, SAMPLES).slice(0, 0)
    table, [record] = run_small([Dedup], make_config(), empty)
    assert table.num_rows == 0 and record.stats["rows_in"] == 0
