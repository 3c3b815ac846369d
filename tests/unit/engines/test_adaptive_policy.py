"""Adaptive sampling's policy: when a prompt stops, how much its next round draws, and a pass-rate
estimate that stays unbiased under early stopping (exact expectations over every outcome path)."""

from __future__ import annotations

import itertools
import random

import pyarrow as pa
import pytest

from factory.stages.generate import AdaptiveConfig
from factory.stages.generate.policy import (
    PromptState,
    beta_quantile,
    next_round_size,
    pass_rate_estimate,
    prompt_table,
    stop_reason,
)

C, W = "correct", "wrong"


def _cfg(**values) -> AdaptiveConfig:
    return AdaptiveConfig.model_validate({"mode": "adaptive", **values})


def _state(verdicts: list[str | None]) -> PromptState:
    return PromptState.of(verdicts, ["ok"] * len(verdicts), [0] * len(verdicts), list(range(len(verdicts))))


@pytest.mark.parametrize(
    ("verdicts", "k", "expected"),
    [
        ([W, C, W, C], 2, 1 / 3),  # the 2nd correct at trial 4: (k-1)/(N-1), not k/N = 0.5
        ([C, C], 2, 1.0),
        ([C, C, W, C], 2, 1.0),  # drawn after the k-th correct (same round): not part of the estimate
        ([W, W, C], 1, 0.0),  # k = 1: 1 only when the first trial is correct
        ([C, W], 1, 1.0),
        ([W, C, W, W], 3, 0.25),  # the cap came first: c/N
        ([W, "error", C, "timeout", C], 2, 0.5),  # infrastructure verdicts are not trials
        (["error", None], 2, None),
        ([W, C, W, C], None, 0.5),  # a fixed n: c/N
    ],
)
def test_estimate(verdicts, k, expected):
    assert pass_rate_estimate(verdicts, k) == (pytest.approx(expected) if expected is not None else None)


def _paths(p: float, cfg: AdaptiveConfig):
    """Every verdict sequence the policy can draw, with its probability (p per trial)."""

    def walk(verdicts: list[str], probability: float):
        state = _state(verdicts)
        if stop_reason(state, cfg) is not None:
            yield verdicts, probability
            return
        size = next_round_size(state, cfg)
        for outcome in itertools.product((C, W), repeat=size):
            hits = outcome.count(C)
            yield from walk(verdicts + list(outcome), probability * p ** hits * (1 - p) ** (size - hits))

    yield from walk([], 1.0)


@pytest.mark.parametrize("p", [0.1, 0.37, 0.8])
@pytest.mark.parametrize(("k", "cap", "round_size", "quantile"),
                         [(1, 5, None, 0.8), (2, 6, None, 0.8), (2, 8, 1, 0.8), (3, 8, 2, 0.8), (4, 8, None, 0.8),
                          (2, 8, None, 0.2), (2, 8, None, 0.99), (3, 9, 1, 0.5)])
def test_estimate_is_unbiased_under_the_rounds_the_policy_draws(p, k, cap, round_size, quantile):
    cfg = _cfg(k=k, max_samples=cap, round_size=round_size, round_quantile=quantile)
    paths = list(_paths(p, cfg))
    assert sum(probability for _, probability in paths) == pytest.approx(1.0)
    assert sum(probability * pass_rate_estimate(v, k) for v, probability in paths) == pytest.approx(p, abs=1e-12)


def _simulate(p: float, cfg: AdaptiveConfig, rng: random.Random) -> list[str]:
    """One prompt's verdicts under the policy's rounds, trials drawn at pass rate ``p``."""
    verdicts: list[str] = []
    state = PromptState()
    while stop_reason(state, cfg) is None:
        verdicts += [C if rng.random() < p else W for _ in range(next_round_size(state, cfg))]
        n, c = len(verdicts), verdicts.count(C)
        state = PromptState(drawn=n, trials=n, correct=c, rounds=state.rounds + 1, next_index=n)
    return verdicts


def test_estimate_is_unbiased_by_simulation_where_the_paths_are_too_many_to_list():
    """k 4, cap 32 (2^32 paths): mean estimate over 20,000 simulated prompts per pass rate, within 4
    standard errors of p; the naive c/N, which counts the rounds' overshoot, is off by far more."""
    cfg, rng = _cfg(k=4, max_samples=32), random.Random(17)
    for p in (0.05, 0.3, 0.7):
        runs = [_simulate(p, cfg, rng) for _ in range(20_000)]
        estimates = [pass_rate_estimate(v, cfg.k) for v in runs]
        mean = sum(estimates) / len(estimates)
        error = (sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1) / len(estimates)) ** 0.5
        assert abs(mean - p) < 4 * error + 1e-9
        naive = sum(v.count(C) / len(v) for v in runs) / len(runs)
        if p >= 0.3:
            assert naive - p > 10 * error


def test_naive_share_overstates_easy_prompts_under_early_stopping():
    cfg = _cfg(k=2, max_samples=8, round_size=1)
    naive = sum(probability * v.count(C) / len(v) for v, probability in _paths(0.37, cfg))
    assert naive > 0.37 + 0.05


