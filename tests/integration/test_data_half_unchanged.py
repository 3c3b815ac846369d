"""The data half of the factory (ingest → decontaminate prompts → generation served from a fixed
checkpoint → verify → filters → dedup → decontaminate → commit) commits exactly the rows, and drops
exactly the rows for exactly the reasons, that it did before the stage protocol and the declared
pipeline replaced the hand-wired flow (golden digests taken with the code of commit 0da5923, before that change).

Columns that name the run's temp dir (``teacher_model``) or embed the generation key (``gen_key``,
``sample_id``; keys gained model identities later, by design) are left out of the digest, and so are
columns added after the digests were taken; every other column of every kept and dropped row is in it. Real Ray, real Parquet, real math-verify.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory import synthetic_samples

COLUMNS = ("prompt_id", "task", "prompt", "reference", "tests", "entry_point", "source", "source_row", "sample_index",
           "prompt_text", "completion", "reasoning", "answer", "prompt_tokens", "completion_tokens", "finish_reason",
           "cumulative_logprob", "gen_status", "gen_error", "teacher_revision", "backend", "backend_version",
           "sampling_json", "seed", "verdict", "verifier", "verdict_detail", "format_ok", "reward", "reward_error",
           "pass_rate", "messages", "drop_reason", "drop_stage")
"""The columns the rows had when the digests were taken (later issues add columns; those are not compared)."""
GOLDEN = {
    "kept_rows": 415,
    "kept_digest": "db4339992bb1e330e556e1b69e5836b563a953432b6dc01bc97f52a3075d3d0f",
    "dropped_rows": 529,
    "dropped_digest": "09f449030f629070881b241dfa4b5d415b3c5cc555c06062df781d2839bb27f6",
    "drops": {
        "dedup:dup_exact_prompt": 8,
        "dedup:dup_exact_response": 17,
        "dedup:dup_near_prompt": 10,
        "dedup:dup_near_response": 9,
        "prompts:decontam_prompts:contaminated:planted-eval": 4,
        "quality:bad_think_format": 17,
        "language:language_mixing": 17,
        "quality:missing_answer": 9,
        "quality:truncated": 37,
        "quality:unclosed_think": 2,
        "quality:word_repetition": 20,
        "rejection:over_max_per_prompt": 226,
        "rejection:verdict_no_answer": 11,
        "rejection:verdict_wrong": 146,
    },
}


def _config(tmp: Path, tokenizer_dir: Path) -> dict:
    return {
        "run": {"name": "data-half", "work_dir": str(tmp / "runs"), "seed": 0},
        "prompts": {"on_bad_row": "fail", "sources": [
            {"name": "word-problems", "kind": "jsonl", "path": str(tmp / "prompts.jsonl"), "task": "math",
             "id_field": "id", "prompt_field": "question", "reference_field": "answer"}]},
        "generation": {"engine": {"backend": "vllm", "model": str(tokenizer_dir)},
                       "sampling": {"n": 4, "temperature": 0.6, "top_p": 0.95, "max_tokens": 2048, "seed": 0},
                       "resources": {"num_actors": 1, "num_cpus_per_actor": 0.5, "batch_size": 64}},
        "filter": {"rejection": {"require_correct": True, "max_per_prompt": 2}},
        "dedup": {"threshold": 0.8},
        "decontam": {"ngram": 13, "benchmarks": [
            {"name": "planted-eval", "path": str(tmp / "eval.jsonl"), "format": "jsonl", "fields": ["question"]}]},
        "store": {"root": str(tmp / "datasets"), "dataset": "data-half"},
    }


MOVED_CHECKS = {"language": "quality"}
"""Checks that became stages of their own after the digests were taken: the language-mixing check left the
quality stage (same rows, same reason, the new stage's name in ``drop_stage``)."""


def _digest(table: pa.Table) -> str:
    table = table.select([c for c in COLUMNS if c in table.column_names])
    rows = [{**row, "drop_stage": MOVED_CHECKS.get(row["drop_stage"], row["drop_stage"])} if "drop_stage" in row else row
            for row in table.to_pylist()]
    rows = sorted(rows, key=lambda r: (r["prompt_id"], r["sample_index"]))
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def run_data_half(tmp: Path) -> dict:
    """Write the fixture, run the data half in this process's Ray session, and digest what it committed."""
    from factory import tiny
    from factory.config import parse_config
    from factory.flow import run_distill, run_dir
    from factory.stages.ingest import ingest

    tokenizer_dir = tmp / "tokenizer"
    tiny.build_tokenizer().save_pretrained(tokenizer_dir)
    prompt_rows = synthetic_samples.prompts(240, seed=7)
    synthetic_samples.write_prompts_jsonl(prompt_rows, tmp / "prompts.jsonl")
    synthetic_samples.write_prompts_jsonl(synthetic_samples.eval_set(seed=7), tmp / "eval.jsonl")
    cfg = parse_config(_config(tmp, tokenizer_dir))
    table = ingest(cfg.prompts).table
    by_id = {row["id"]: row for row in prompt_rows}
    samples = synthetic_samples.sample_rows([by_id[i] for i in table.column("prompt_id").to_pylist()], n=4, seed=7)
    synthetic_samples.write_checkpoint(table, samples, cfg.generation, str(run_dir(cfg) / "generation"))
    summary = run_distill(cfg)
    manifest = json.loads(Path(summary.manifest).read_text())
    snapshot = Path(summary.dataset)
    kept = pq.read_table([str(snapshot / f["path"]) for f in manifest["files"]])
    dropped = pq.read_table([str(snapshot / f["path"]) for f in manifest["side_tables"]["dropped"]["files"]])
    return {"kept_rows": kept.num_rows, "kept_digest": _digest(kept), "dropped_rows": dropped.num_rows,
            "dropped_digest": _digest(dropped), "drops": manifest["drops"]}


@pytest.fixture(scope="module")
def result(tmp_path_factory, ray_local):
    return run_data_half(tmp_path_factory.mktemp("data-half"))


def test_every_drop_path_is_exercised(result):
    reasons = {key.split(":", 1)[1] for key in result["drops"]}
    assert {"truncated", "missing_answer", "bad_think_format", "word_repetition", "language_mixing",
            "verdict_wrong", "dup_exact_response", "dup_near_response", "dup_exact_prompt"} <= reasons
    assert result["drops"]["prompts:decontam_prompts:contaminated:planted-eval"] == synthetic_samples.EVAL_ITEMS


def test_committed_rows_are_unchanged(result):
    assert (result["kept_rows"], result["kept_digest"]) == (GOLDEN["kept_rows"], GOLDEN["kept_digest"])


def test_dropped_rows_and_reasons_are_unchanged(result):
    assert (result["dropped_rows"], result["dropped_digest"]) == (GOLDEN["dropped_rows"], GOLDEN["dropped_digest"])
    assert result["drops"] == GOLDEN["drops"]
