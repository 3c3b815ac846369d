"""What `factory run` prints at the end: aligned tables of the stages and of the evaluation (problems,
accuracy, cost), per-set accuracy when there are several sets, ratios, paths, and a last line of JSON."""

from __future__ import annotations

import json

from factory.flow import RunSummary
from factory.summary import render, table

STAGES = [
    {"name": "ingest", "rows_out": 1208, "kept_out": 1208, "drops": {}, "busy_s": 0.2},
    {"name": "generate", "rows_in": 1200, "rows_out": 2400, "kept_in": 1200, "kept_out": 2400, "drops": {},
     "busy_s": 46.04},
    {"name": "rejection", "rows_in": 2400, "rows_out": 2400, "kept_in": 2300, "kept_out": 1190,
     "drops": {"verdict_wrong": 1000, "over_max_per_prompt": 110}, "busy_s": 1.5},
]


def _summary(eval_results):
    return RunSummary(dataset="/d", snapshot_version="v000001", manifest="/d/_manifest.json", report="/d/report.html",
                      checkpoint="/c", stages=STAGES, drops={"rejection:verdict_wrong": 1000}, eval=eval_results,
                      phases={"data": 60.0, "train": 90.0}, seconds=12.34)


def test_table_columns_are_aligned():
    lines = table(["stage", "rows"], [["generate", 2400], ["ingest", 8]])
    assert lines == ["stage     rows", "--------  ----", "generate  2400", "ingest       8"]


def test_stage_table_shows_rows_kept_drops_and_seconds():
    out = render(_summary({}))
    assert "rejection     2400      2400  1190     1110     1.5" in out
    assert "generate      1200      2400  2400             46.0" in out


def test_eval_table_shows_problems_accuracy_and_cost():
    teacher = {"accuracy": 0.9, "problems": 30, "errors": 0, "output_tokens_per_s": 812.4, "latency_p50_s": 0.412,
               "peak_rss_bytes": 2100 * 2**20,
               "by_source": {"gsm8k": {"accuracy": 0.95, "problems": 20, "errors": 0},
                             "humaneval": {"accuracy": None, "problems": 10, "errors": 10}}}
    ratios = {"student": "student_after", "accuracy": 0.9444, "output_tokens_per_s": 1.19, "latency_p50_s": 0.84,
              "peak_rss_bytes": 1.0, "peak_device_bytes": None, "weights_bytes": 0.554}
    out = render(_summary({"teacher": teacher, "ratio": 0.9444, "student_vs_teacher": ratios}))
    header = next(line for line in out if line.strip().startswith("model"))
    assert header.split() == ["model", "problems", "accuracy", "errors", "output", "tok/s", "latency", "p50", "peak", "RSS"]
    assert any(line.split()[:3] == ["teacher", "30", "0.900"] and "2100.0 MiB" in line for line in out)
    assert any("humaneval" in line and line.split()[-1] == "n/a" for line in out)
    assert ("  student after / teacher: accuracy 0.944, output tok/s 1.19x, latency p50 0.84x, peak RSS 1.00x, "
            "weights 0.55x") in out
    assert json.loads(out[-1])["teacher_acc"] == 0.9


def test_one_held_out_set_is_not_repeated():
    result = {"accuracy": 0.5, "problems": 4, "by_source": {"only": {"accuracy": 0.5, "problems": 4}}}
    assert not any("only" in line for line in render(_summary({"student_after": result})))


def test_reused_result_says_when_it_was_measured():
    result = {"accuracy": 0.5, "problems": 4, "measured_at": "2026-11-28T03:00:00Z", "reused_from": "/r/eval/k.json"}
    assert "  teacher: reused the identical evaluation measured 2026-11-28T03:00:00Z" in render(_summary({"teacher": result}))


def test_ratio_line_says_when_costs_are_not_compared():
    ratios = {"student": "student_after", "costs_comparable": False, "accuracy": 0.9, "weights_bytes": 0.5,
              "output_tokens_per_s": None}
    out = render(_summary({"student_vs_teacher": ratios}))
    assert "  student after / teacher: accuracy 0.900, weights 0.50x" in out
    assert "  (speed and memory not compared: a result was reused from an earlier run)" in out


def test_no_line_is_longer_than_120_characters():
    teacher = {"accuracy": 0.9, "problems": 30, "output_tokens_per_s": 812.4, "latency_p50_s": 0.41,
               "peak_rss_bytes": 2100 * 2**20}
    assert max(len(line) for line in render(_summary({"teacher": teacher})) if not line.startswith("{")) <= 120