@pytest.mark.parametrize(
    ("verdicts", "reason"),
    [([C, C], "k_reached"), ([W] * 8, "cap_reached"), ([C, W, W], None)],
)
def test_stop_reason(verdicts, reason):
    assert stop_reason(_state(verdicts), _cfg(k=2, max_samples=8)) == reason


def test_failed_round_stops_the_prompt():
    state = PromptState.of([None, None], ["prompt_too_long"] * 2, [0, 0], [0, 1])
    assert stop_reason(state, _cfg()) == "prompt_too_long"


def test_first_round_draws_round_size_then_what_k_takes_at_the_upper_quantile():
    cfg = _cfg(k=4, max_samples=32)
    assert next_round_size(PromptState(), cfg) == 4
    assert next_round_size(_state([C, C, W, W]), cfg) == 2  # 2 more at Beta(3, 3)'s 0.8 quantile 0.64: 3.1
    assert next_round_size(_state([W, W, W, W]), cfg) == 14  # 4 more at Beta(1, 5)'s 0.275 (the mean 1/6: 24)
    assert next_round_size(_state([C, C, C, W]), cfg) == 1
    assert next_round_size(_state([W] * 30), cfg) == 2  # never more than the cap leaves


def test_none_of_the_first_round_no_longer_goes_straight_to_the_cap():
    cfg = _cfg(k=2, max_samples=8)
    assert next_round_size(_state([W, W]), cfg) == 4  # the posterior mean 1/4 would draw the cap's 6
    assert next_round_size(_state([W] * 6), cfg) == 2
    assert next_round_size(_state([W, C]), cfg) == 1  # one short of k: never more than one at 1 of 2


def test_a_higher_quantile_draws_fewer_per_round_and_never_less_than_k_left():
    states = [_state(v) for v in ([W, W], [W, W, W, W, C], [C, W], [W] * 5)]
    sizes = {q: [next_round_size(s, _cfg(k=3, max_samples=16, round_quantile=q)) for s in states]
             for q in (0.2, 0.5, 0.8, 0.99)}
    for low, high in zip((0.2, 0.5, 0.8), (0.5, 0.8, 0.99)):
        assert all(a >= b for a, b in zip(sizes[low], sizes[high]))
    assert sizes[0.99] == [3, 2, 2, 5]  # near what k still needs; 0 of 5 is evidence enough for more
    assert all(size >= 3 - s.correct for q in sizes for size, s in zip(sizes[q], states))


def test_round_size_sets_the_first_round():
    cfg = _cfg(k=2, max_samples=16, round_size=3)
    assert next_round_size(PromptState(), cfg) == 3 and next_round_size(_state([C, W, W]), cfg) == 1


@pytest.mark.parametrize(("q", "a", "b", "expected"),
                         [(0.8, 1, 3, 1 - 0.2 ** (1 / 3)), (0.5, 2, 2, 0.5), (0.9, 4, 1, 0.9 ** (1 / 4)),
                          (0.8, 1, 1, 0.8)])
def test_beta_quantile(q, a, b, expected):
    assert beta_quantile(q, a, b) == pytest.approx(expected, abs=1e-9)


def _rows(prompt_id: str, verdicts: list[str | None], statuses: list[str] | None = None) -> list[dict]:
    statuses = statuses or ["ok"] * len(verdicts)
    return [dict(prompt_id=prompt_id, task="math", source="s", sample_index=i, sample_round=i // 2, verdict=v,
                 gen_status=status, completion_tokens=10) for i, (v, status) in enumerate(zip(verdicts, statuses))]


def test_prompt_table_has_estimates_stop_reasons_and_difficulty():
    rows = _rows("easy", [C, C]) + _rows("mid", [W, C, W, C]) + _rows("hard", [W] * 4) + _rows("cut", [W, C]) \
        + _rows("long", [None, None], ["prompt_too_long"] * 2)
    table = prompt_table(pa.Table.from_pylist(rows), _cfg(k=2, max_samples=4))
    got = {r["prompt_id"]: (r["pass_rate_estimate"], r["stop_reason"], r["difficulty"], r["rounds"])
           for r in table.to_pylist()}
    assert got == {"easy": (1.0, "k_reached", "always", 1), "mid": (pytest.approx(1 / 3), "k_reached", "partial", 2),
                   "hard": (0.0, "cap_reached", "unsolved", 2), "cut": (0.5, "budget", "partial", 1),
                   "long": (None, "prompt_too_long", "unknown", 1)}
    assert table.column("completion_tokens").to_pylist()[0] == 20


def test_prompt_table_of_a_fixed_n_is_the_plain_share():
    table = prompt_table(pa.Table.from_pylist(_rows("p", [C, W, W, C])), None)
    assert table.to_pylist()[0]["pass_rate_estimate"] == 0.5 and table.to_pylist()[0]["stop_reason"] == "fixed_n"
