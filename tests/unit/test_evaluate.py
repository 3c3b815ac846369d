"""Scoring of eval rows (pass@1, maj@k, errors apart) and the student/teacher comparison."""

from __future__ import annotations

import pyarrow as pa
import pytest

from factory.evaluate import score_table, student_vs_teacher


def _rows(*samples):
    names = ["prompt_id", "answer", "verdict", "gen_status"]
    return pa.Table.from_pylist([dict(zip(names, s)) for s in samples])


def test_pass_at_1_and_majority_vote():
    table = _rows(("p1", "4", "correct", "ok"), ("p1", "5", "wrong", "ok"), ("p1", "4", "correct", "ok"),
                  ("p2", "7", "wrong", "ok"), ("p2", "7", "wrong", "ok"), ("p2", "8", "correct", "ok"))
    scores = score_table(table)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["maj_at_k"] == 0.5  # p1's majority "4" is right, p2's majority "7" is wrong
    assert (scores["problems"], scores["samples"], scores["errors"]) == (2, 6, 0)


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
                    "peak_device_bytes": None, "weights_bytes": 500},
        "student_before": {"accuracy": 0.0, "output_tokens_per_s": 300.0, "latency_p50_s": 0.5,
                           "token_latency_p50_s": 0.01, "peak_rss_bytes": 250,
                           "peak_device_bytes": None, "weights_bytes": 100},
    }
    before = student_vs_teacher(results)
    assert before["student"] == "student_before" and before["accuracy"] == 0.0
    results["student_after"] = dict(results["student_before"], accuracy=0.72)
    after = student_vs_teacher(results)
    assert after["student"] == "student_after"
    assert after == {"student": "student_after", "accuracy": pytest.approx(0.9), "output_tokens_per_s": 3.0,
                     "latency_p50_s": 0.25, "token_latency_p50_s": 0.5, "peak_rss_bytes": 0.25, "peak_device_bytes": None, "weights_bytes": 0.2}
    assert student_vs_teacher({"student_after": results["student_after"]}) is None
