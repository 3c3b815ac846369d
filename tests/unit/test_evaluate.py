"""Scoring of eval rows (pass@1, maj@k, errors apart) and the student/teacher comparison."""

from __future__ import annotations

import pyarrow as pa
import pytest

from factory.evaluate import score_table, student_vs_teacher


def _rows(*samples, source="set-a"):
    names = ["prompt_id", "answer", "verdict", "gen_status"]
    return pa.Table.from_pylist([dict(zip(names, s), source=source) for s in samples])


def test_pass_at_1_and_majority_vote():
    table = _rows(("p1", "4", "correct", "ok"), ("p1", "5", "wrong", "ok"), ("p1", "4", "correct", "ok"),
                  ("p2", "7", "wrong", "ok"), ("p2", "7", "wrong", "ok"), ("p2", "8", "correct", "ok"))
    scores = score_table(table)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["maj_at_k"] == 0.5  # p1's majority "4" is right, p2's majority "7" is wrong
    assert (scores["problems"], scores["samples"], scores["errors"]) == (2, 6, 0)
    assert scores["by_source"] == {"set-a": {k: v for k, v in scores.items() if k != "by_source"}}


def test_each_held_out_set_is_scored_on_its_own():
    math = _rows(("m1", "4", "correct", "ok"), ("m2", "5", "correct", "ok"), ("m3", "1", "wrong", "ok"), source="gsm8k")
    code = _rows(("c1", "def f", "wrong", "ok"), ("c2", None, None, "engine_error"), source="humaneval")
    scores = score_table(pa.concat_tables([math, code]))
    assert scores["accuracy"] == 0.5 and scores["problems"] == 5 and scores["errors"] == 1
    gsm8k, humaneval = scores["by_source"]["gsm8k"], scores["by_source"]["humaneval"]
    assert (gsm8k["accuracy"], gsm8k["problems"], gsm8k["errors"]) == (pytest.approx(2 / 3), 3, 0)
    assert (humaneval["accuracy"], humaneval["problems"], humaneval["errors"]) == (0.0, 2, 1)


def test_infrastructure_failures_are_errors_not_wrong_answers():
    table = _rows(("p1", "4", "correct", "ok"), ("p1", None, None, "engine_error"), ("p2", "3", "timeout", "ok"),
                  ("p2", "3", "error", "ok"))
    scores = score_table(table)
    assert scores["accuracy"] == 1.0 and scores["errors"] == 3
    assert scores["maj_at_k"] == 1.0  # p2 has no judged sample: it is not a problem the model got wrong


def test_student_vs_teacher_divides_each_figure():
    results = {
        "teacher": {"accuracy": 0.8, "output_tokens_per_s": 100.0, "latency_p50_s": 2.0, "token_latency_p50_s": 0.02,
                    "peak_rss_bytes": 1000,
                    "peak_device_bytes": None, "weights_bytes": 500,
                    "by_source": {"gsm8k": {"accuracy": 0.8}, "humaneval": {"accuracy": 0.0}}},
        "student_before": {"accuracy": 0.0, "output_tokens_per_s": 300.0, "latency_p50_s": 0.5,
                           "token_latency_p50_s": 0.01, "peak_rss_bytes": 250,
                           "peak_device_bytes": None, "weights_bytes": 100,
                           "by_source": {"gsm8k": {"accuracy": 0.4}, "humaneval": {"accuracy": 0.1}}},
    }
    before = student_vs_teacher(results)
    assert before["student"] == "student_before" and before["accuracy"] == 0.0
    results["student_after"] = dict(results["student_before"], accuracy=0.72)
    after = student_vs_teacher(results)
    assert after["student"] == "student_after"
    assert after == {"student": "student_after", "costs_comparable": True, "accuracy": pytest.approx(0.9), "output_tokens_per_s": 3.0,
                     "latency_p50_s": 0.25, "token_latency_p50_s": 0.5, "peak_rss_bytes": 0.25, "peak_device_bytes": None, "weights_bytes": 0.2,
                     "accuracy_by_source": {"gsm8k": 0.5, "humaneval": None}}  # no ratio to a zero teacher
    assert student_vs_teacher({"student_after": results["student_after"]}) is None


def test_speed_and_memory_are_not_compared_with_a_reused_result():
    fresh = {"accuracy": 0.9, "output_tokens_per_s": 300.0, "peak_rss_bytes": 250, "weights_bytes": 100}
    reused = {"accuracy": 0.9, "output_tokens_per_s": 100.0, "peak_rss_bytes": 1000, "weights_bytes": 500,
              "reused_from": "/runs/demo/eval/k.json"}
    ratios = student_vs_teacher({"teacher": reused, "student_after": fresh})
    assert ratios["costs_comparable"] is False
    assert (ratios["accuracy"], ratios["weights_bytes"]) == (1.0, 0.2)
    assert ratios["output_tokens_per_s"] is None and ratios["peak_rss_bytes"] is None
