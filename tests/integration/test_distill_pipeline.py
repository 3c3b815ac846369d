"""End to end: `factory run` on the demo config (`make demo`'s run, with its outputs in a temp dir) — real Ray,
vLLM (CPU), DeepSpeed and Parquet, nothing mocked — then assertions on the files it wrote, read back with
pyarrow. About 6 minutes on 2 cores; it is the one test that checks what the demo claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]

@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models, shared_data):
    import yaml

    work = tmp_path_factory.mktemp("pipeline")
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["run"]["work_dir"] = str(work / "runs")
    cfg["store"]["root"] = str(work / "datasets")
    cfg["prompts"]["sources"][1]["path"] = str(shared_data / "gsm8k" / "test.jsonl")
    cfg["decontam"]["benchmarks"][0]["path"] = str(shared_data / "gsm8k" / "test.jsonl")
    cfg["decontam"]["benchmarks"][1]["path"] = str(shared_data / "humaneval" / "HumanEval.jsonl.gz")
    config = work / "small.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "run", str(config)], cwd=REPO, capture_output=True,
                          text=True, timeout=1500, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = json.loads(Path(summary["manifest"]).read_text())
    return summary, manifest


def _table(summary, manifest):
    return pq.read_table([str(Path(summary["dataset"]) / f["path"]) for f in manifest["files"]])


def test_summary_line_has_every_documented_key(run):
    summary, _ = run
    assert set(summary) == {"teacher_acc", "student_acc_before", "student_acc_after", "dataset", "checkpoint",
                            "manifest", "seconds"}


def test_manifest_row_counts_equal_the_data(run):
    summary, manifest = run
    table = _table(summary, manifest)
    assert table.num_rows == manifest["num_rows"] == sum(f["rows"] for f in manifest["files"]) > 0
    counts = manifest["counts"]  # the last sample-level stage before the commit
    assert counts.get("decontam", counts["dedup"])["out"] == table.num_rows


def test_every_kept_sample_is_verified_correct(run):
    table = _table(*run)
    assert set(table.column("verdict").to_pylist()) == {"correct"}


def test_each_sample_appears_once(run):
    table = _table(*run)
    ids = table.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids))


def test_every_drop_has_a_reason_and_rows_add_up(run):
    summary, manifest = run
    generated = manifest["counts"]["generate"]["out"]
    dropped = sum(n for reason, n in manifest["drops"].items() if not reason.startswith("prompts:"))
    assert dropped + manifest["num_rows"] == generated


def test_gsm8k_prompts_were_decontaminated(run):
    summary, manifest = run
    assert manifest["decontam"]["gsm8k"]["hits"] == 8
    assert manifest["drops"]["prompts:decontam:contaminated:gsm8k"] == 8
    assert "gsm8k-test" not in set(_table(summary, manifest).column("source").to_pylist())


def test_student_checkpoint_loads_with_transformers(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary, _ = run
    model = AutoModelForCausalLM.from_pretrained(summary["checkpoint"])
    tokenizer = AutoTokenizer.from_pretrained(summary["checkpoint"])
    assert model.config.model_type == "qwen2" and tokenizer.chat_template


def test_distillation_improves_the_student(run):
    summary, _ = run
    assert summary["teacher_acc"] > 0.5
    assert summary["student_acc_after"] > summary["student_acc_before"] + 0.2


def test_report_is_written_next_to_the_manifest(run):
    summary, _ = run
    assert (Path(summary["manifest"]).parent / "report.html").stat().st_size > 10_000


def test_eval_measures_each_models_generation_cost_under_vllm(run):
    summary, _ = run
    results = json.loads((Path(summary["manifest"]).parent / "run_summary.json").read_text())["eval"]
    for name in ("teacher", "student_before", "student_after"):
        result = results[name]
        assert result["output_tokens_per_s"] > 0 and 0 < result["latency_p50_s"] <= result["latency_p90_s"]
        assert result["peak_rss_bytes"] > 300 * 2**20  # the actor and vLLM's engine-core process
    ratios = results["student_vs_teacher"]
    assert ratios["student"] == "student_after" and 0 < ratios["weights_bytes"] < 1
    assert ratios["accuracy"] == results["ratio"]
    assert ratios["accuracy_by_source"] == {"synthetic-heldout": results["ratio"]}
