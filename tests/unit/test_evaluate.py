"""Scoring of eval rows (pass@1, unbiased pass@k, maj@k by answer equivalence, errors apart), the eval
presets, the result fields tables, and the student/teacher comparison."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from factory.eval_fields import apply_preset, model_rows
from factory.evaluate import pass_at_k, pass_at_ks, score_table, student_vs_teacher


def _rows(*samples, source="set-a", task="math", prompt="q", reference="1"):
    names = ["prompt_id", "answer", "verdict", "gen_status"]
    return pa.Table.from_pylist([dict(zip(names, s), source=source, task=task, prompt=prompt, reference=reference)
                                 for s in samples])


def test_pass_at_1_and_majority_vote():
    table = _rows(("p1", "\\boxed{4}", "correct", "ok"), ("p1", "\\boxed{5}", "wrong", "ok"),
                  ("p1", "\\boxed{4}", "correct", "ok"), ("p2", "\\boxed{7}", "wrong", "ok"),
                  ("p2", "\\boxed{7}", "wrong", "ok"), ("p2", "\\boxed{8}", "correct", "ok"))
    scores = score_table(table)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["maj_at_k"] == 0.5  # p1's majority "4" is right, p2's majority "7" is wrong
    assert (scores["problems"], scores["samples"], scores["errors"]) == (2, 6, 0)
    assert scores["by_source"] == {"set-a": {k: v for k, v in scores.items() if k != "by_source"}}


def test_each_held_out_set_is_scored_on_its_own():
    math = _rows(("m1", "4", "correct", "ok"), ("m2", "5", "correct", "ok"), ("m3", "1", "wrong", "ok"), source="gsm8k")
    code = _rows(("c1", "def f", "wrong", "ok"), ("c2", None, None, "engine_error"), source="humaneval", task="code")
    scores = score_table(pa.concat_tables([math, code]))
    assert scores["accuracy"] == 0.5 and scores["problems"] == 5 and scores["errors"] == 1
    gsm8k, humaneval = scores["by_source"]["gsm8k"], scores["by_source"]["humaneval"]
    assert (gsm8k["accuracy"], gsm8k["problems"], gsm8k["errors"]) == (pytest.approx(2 / 3), 3, 0)
    assert (humaneval["accuracy"], humaneval["problems"], humaneval["errors"]) == (0.0, 2, 1)


def test_infrastructure_failures_are_errors_not_wrong_answers():
    table = _rows(("p1", "\\boxed{4}", "correct", "ok"), ("p1", None, None, "engine_error"),
                  ("p2", "\\boxed{3}", "timeout", "ok"), ("p2", "\\boxed{3}", "error", "ok"))
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
    assert after == {"student": "student_after", "costs_comparable": True, "accuracy": pytest.approx(0.9),
                     "pass_at_1": None, "output_tokens_per_s": 3.0,
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


def test_majority_vote_groups_answers_equal_in_value_not_in_wording():
    # three wordings of 1/2 outvote two identical wrong answers; a raw-text vote picks the wrong "3"
    table = _rows(("p1", "The answer is \\boxed{1/2}.", "correct", "ok"),
                  ("p1", "So we get \\boxed{0.5}, done.", "correct", "ok"),
                  ("p1", "Halving gives $\\boxed{\\frac{1}{2}}$. That is all.", "correct", "ok"),
                  ("p1", "It is \\boxed{3}.", "wrong", "ok"), ("p1", "It is \\boxed{3}.", "wrong", "ok"))
    assert score_table(table)["maj_at_k"] == 1.0


def test_choice_answers_vote_by_chosen_letter():
    prompt = "Which city is the capital of France?\nA. London\nB. Berlin\nC. Paris\nD. Madrid"
    table = _rows(("q1", "Reading the options, the answer is (C).", "correct", "ok"),
                  ("q1", "\\boxed{C}", "correct", "ok"), ("q1", "Answer: Paris", "correct", "ok"),
                  ("q1", "I pick B.", "wrong", "ok"), ("q1", "I pick B.", "wrong", "ok"),
                  task="logic", prompt=prompt, reference="C")
    assert score_table(table)["maj_at_k"] == 1.0


def test_a_tied_vote_gets_the_share_of_correct_leaders():
    table = _rows(("p1", "\\boxed{2}", "correct", "ok"), ("p1", "so \\boxed{2.0}", "correct", "ok"),
                  ("p1", "\\boxed{5}", "wrong", "ok"), ("p1", "maybe \\boxed{5}", "wrong", "ok"))
    assert score_table(table)["maj_at_k"] == 0.5


def test_a_problem_with_no_extractable_answer_loses_the_vote():
    table = _rows(("p1", "I am not sure.", "no_answer", "ok"), ("p1", "No idea", "no_answer", "ok"))
    assert score_table(table)["maj_at_k"] == 0.0


def test_code_problems_have_no_majority_vote():
    table = _rows(("c1", "def f(): return 1", "correct", "ok"), ("c1", "def f(): return 2", "wrong", "ok"),
                  task="code")
    scores = score_table(table)
    assert scores["maj_at_k"] is None and scores["pass_at_1"] == 0.5


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_the_combinatorial_formula(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_known_values_and_bounds():
    assert (pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 1, 4)) == (0.25, 0.5, 1.0)
    assert pass_at_k(10, 0, 5) == 0.0
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)


def test_reported_k_are_powers_of_two_and_n():
    assert [pass_at_ks(n) for n in (1, 2, 4, 6, 16)] == [[1], [1, 2], [1, 2, 4], [1, 2, 4, 6], [1, 2, 4, 8, 16]]


def test_pass_at_1_averages_per_problem_and_skips_problems_short_of_k():
    # p1: 4 of 4 correct; p2: 0 of 1 judged (3 engine errors): pooled accuracy 4/5, pass@1 (1 + 0) / 2
    table = _rows(*[("p1", "\\boxed{1}", "correct", "ok")] * 4, ("p2", "\\boxed{2}", "wrong", "ok"),
                  *[("p2", None, None, "engine_error")] * 3)
    scores = score_table(table)
    assert scores["accuracy"] == pytest.approx(0.8) and scores["pass_at_1"] == 0.5
    assert scores["k"] == 4 and scores["pass_at"] == {"1": 0.5, "2": 1.0, "4": 1.0} and scores["pass_at_k"] == 1.0


def test_r1_preset_fills_what_the_config_leaves_unset():
    assert apply_preset({"preset": "r1"}) == {"preset": "r1", "samples": 16, "temperature": 0.6, "top_p": 0.95}
    assert apply_preset({"preset": "r1", "samples": 4})["samples"] == 4
    assert apply_preset({"samples": 1}) == {"samples": 1}
    assert apply_preset({"preset": "nope"}) == {"preset": "nope"}  # left for the config's Literal to reject


def test_new_figures_are_shown_in_the_summary_and_report_tables():
    results = {"teacher": {"accuracy": 0.75, "pass_at_1": 0.7, "pass_at_k": 0.9, "k": 4, "maj_at_k": 0.8}}
    header, rows = model_rows(results)
    assert header == ["model", "accuracy", "pass@1", "samples/problem", "pass@k", "maj@k"]
    assert rows == [["teacher", "0.750", "0.700", "4", "0.900", "0.800"]]
    assert model_rows(results, summary_only=True)[0] == ["model", "accuracy", "pass@1"]
