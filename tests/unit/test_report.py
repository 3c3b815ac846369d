"""factory.report builds a self-contained HTML report from a snapshot directory.

The snapshots here are synthetic (manifest + Parquet files written with pyarrow in tmp_path, columns per
factory.schema), so the tests cover the report's reading of the documented manifest keys, not the
pipeline that writes them.
"""

from __future__ import annotations

import json
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.report import build_report
from factory.schema import DATASET_SCHEMA, SCORED_SCHEMA, conform

SECTIONS = ["Overview", "Rows per stage", "Drops by reason", "Reward distribution", "Response length",
            "Per-prompt pass rate", "Deduplication", "Decontamination", "Timing and throughput",
            "Student vs teacher accuracy", "Training", "Lineage"]


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
        "dataset": "demo-math", "version": "v000001", "created_at": "2025-01-01T00:00:00Z", "run": "demo",
        "num_rows": 80, "config_hash": "abc123", "code_version": "deadbeef",
        "files": [{"path": "part-00000.parquet", "rows": 80}],
        "side_tables": {"dropped": {"num_rows": 40, "files": [{"path": "_side/dropped/part-00000.parquet"}]}},
        "counts": {"generate": {"in": 30, "out": 120}, "filter": {"in": 120, "out": 80}},
        "drops": {"filter:wrong_answer": 35, "dedup:near_duplicate": 5},
        "timings": {"generate": {"seconds": 12.5, "rows_per_s": 2.4}, "filter": {"seconds": 0.4, "rows_per_s": 300.0}},
        "generation": {"output_tokens_per_s": 1520.5, "requests": 120},
        "dedup": {"checked": 120, "removed": 5, "cluster_sizes": {"2": 3, "3": 1}},
        "decontam": {"gsm8k": {"hits": 2, "ngram": 13}, "humaneval": {"hits": 0, "ngram": 13}},
        "lineage": {"teacher": {"model": "Qwen/Qwen2.5-7B-Instruct", "revision": "a09a354"}},
    }
    manifest.update(extra)
    return manifest


def _snapshot(path, manifest: dict, kept: int = 80, dropped: int = 40):
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(_rows(kept, seed=1, dropped=False), path / "part-00000.parquet")
    if dropped:
        (path / "_side" / "dropped").mkdir(parents=True)
        pq.write_table(_rows(dropped, seed=2, dropped=True), path / "_side" / "dropped" / "part-00000.parquet")
    (path / "_manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> str:
    """A snapshot where everything ran, including training and evaluation (via run_summary.json)."""
    snap = _snapshot(tmp_path_factory.mktemp("full") / "v000001", _manifest())
    (snap / "run_summary.json").write_text(json.dumps({
        "timings": {"train": {"seconds": 95.0, "rows_per_s": 0.84}},
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
    }))
    return build_report(str(snap))


def test_report_shows_generation_cost_per_model_and_ratios(full_report):
    text = open(full_report).read()
    cost = text.split("<h3>Generation cost under the same engine</h3>")[1]
    assert "peak RSS (MiB)" in cost and ">3072<" in cost and ">1024<" in cost  # bytes shown in MiB
    assert "output tok/s" in cost and ">625<" in cost
    assert "student_after / teacher" in cost and ">2.5<" in cost and ">0.4<" in cost
    assert "accuracy on gsm8k" in cost and ">0.9375<" in cost and "accuracy on humaneval" not in cost


def test_report_scores_each_held_out_set(full_report):
    per_set = open(full_report).read().split("<h3>Per held-out set</h3>")[1].split("<h3>")[0]
    assert "humaneval" in per_set and ">0.625<" in per_set and ">0.75<" in per_set


def test_report_is_written_beside_the_manifest(full_report):
    assert full_report.endswith("v000001/report.html")


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
    assert "0.875" in text and "student_after" in text and "final_loss" in text
    assert ">train<" in text  # the train stage's timing from run_summary.json


def test_report_lists_drop_reasons_and_decontam_hits(full_report):
    text = open(full_report).read()
    assert "filter:wrong_answer" in text and "dedup:near_duplicate" in text
    assert "gsm8k" in text and "humaneval" in text


def test_missing_training_and_eval_show_not_run(tmp_path):
    report = build_report(str(_snapshot(tmp_path / "v000001", _manifest())))
    sections = dict(re.findall(r"<h2>([^<]+)</h2>\n(.*?)\n</section>", open(report).read(), flags=re.S))
    assert "not run" in sections["Student vs teacher accuracy"]
    assert "not run" in sections["Training"]


@pytest.mark.parametrize("missing", ["drops", "dedup", "decontam", "timings", "counts", "lineage"])
def test_missing_manifest_key_becomes_not_run(tmp_path, missing):
    manifest = _manifest()
    manifest.pop(missing)
    if missing == "timings":
        manifest.pop("generation")
    report = build_report(str(_snapshot(tmp_path / "v000001", manifest)))
    assert open(report).read().count('class="not-run"') >= 3  # eval + train + the removed key


def test_snapshot_without_dropped_side_table_still_reports(tmp_path):
    manifest = _manifest()
    manifest.pop("side_tables")
    report = build_report(str(_snapshot(tmp_path / "v000001", manifest, dropped=0)))
    text = open(report).read()
    assert "Reward distribution" in text and "kept (n=80)" not in text  # n is in the PNG, not the HTML
    assert "<td>kept</td>" in text and "<td>dropped</td>" not in text


def test_null_rewards_show_not_run_instead_of_a_chart(tmp_path):
    snap = tmp_path / "v000001"
    snap.mkdir()
    table = _rows(8, seed=1, dropped=False)
    table = table.set_column(table.schema.get_field_index("reward"), "reward", pa.nulls(8, pa.float64()))
    pq.write_table(table, snap / "part-00000.parquet")
    (snap / "_manifest.json").write_text(json.dumps({"version": "v000001", "files": [{"path": "part-00000.parquet"}]}))
    sections = dict(re.findall(r"<h2>([^<]+)</h2>\n(.*?)\n</section>", open(build_report(str(snap))).read(), flags=re.S))
    assert "not run (no reward values)" in sections["Reward distribution"]
    assert "<img" in sections["Response length"]


def test_manifest_strings_are_html_escaped(tmp_path):
    report = build_report(str(_snapshot(tmp_path / "v000001", _manifest(run="<script>alert(1)</script>"))))
    text = open(report).read()
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_out_path_overrides_location(tmp_path):
    snap = _snapshot(tmp_path / "v000001", _manifest())
    out = tmp_path / "elsewhere.html"
    assert build_report(str(snap), str(out)) == str(out) and out.exists()
    assert not (snap / "report.html").exists()


def test_snapshot_without_manifest_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="_manifest.json"):
        build_report(str(tmp_path))
