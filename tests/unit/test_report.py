"""factory.report builds a self-contained HTML report of a committed snapshot.

The snapshots here are committed by the real store with synthetic rows (columns per factory.schema) and
hand-written pipeline manifest keys, so the tests cover the report's reading of the documented manifest
keys, not the pipeline that writes them.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pytest

from factory.report import build_report
from factory.schema import DATASET_SCHEMA, SCORED_SCHEMA, conform

SECTIONS = ["Overview", "Pipeline", "Drops by reason", "Reward distribution", "Response length",
            "Per-prompt pass rate", "Stage: dedup", "Stage: decontam_prompts", "Timing", "Student vs teacher",
            "Training", "Lineage"]
DEDUP_VIEW = {"tables": [{"title": "Deduplication", "header": None, "rows": [["rows_in", 120], ["removed", 5]]}],
              "bars": [{"title": "near_prompt clusters by size", "labels": ["2", "3"], "values": [3, 1], "unit": "clusters"}]}
DECONTAM_VIEW = {"tables": [{"title": "Eval sets indexed", "header": ["eval set", "entries", "n-grams"],
                             "rows": [["gsm8k", 1319, 60000], ["humaneval", 164, 9000]]}]}


def _rows(n: int, seed: int, dropped: bool) -> pa.Table:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = i // 4
        rows.append({
            "prompt_id": f"p{prompt:04d}", "task": "math", "prompt": f"What is {prompt}+1?", "reference": str(prompt + 1),
            "source": "synthetic", "source_row": prompt + 1, "sample_index": i % 4, "sample_id": f"p{prompt:04d}:k:{i % 4}",
            "gen_key": "k" * 16, "gen_status": "ok", "completion_tokens": rng.randint(20, 800),
            "reward": rng.gauss(-1.0 if dropped else 1.0, 0.5), "pass_rate": (prompt % 5) / 4 if prompt % 5 < 5 else 1.0,
            "verdict": "wrong" if dropped else "correct",
            "drop_reason": "wrong_answer" if dropped else None, "drop_stage": "filter" if dropped else None,
        })
    return conform(pa.Table.from_pylist(rows), SCORED_SCHEMA if dropped else DATASET_SCHEMA)


def _manifest(**extra) -> dict:
    manifest = {
        "run": "demo", "config_hash": "abc123", "code_version": "deadbeef",
        "stages": [
            {"name": "ingest", "rows_out": 32, "kept_out": 32, "drops": {}, "busy_s": 0.1},
            {"name": "decontam_prompts", "rows_in": 32, "rows_out": 32, "kept_in": 32, "kept_out": 30,
             "drops": {"contaminated:gsm8k": 2}, "busy_s": 0.2, "wall_s": 0.3, "stats": {}, "view": DECONTAM_VIEW},
            {"name": "generate", "rows_in": 30, "rows_out": 120, "kept_in": 30, "kept_out": 120, "drops": {},
             "busy_s": 12.5, "wall_s": 13.0},
            {"name": "filter", "rows_in": 120, "rows_out": 120, "kept_in": 120, "kept_out": 85,
             "drops": {"wrong_answer": 35}, "busy_s": 0.4, "barrier": "groupby prompt_id"},
            {"name": "dedup", "rows_in": 120, "rows_out": 120, "kept_in": 85, "kept_out": 80,
             "drops": {"near_duplicate": 5}, "busy_s": 1.0, "stats": {"rows_in": 120}, "view": DEDUP_VIEW},
        ],
        "drops": {"filter:wrong_answer": 35, "dedup:near_duplicate": 5, "prompts:decontam_prompts:contaminated:gsm8k": 2},
        "lineage": {"teacher": {"model": "Qwen/Qwen2.5-7B-Instruct", "revision": "a09a354"}},
    }
    manifest.update(extra)
    return manifest


def _snapshot(path, manifest: dict, kept: int = 80, dropped: int = 40, table: pa.Table | None = None):
    """A snapshot committed by the store under ``path``'s parent; returns it."""
    from factory.store import SnapshotStore

    staged = SnapshotStore(str(path.parent / "store"), "demo-math").begin(schema=DATASET_SCHEMA)
    staged.write_table(table if table is not None else _rows(kept, seed=1, dropped=False))
    if dropped:
        staged.write_table(_rows(dropped, seed=2, dropped=True), side="dropped")
    return staged.commit(manifest)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> str:
    """A snapshot where everything ran, including training and evaluation (via run_summary.json)."""
    snap = _snapshot(tmp_path_factory.mktemp("full") / "v000001", _manifest())
    snap.write_file("run_summary.json", json.dumps({
        "phases": {"data": 20.0, "train": 95.0, "eval": 30.0},
        "eval": {"teacher": {"accuracy": 0.8, "problems": 20, "output_tokens_per_s": 250.0,
                             "peak_rss_bytes": 3 * 2**30, "latency_p50_s": 1.5},
                 "student_before": {"accuracy": 0.1, "problems": 20},
                 "student_after": {"accuracy": 0.7, "problems": 20, "output_tokens_per_s": 625.0,
                                   "peak_rss_bytes": 2**30, "latency_p50_s": 0.6,
                                   "by_source": {"gsm8k": {"accuracy": 0.75, "problems": 12, "errors": 0},
                                                 "humaneval": {"accuracy": 0.625, "problems": 8, "errors": 1}}},
                 "ratio": 0.875,
                 "student_vs_teacher": {"student": "student_after", "accuracy": 0.875, "output_tokens_per_s": 2.5,
                                        "peak_rss_bytes": 0.3333, "latency_p50_s": 0.4,
                                        "accuracy_by_source": {"gsm8k": 0.9375, "humaneval": None}}},
        "train": {"steps": 40, "final_loss": 0.93},
    }).encode())
    return build_report(snap)


