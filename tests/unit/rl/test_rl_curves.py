"""RL curves: per-step data from TRL's log history, and their charts."""

from __future__ import annotations

from factory.rl.curves import curves_from_log, render_curves

LOG = [
    {"step": 1, "reward": 0.5, "rewards/correctness/mean": 0.5, "kl": 0.0, "completions/mean_length": 70.0,
     "verification/excluded_frac": 0.0, "learning_rate": 1e-4, "step_time": 2.0},
    {"step": 2, "reward": 0.75, "rewards/correctness/mean": float("nan"), "kl": 0.01, "completions/mean_length": 68.0,
     "verification/excluded_frac": 1.0, "learning_rate": 1e-4, "step_time": 2.1},
    {"step": 2, "train_runtime": 4.1},
]


def test_curves_have_one_value_per_step():
    curves = curves_from_log(LOG)
    assert curves["step"] == [1, 2] and curves["kl"] == [0.0, 0.01] and curves["completion_length"] == [70.0, 68.0]


def test_a_step_whose_every_completion_was_excluded_has_no_correctness_value():
    assert curves_from_log(LOG)["correctness"] == [0.5, None]


def test_curves_never_logged_are_absent():
    assert "reward_model" not in curves_from_log(LOG)


def test_each_curve_present_renders_as_an_inline_png_chart():
    charts = render_curves(curves_from_log(LOG))
    assert len(charts) == 4 and all(c.startswith('<img class="chart"') and "base64," in c for c in charts)
