"""End to end: `factory run` on the demo config (`make demo`'s run, with its outputs in a temp dir) — real Ray,
vLLM (CPU), DeepSpeed and Parquet, nothing mocked, no file outside the repository — then assertions on what it
printed and on the files it wrote, read back with pyarrow. It is the one test that checks what the demo claims.
Marked ``isolated``: the run starts its own Ray instance, so it runs in the second pytest process (no session
instance in that process; docs/platform.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

# the module fixture runs the whole demo (`subprocess.run(..., timeout=1500)`) in its first test's setup, on cores
# the first pytest process shares: the default per-test timeout (900 s) would cut it short
pytestmark = [pytest.mark.isolated, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]
PLANTED = {"planted-verbatim", "planted-reworded"}
FILTERS = ("decontam_prompts", "quality", "rejection", "dedup")
"""The demo's filtering stages: each must drop something, or the demo shows nothing of it."""


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models):
    import yaml

    work = tmp_path_factory.mktemp("pipeline")
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["run"]["work_dir"] = str(work / "runs")
    cfg["store"]["root"] = str(work / "datasets")
    config = work / "demo.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "run", str(config)], cwd=REPO, capture_output=True,
                          text=True, timeout=1500, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = json.loads(Path(summary["manifest"]).read_text())
    return summary, manifest, proc


def _table(summary, manifest):
    return pq.read_table([str(Path(summary["dataset"]) / f["path"]) for f in manifest["files"]])


def _stages(manifest) -> dict:
    return {stage["name"]: stage for stage in manifest["stages"]}


def test_console_is_short_and_has_no_traceback(run):
    _, _, proc = run
    console = (proc.stdout + proc.stderr).splitlines()
    assert len(console) < 80, "\n".join(console)
    assert not any("Traceback" in line or "Error" in line.split(":")[0] for line in console), "\n".join(console)


def test_summary_line_has_every_documented_key(run):
    summary, _, _ = run
    assert set(summary) == {"teacher_acc", "student_acc_before", "student_acc_after", "dataset", "checkpoint",
                            "manifest", "seconds"}


def test_manifest_row_counts_equal_the_data(run):
    summary, manifest, _ = run
    table = _table(summary, manifest)
    assert table.num_rows == manifest["num_rows"] == sum(f["rows"] for f in manifest["files"]) > 0
    assert _stages(manifest)["commit"]["rows_out"] == table.num_rows


def test_every_kept_sample_is_verified_correct(run):
    table = _table(*run[:2])
    assert set(table.column("verdict").to_pylist()) == {"correct"}


def test_each_sample_appears_once(run):
    table = _table(*run[:2])
    ids = table.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids))


def test_every_drop_has_a_reason_and_rows_add_up(run):
    _, manifest, _ = run
    generated = _stages(manifest)["generate"]["rows_out"]
    dropped = sum(n for reason, n in manifest["drops"].items() if not reason.startswith("prompts:"))
    assert dropped + manifest["num_rows"] == generated


def test_every_filtering_stage_drops_something(run):
    _, manifest, _ = run
    stages = _stages(manifest)
    assert {name: sum(stages[name]["drops"].values()) > 0 for name in FILTERS} == dict.fromkeys(FILTERS, True)


def test_planted_held_out_problems_are_removed_before_generation(run):
    summary, manifest, _ = run
    assert manifest["drops"]["prompts:decontam_prompts:contaminated:synthetic-heldout"] == 12
    assert _stages(manifest)["decontam_prompts"]["drops"] == {"contaminated:synthetic-heldout": 12}
    assert not PLANTED & set(_table(summary, manifest).column("source").to_pylist())


def test_student_checkpoint_loads_with_transformers(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = run[0]
    model = AutoModelForCausalLM.from_pretrained(summary["checkpoint"])
    tokenizer = AutoTokenizer.from_pretrained(summary["checkpoint"])
    assert model.config.model_type == "qwen2" and tokenizer.chat_template


def test_distillation_improves_the_student(run):
    """The demo does not evaluate the untrained student (``eval.evaluate_student_before: false``; it scored 0.000
    whenever it was): the key stays in the summary, null."""
    summary = run[0]
    assert summary["student_acc_before"] is None
    assert summary["student_acc_after"] > 0.3 and summary["teacher_acc"] > 0.3


def test_the_student_reaches_85_percent_of_the_teacher(run):
    """Measured 2026-12-03 on kit 1994f94d (teacher 0.81): 1,483 kept chains, 926 steps (10 epochs), student 0.965
    (1.19x). Earlier, on kit 8f4e6f19 (teacher 0.905), 1,589 kept chains from 1,800 prompts: 1,390 steps,
    student 0.89 (0.98x); from 1,200 prompts (1,054 kept) 0.73 after 1,185 steps and 0.78 after 1,844; on kit
    882ad43a (teacher 0.855) 882 kept chains and 1,212 steps gave 0.79 shuffled, 0.52 easy to hard."""
    summary = run[0]
    assert summary["student_acc_after"] >= 0.85 * summary["teacher_acc"] > 0


def test_report_is_written_next_to_the_manifest(run):
    summary = run[0]
    assert (Path(summary["manifest"]).parent / "report.html").stat().st_size > 10_000


def test_eval_measures_each_models_generation_cost_under_vllm(run):
    summary = run[0]
    results = json.loads((Path(summary["manifest"]).parent / "run_summary.json").read_text())["eval"]
    assert "student_before" not in results
    for name in ("teacher", "student_after"):
        result = results[name]
        assert result["output_tokens_per_s"] > 0 and 0 < result["latency_p50_s"] <= result["latency_p90_s"]
        assert result["peak_rss_bytes"] > 300 * 2**20  # the actor and vLLM's engine-core process
    ratios = results["student_vs_teacher"]
    assert ratios["student"] == "student_after" and 0 < ratios["weights_bytes"] < 1
    assert ratios["accuracy"] == results["ratio"]
    assert ratios["accuracy_by_source"] == {"synthetic-heldout": results["ratio"]}