def test_report_shows_generation_cost_per_model_and_ratios(full_report):
    text = open(full_report).read()
    evaluation = text.split("<h2>Student vs teacher</h2>")[1]
    assert "peak RSS" in evaluation and ">3072.0 MiB<" in evaluation and ">1024.0 MiB<" in evaluation
    assert "output tok/s" in evaluation and ">625<" in evaluation
    assert "student after / teacher" in evaluation and ">2.50x<" in evaluation and ">0.40x<" in evaluation
    assert "accuracy on gsm8k" in evaluation and ">0.938<" in evaluation and "accuracy on humaneval" not in evaluation


def test_report_scores_each_held_out_set(full_report):
    per_set = open(full_report).read().split("<h3>Per held-out set</h3>")[1].split("<h3>")[0]
    assert "humaneval" in per_set and ">0.625<" in per_set and ">0.75<" in per_set


def test_report_is_written_beside_the_manifest(full_report):
    assert full_report.endswith("snapshots/v000001/report.html")


def test_report_has_every_section(full_report):
    text = open(full_report).read()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text


def test_report_embeds_charts_inline_and_loads_nothing_remote(full_report):
    text = open(full_report).read()
    images = re.findall(r'<img class="chart" alt="[^"]+" src="data:image/png;base64,', text)
    assert len(images) >= 7  # drops, reward, length, pass rate, clusters, timings, accuracy
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_report_shows_run_summary_eval_and_train(full_report):
    text = open(full_report).read()
    assert "0.875" in text and "student after" in text and "final_loss" in text
    assert ">train<" in text  # the train phase's time from run_summary.json


def test_report_lists_drop_reasons_and_decontam_hits(full_report):
    text = open(full_report).read()
    assert "filter:wrong_answer" in text and "dedup:near_duplicate" in text
    assert "prompts:decontam_prompts:contaminated:gsm8k" in text and ">humaneval<" in text


def test_pipeline_table_lists_stages_in_pipeline_order(full_report):
    pipeline = open(full_report).read().split("<h2>Pipeline</h2>")[1].split("</section>")[0]
    names = re.findall(r"<tr><td>([a-z_]+)</td>", pipeline)
    assert names == ["ingest", "decontam_prompts", "generate", "filter", "dedup"]
    assert "groupby prompt_id" in pipeline and "streams" in pipeline


def test_missing_training_and_eval_show_not_run(tmp_path):
    report = build_report((_snapshot(tmp_path / "v000001", _manifest())))
    sections = dict(re.findall(r"<h2>([^<]+)</h2>\n(.*?)\n</section>", open(report).read(), flags=re.S))
    assert "not run" in sections["Student vs teacher"]
    assert "not run" in sections["Training"]


@pytest.mark.parametrize("missing", ["drops", "stages", "lineage"])
def test_missing_manifest_key_becomes_not_run(tmp_path, missing):
    manifest = _manifest()
    manifest.pop(missing)
    report = build_report((_snapshot(tmp_path / "v000001", manifest)))
    assert open(report).read().count('class="not-run"') >= 3  # eval + train + the removed key


def test_snapshot_without_dropped_side_table_still_reports(tmp_path):
    report = build_report((_snapshot(tmp_path / "v000001", _manifest(), dropped=0)))
    text = open(report).read()
    assert "Reward distribution" in text and "kept (n=80)" not in text  # n is in the PNG, not the HTML
    assert "<td>kept</td>" in text and "<td>dropped</td>" not in text


def test_null_rewards_show_not_run_instead_of_a_chart(tmp_path):
    table = _rows(8, seed=1, dropped=False)
    table = table.set_column(table.schema.get_field_index("reward"), "reward", pa.nulls(8, pa.float64()))
    snap = _snapshot(tmp_path / "v000001", {}, dropped=0, table=table)
    sections = dict(re.findall(r"<h2>([^<]+)</h2>\n(.*?)\n</section>", open(build_report(snap)).read(), flags=re.S))
    assert "not run (no reward values)" in sections["Reward distribution"]
    assert "<img" in sections["Response length"]


def test_manifest_strings_are_html_escaped(tmp_path):
    report = build_report((_snapshot(tmp_path / "v000001", _manifest(run="<script>alert(1)</script>"))))
    text = open(report).read()
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_out_path_overrides_location(tmp_path):
    snap = _snapshot(tmp_path / "v000001", _manifest())
    out = tmp_path / "elsewhere.html"
    assert build_report(snap, str(out)) == str(out) and out.exists()
    assert not (Path(snap.path) / "report.html").exists()


def test_local_snapshot_directory_is_accepted(tmp_path):
    snap = _snapshot(tmp_path / "v000001", _manifest())
    assert build_report(snap.path) == str(Path(snap.path) / "report.html")


def test_directory_without_manifest_is_an_error(tmp_path):
    from factory.store import StoreError

    with pytest.raises(StoreError, match="_manifest.json"):
        build_report(str(tmp_path))
