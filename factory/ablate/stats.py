"""Paired bootstrap over problems and seeds: each policy's mean held-out accuracy and its differences, with intervals.

Input: per model, a matrix ``scores[seed, problem]`` of per-problem credit in [0, 1] (a greedy answer's
correctness; the correct share of a problem's samples when several are drawn), every model scored on the
same problems in the same column order. The point estimate is the mean over seeds and problems.

One bootstrap draw picks ``n`` problems with replacement, the SAME problems for every model (pairing:
a hard problem is hard for every policy, so differences are far tighter than the separate intervals
suggest), and for each model ``S`` of its seed rows with replacement (training-seed noise; a model with
one row, such as the teacher, has none); the statistic is the mean over the drawn seeds and problems.
Intervals are the percentile interval of the draws (``confidence`` 0.95: 2.5% and 97.5%), for each
model's mean and for each difference ``model - reference`` (computed within each draw). A seed draw is
shared by models with the same number of seeds (seeds are matched by position: same sample-order seed),
so seed pairing holds where it can.
"""

from __future__ import annotations

import numpy as np


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_draws(scores: dict[str, np.ndarray], resamples: int, seed: int) -> dict[str, np.ndarray]:
    """``resamples`` bootstrap means per model (module docstring), as arrays of shape (resamples,)."""
    shapes = {name: np.asarray(m, dtype=float).shape for name, m in scores.items()}
    problems = {shape[1] for shape in shapes.values()}
    if len(problems) != 1 or any(len(shape) != 2 or shape[0] < 1 for shape in shapes.values()):
        raise ValueError(f"every model needs a (seeds >= 1, problems) matrix over the same problems, got {shapes}")
    n = problems.pop()
    if n == 0:
        raise ValueError("no problems to resample")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    # counts[b, i]: how often draw b picked problem i; then sum over picked problems = counts @ scores.T
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.repeat(np.arange(resamples), n), picks.ravel()), 1.0)
    seed_draws: dict[int, np.ndarray] = {}
    draws = {}
    for name, matrix in scores.items():
        matrix = np.asarray(matrix, dtype=float)
        s = matrix.shape[0]
        if s not in seed_draws:
            picked = rng.integers(0, s, size=(resamples, s))
            weights = np.zeros((resamples, s))
            np.add.at(weights, (np.repeat(np.arange(resamples), s), picked.ravel()), 1.0)
            seed_draws[s] = weights
        per_seed = counts @ matrix.T  # (resamples, s): each seed row's sum over the drawn problems
        draws[name] = (seed_draws[s] * per_seed).sum(axis=1) / (s * n)
    return draws


def summarize(scores: dict[str, np.ndarray], reference: str, *, resamples: int = 2000, confidence: float = 0.95,
              seed: int = 0, also_against: str | None = None) -> dict:
    """Means with intervals per model, and each model's difference to ``reference`` (and to
    ``also_against``, e.g. the teacher) with intervals; ``excludes_zero`` says whether the interval of a
    difference lies entirely on one side of 0."""
    draws = bootstrap_draws(scores, resamples, seed)
    means = {name: float(np.asarray(m, dtype=float).mean()) for name, m in scores.items()}
    out: dict = {"confidence": confidence, "resamples": resamples,
                 "problems": int(np.asarray(next(iter(scores.values()))).shape[1]), "models": {}, "differences": {}}
    for name in scores:
        low, high = _percentiles(draws[name], confidence)
        out["models"][name] = {"mean": means[name], "low": low, "high": high}
    for against in [reference] + ([also_against] if also_against and also_against != reference else []):
        if against not in scores:
            continue
        diffs = {}
        for name in scores:
            if name == against:
                continue
            low, high = _percentiles(draws[name] - draws[against], confidence)
            diffs[name] = {"mean": means[name] - means[against], "low": low, "high": high,
                           "excludes_zero": bool(low > 0 or high < 0)}
        out["differences"][against] = diffs
    return out
