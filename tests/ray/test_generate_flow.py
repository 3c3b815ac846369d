"""Adaptive sampling through the whole data half (``build_snapshot``, real Ray and Parquet, the tiny
teacher on the transformers backend): the samples are verified inside generation only, the committed
pass rate is the unbiased estimate, and the snapshot carries the ``prompts`` side table — one row per
generated prompt, kept or not, published with the snapshot (listed and checksummed in its manifest).
Some prompts carry a reference no sample can match: they run to the cap and are listed as unsolved."""

from __future__ import annotations

import json
import os

import pyarrow.compute as pc
import pytest

from factory import synthetic
from factory.commit import PROMPT_SCRATCH

PROMPTS, UNSOLVABLE, K, CAP = 6, 2, 2, 4


@pytest.fixture(scope="module")
def committed(ray_local, tiny_models, tmp_path_factory):
    from factory.config import parse_config
    from factory.flow import build_snapshot

    tmp = tmp_path_factory.mktemp("adaptive-flow")
    problems = synthetic.make_problems(PROMPTS, seed=9)
    with open(tmp / "prompts.jsonl", "w", encoding="utf-8") as handle:
        for index, problem in enumerate(problems):
            reference = "-1" if index < UNSOLVABLE else problem["reference"]
            handle.write(json.dumps({"id": f"p{index}", "question": problem["prompt"], "answer": reference}) + "\n")
    cfg = parse_config({
        "run": {"name": "adaptive-flow", "work_dir": str(tmp / "runs"), "seed": 0},
        "prompts": {"on_bad_row": "fail", "sources": [
            {"name": "problems", "kind": "jsonl", "path": str(tmp / "prompts.jsonl"), "task": "math",
             "id_field": "id", "prompt_field": "question", "reference_field": "answer"}]},
        "generation": {"engine": {"backend": "transformers", "model": str(tiny_models.teacher)},
                       "sampling": {"max_tokens": 48, "seed": 1},
                       "adaptive": {"mode": "adaptive", "k": K, "max_samples": CAP, "round_size": 2},
                       "resources": {"batch_size": 3}},
        "filter": {"rejection": {"max_per_prompt": K}},
        "store": {"root": str(tmp / "datasets"), "dataset": "adaptive"},
    })
    snapshot, manifest = build_snapshot(cfg)
    return {"snapshot": snapshot, "manifest": manifest, "unsolvable": {f"p{i}" for i in range(UNSOLVABLE)}}


def test_samples_are_verified_in_generation_only(committed):
    names = [stage["name"] for stage in committed["manifest"]["stages"]]
    assert "generate" in names and "verify" not in names
    assert set(committed["snapshot"].read(columns=["verdict"])["verdict"].to_pylist()) <= {"correct"}


def test_committed_pass_rate_is_the_unbiased_estimate(committed):
    rows = committed["snapshot"].read_side("dropped", columns=["pass_rate", "pass_rate_estimate"])
    assert rows.num_rows and rows["pass_rate"].to_pylist() == rows["pass_rate_estimate"].to_pylist()


def test_prompts_side_table_lists_every_generated_prompt_once(committed):
    snapshot = committed["snapshot"]
    table = snapshot.read_side("prompts")
    assert sorted(table["prompt_id"].to_pylist()) == sorted(f"p{i}" for i in range(PROMPTS))
    drawn = snapshot.num_rows + snapshot.read_side("dropped").num_rows
    assert pc.sum(table["samples"]).as_py() == drawn  # kept and dropped rows alike


def test_unsolvable_prompts_are_listed_as_unsolved_at_the_cap(committed):
    rows = {r["prompt_id"]: r for r in committed["snapshot"].read_side("prompts").to_pylist()}
    for prompt_id in committed["unsolvable"]:
        row = rows[prompt_id]
        assert (row["difficulty"], row["stop_reason"], row["samples"], row["pass_rate_estimate"]) == (
            "unsolved", "cap_reached", CAP, 0.0)


def test_prompts_side_table_is_published_with_the_snapshot(committed):
    snapshot = committed["snapshot"]
    assert committed["manifest"]["side_tables"]["prompts"]["num_rows"] == PROMPTS
    snapshot.verify()  # listed with sizes and checksums like every file of the snapshot
    assert PROMPT_SCRATCH not in os.listdir(snapshot.path)  # the scratch rows are gone
