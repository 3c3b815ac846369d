"""What `factory run` prints: counts, drops, each model's accuracy (per held-out set when there are
several) with its generation cost, paths, and a last line of JSON."""

from __future__ import annotations

import json

from factory.cli import _print_summary
from factory.flow import RunSummary


def _summary(eval_results):
    return RunSummary(dataset="/d", snapshot_version="v000001", manifest="/d/_manifest.json", report="/d/report.html",
                      checkpoint="/c", counts={"generate": {"in": 10, "out": 20}}, drops={"filter:wrong": 3},
                      eval=eval_results, seconds=12.34)


def test_summary_prints_accuracy_cost_and_json_headline(capsys):
    teacher = {"accuracy": 0.9, "problems": 30, "errors": 0, "output_tokens_per_s": 812.4, "latency_p50_s": 0.412,
               "peak_rss_bytes": 2100 * 2**20,
               "by_source": {"gsm8k": {"accuracy": 0.95, "problems": 20, "errors": 0},
                             "humaneval": {"accuracy": None, "problems": 10, "errors": 10}}}
    ratios = {"student": "student_after", "accuracy": 0.9444, "output_tokens_per_s": 1.19, "latency_p50_s": 0.84,
              "peak_rss_bytes": 1.0, "peak_device_bytes": None, "weights_bytes": 0.554}
    _print_summary(_summary({"teacher": teacher, "ratio": 0.9444, "student_vs_teacher": ratios}))
    out = capsys.readouterr().out.splitlines()
    assert "  eval teacher: accuracy 0.900 on 30 problems, 812 tok/s, p50 0.41 s, peak RSS 2100 MiB" in out
    assert "    gsm8k: accuracy 0.950 on 20 problems" in out
    assert "    humaneval: accuracy n/a on 10 problems (10 errors)" in out
    assert ("  student_after / teacher: accuracy 0.944, output tok/s 1.19x, latency p50 0.84x, peak RSS 1.00x, "
            "weights 0.55x") in out
    assert sum(line.startswith("  eval ") for line in out) == 1  # the ratios are not printed as a model
    assert json.loads(out[-1])["teacher_acc"] == 0.9


def test_one_held_out_set_is_not_repeated(capsys):
    result = {"accuracy": 0.5, "problems": 4, "by_source": {"only": {"accuracy": 0.5, "problems": 4}}}
    _print_summary(_summary({"student_after": result}))
    out = capsys.readouterr().out
    assert "eval student_after: accuracy 0.500 on 4 problems\n" in out and "only:" not in out


def test_reused_result_says_when_it_was_measured(capsys):
    result = {"accuracy": 0.5, "problems": 4, "measured_at": "2026-11-28T03:00:00Z", "reused_from": "/r/eval/k.json"}
    _print_summary(_summary({"teacher": result}))
    assert "eval teacher: accuracy 0.500 on 4 problems (reused: measured 2026-11-28T03:00:00Z)" in capsys.readouterr().out


def test_ratio_line_says_when_costs_are_not_compared(capsys):
    ratios = {"student": "student_after", "costs_comparable": False, "accuracy": 0.9, "weights_bytes": 0.5,
              "output_tokens_per_s": None}
    _print_summary(_summary({"student_vs_teacher": ratios}))
    assert ("student_after / teacher: accuracy 0.900, weights 0.50x (speed/memory not compared: a result was reused)"
            in capsys.readouterr().out)
