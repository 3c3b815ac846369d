"""Refresh on real Ray and Parquet, from a fixed generation checkpoint (no teacher): a refresh with
unchanged scoring carries rows as committed and generates only new prompts; a refresh whose filter was
loosened and whose eval set grew re-checks every carried row, kept and previously dropped, and the
manifest says which rows were re-checked and why."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest

from factory import synthetic_samples

N = 4


def _config(tmp: Path, max_per_prompt: int, eval_file: str) -> dict:
    return {
        "run": {"name": "refresh", "work_dir": str(tmp / "runs"), "seed": 0},
        "prompts": {"on_bad_row": "fail", "sources": [
            {"name": "word-problems", "kind": "jsonl", "path": str(tmp / "prompts.jsonl"), "task": "math",
             "id_field": "id", "prompt_field": "question", "reference_field": "answer"}]},
        "generation": {"engine": {"backend": "vllm", "model": str(tmp / "tokenizer")},
                       "sampling": {"n": N, "temperature": 0.6, "top_p": 0.95, "max_tokens": 2048, "seed": 0},
                       "resources": {"num_actors": 1, "num_cpus_per_actor": 0.5, "batch_size": 64}},
        "filter": {"rejection": {"require_correct": True, "max_per_prompt": max_per_prompt}},
        "decontam": {"benchmarks": [{"name": "eval", "path": str(tmp / eval_file), "format": "jsonl",
                                     "fields": ["question"]}]},
        "store": {"root": str(tmp / "datasets"), "dataset": "refresh"},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_local):
    """Three runs into one store: v1 on 120 prompts; v2 with 12 more prompts, scoring unchanged; v3 with
    max_per_prompt 2 → 4 and an eval set that now holds one carried prompt. The prompt file is read by
    ingest's Ray Data path (the large-file path, its threshold lowered to 0), so the refresh plans reuse
    over a Ray Dataset of prompts; the driver path has the unit tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("factory.stages.ingest.RAY_MIN_BYTES", 0)
        yield _runs(tmp_path_factory)


def _runs(tmp_path_factory):
    from factory import tiny
    from factory.config import parse_config
    from factory.flow import build_snapshot
    from factory.paths import run_dir
    from factory.stages.ingest import ingest
    from factory.store import SnapshotStore

    tmp = tmp_path_factory.mktemp("refresh")
    tiny.build_tokenizer().save_pretrained(tmp / "tokenizer")
    rows = synthetic_samples.prompts(132, seed=11)
    synthetic_samples.write_prompts_jsonl(synthetic_samples.eval_set(seed=11), tmp / "eval.jsonl")
    carried_item = rows[50]
    synthetic_samples.write_prompts_jsonl(synthetic_samples.eval_set(seed=11) + [carried_item], tmp / "eval2.jsonl")

    def run(prompt_rows, max_per_prompt, eval_file, incremental):
        synthetic_samples.write_prompts_jsonl(prompt_rows, tmp / "prompts.jsonl")
        cfg = parse_config(_config(tmp, max_per_prompt, eval_file))
        table = ingest(cfg.prompts).table
        by_id = {row["id"]: row for row in prompt_rows}
        samples = synthetic_samples.sample_rows([by_id[i] for i in table.column("prompt_id").to_pylist()], N, seed=11)
        synthetic_samples.write_checkpoint(table, samples, cfg.generation, str(run_dir(cfg) / "generation"))
        parent = SnapshotStore.from_config(cfg.store).latest() if incremental else None
        snapshot, manifest = build_snapshot(cfg, parent)
        return snapshot, manifest

    v1 = run(rows[:120], 2, "eval.jsonl", incremental=False)
    v2 = run(rows, 2, "eval.jsonl", incremental=True)
    v3 = run(rows, 4, "eval2.jsonl", incremental=True)
    return {"v1": v1, "v2": v2, "v3": v3, "carried_item": carried_item}


def _stage(manifest: dict, name: str) -> dict:
    return next(stage for stage in manifest["stages"] if stage["name"] == name)


def test_unchanged_scoring_carries_rows_as_committed(runs):
    (_, m1), (snap2, m2) = runs["v1"], runs["v2"]
    refresh = m2["refresh"]
    assert refresh["parent"] == "v000001" and refresh["rechecked_because"] is None
    assert refresh["rows_carried"] == m1["num_rows"] and refresh["rows_rechecked"] == 0
    # the 12 added prompts (less exact repeats of carried ones) and the eval items, decontaminated again
    assert refresh["prompts_new"] == _stage(m2, "decontam_prompts")["rows_in"]
    generated = _stage(m2, "generate")["rows_in"]
    assert generated == _stage(m2, "decontam_prompts")["kept_out"] and 10 <= generated <= 12
    assert _stage(m2, "verify")["rows_in"] == generated * N
    kept_ids = set(snap2.read(columns=["sample_id"])["sample_id"].to_pylist())
    assert set(runs["v1"][0].read(columns=["sample_id"])["sample_id"].to_pylist()) <= kept_ids


def test_unchanged_scoring_carries_dropped_rows_too(runs):
    (snap1, _), (snap2, _) = runs["v1"], runs["v2"]
    assert snap1.read_side("dropped").num_rows <= snap2.read_side("dropped").num_rows
    reasons = snap2.read_side("dropped", columns=["drop_reason"])["drop_reason"].to_pylist()
    assert reasons.count("over_max_per_prompt") >= snap1.read_side("dropped", columns=["drop_reason"])[
        "drop_reason"].to_pylist().count("over_max_per_prompt")


def test_changed_filter_and_eval_set_recheck_every_carried_row(runs):
    (snap2, m2), (_, m3) = runs["v2"], runs["v3"]
    refresh = m3["refresh"]
    assert refresh["rechecked_because"] == ["filter changed", "decontam changed", "eval_sets changed"]
    # nothing new to generate: only the eval items come back, and decontamination drops them again
    assert refresh["prompts_new"] == synthetic_samples.EVAL_ITEMS == _stage(m3, "decontam_prompts")["rows_in"]
    assert not any(stage["name"] == "generate" for stage in m3["stages"])
    assert refresh["rows_rechecked"] == m2["num_rows"] + snap2.read_side("dropped").num_rows
    assert _stage(m3, "verify")["rows_in"] == refresh["rows_rechecked"]


def test_loosened_filter_brings_previously_dropped_samples_back(runs):
    (snap2, _), (snap3, _) = runs["v2"], runs["v3"]
    assert snap3.num_rows > snap2.num_rows
    per_prompt = pc.value_counts(snap3.read(columns=["prompt_id"])["prompt_id"]).field("counts").to_pylist()
    assert max(per_prompt) > 2


def test_grown_eval_set_removes_a_carried_prompt(runs):
    snap3, m3 = runs["v3"]
    item = runs["carried_item"]["id"]
    assert item not in set(snap3.read(columns=["prompt_id"])["prompt_id"].to_pylist())
    assert m3["drops"]["decontam:contaminated:eval"] >= 1


def test_manifest_lineage_records_the_scoring_identity(runs):
    _, m3 = runs["v3"]
    assert m3["lineage"]["scoring"]["filter"]["rejection"]["max_per_prompt"] == 4
    assert json.dumps(m3["lineage"]["scoring"]["eval_sets"])
