"""The paired bootstrap over problems and seeds, on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from factory.ablate.stats import bootstrap_draws, summarize


def test_constant_scores_give_degenerate_intervals():
    scores = {"ones": np.ones((3, 50)), "zeros": np.zeros((3, 50))}
    out = summarize(scores, "zeros", resamples=200)
    assert out["models"]["ones"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert out["differences"]["zeros"]["ones"] == {"mean": 1.0, "low": 1.0, "high": 1.0, "excludes_zero": True}


def test_one_bernoulli_policy_matches_the_normal_interval():
    rng = np.random.default_rng(1)
    n, p = 2000, 0.3
    scores = {"a": (rng.random((1, n)) < p).astype(float), "b": np.zeros((1, n))}
    out = summarize(scores, "b", resamples=4000, seed=2)
    mean = scores["a"].mean()
    half = 1.96 * np.sqrt(mean * (1 - mean) / n)
    assert out["models"]["a"]["low"] == pytest.approx(mean - half, abs=0.004)
    assert out["models"]["a"]["high"] == pytest.approx(mean + half, abs=0.004)


def test_pairing_over_problems_makes_a_small_consistent_gain_significant():
    """B solves what A solves plus 30 more of 1,000 problems: the separate intervals overlap, the paired
    difference's interval is about 0.03 ± 1.96·sqrt(0.03·0.97/1000) and excludes 0."""
    rng = np.random.default_rng(0)
    a = (rng.random(1000) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:30]] = 1.0
    out = summarize({"a": a[None, :], "b": b[None, :]}, "a", resamples=4000, seed=3)
    assert out["models"]["a"]["high"] > out["models"]["b"]["low"]  # unpaired: the intervals overlap
    diff = out["differences"]["a"]["b"]
    assert diff["mean"] == pytest.approx(0.03) and diff["excludes_zero"]
    half = 1.96 * np.sqrt(0.03 * 0.97 / 1000)
    assert diff["low"] == pytest.approx(0.03 - half, abs=0.004) and diff["high"] == pytest.approx(0.03 + half, abs=0.004)


def test_seed_noise_widens_the_interval_and_the_teacher_has_none():
    problems = np.tile([1.0, 0.0], 500)
    stable = np.vstack([problems, problems, problems])
    noisy = np.vstack([problems * 0.6, problems, problems * 1.0])  # one bad seed
    out = summarize({"stable": stable, "noisy": noisy, "teacher": problems[None, :]}, "stable", resamples=2000,
                    also_against="teacher")
    width = {name: m["high"] - m["low"] for name, m in out["models"].items()}
    assert width["noisy"] > width["stable"] == pytest.approx(width["teacher"])
    assert set(out["differences"]) == {"stable", "teacher"}
    assert out["differences"]["teacher"]["stable"]["mean"] == 0.0
    assert not out["differences"]["teacher"]["stable"]["excludes_zero"]


def test_draws_are_reproducible_and_need_the_same_problems():
    scores = {"a": np.random.default_rng(0).random((2, 40)), "b": np.zeros((2, 40))}
    first, second = bootstrap_draws(scores, 300, seed=5), bootstrap_draws(scores, 300, seed=5)
    assert all(np.array_equal(first[k], second[k]) for k in scores)
    with pytest.raises(ValueError, match="same problems"):
        bootstrap_draws({"a": np.zeros((1, 3)), "b": np.zeros((1, 4))}, 10, seed=0)
