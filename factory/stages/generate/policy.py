"""Adaptive sampling's per-prompt policy and the estimates it leaves behind (pure: no Ray, no engine).

A prompt is sampled in rounds until it has ``k`` verified-correct samples or ``max_samples``
drawn (or the run's token budget is spent). What is decided here, from the verdicts so far only:

- :func:`stop_reason`: why a prompt is finished (``k_reached``, ``cap_reached``, a generation failure),
  or None to go on;
- :func:`next_round_size`: the first round draws ``round_size`` (default k) samples; a later one draws
  what the remaining k − c correct are expected to take at an *optimistic* pass rate, the
  ``round_quantile`` (default 0.8) upper quantile of the Beta(c + 1, N − c + 1) posterior (uniform
  prior) after c correct of N trials: ``floor((k − c) / p_q)``, at least k − c, at most the cap left.
  Drawing at the posterior mean instead sends a prompt with 0 of 2 straight to the cap (k = 2, cap 8:
  2 more at 1/4 is 8, the 6 left), paying for the samples after its k-th correct whenever it is
  merely hard; at the 0.8 quantile it draws 4 (2 / 0.415), then what the cap leaves, and a prompt
  one short of k draws 1 to 3. A round of at most k − c never overshoots (it is what sampling one at
  a time would draw); a higher quantile buys fewer overshoot samples with more rounds;
- :func:`pass_rate_estimate`: an unbiased pass rate under this early stopping;
- :func:`prompt_table`: one row per prompt (estimate, stop reason, counts) built from the stage's
  output rows: the side table of hard prompts (never solved) and of the 0 < pass rate < 1 prompts.

Trials are the samples with a scored verdict (``correct``/``wrong``/``no_answer``, as the rejection
filter counts them), in draw order (``sample_index``); infrastructure verdicts and generation
failures are not trials. Why the estimate is unbiased: the design is inverse binomial sampling
truncated at the cap, and the first trial X1 is an unbiased estimate of p; Rao–Blackwellising it on
the stopping point (N, c) gives P(X1 = 1 | N, c) over the paths that stop there. Stopped at the k-th
correct trial N: C(N-2, k-2) / C(N-1, k-1) = (k-1)/(N-1) (Haldane; for k = 1, 1 if N = 1 else 0).
Stopped with c < k correct in N trials: C(N-1, c-1) / C(N, c) = c/N. That is the rule for drawing one
sample at a time. With rounds, the estimate is that same rule read off the prefix of the draws up to
the k-th correct trial (or all N when k was not reached): the rounds only decide how far past that
point the draws go, never which prefix it is, because a prompt stops only once it has k correct or
the cap's N trials, and a round never passes the cap. Round sizes that depend on the verdicts so far
(as here) therefore leave it exactly unbiased: it is a function of i.i.d. trials that does not look at
the round boundaries (checked exactly over every path, and by simulation for a larger cap, in
tests/unit/engines/test_adaptive_policy.py). Samples drawn after the k-th correct one in the same
round are kept as data but left out of the estimate. The naive c/N overstates easy prompts' pass
rates (k/N at the k-th success). Caveats: a failed sample (not a trial) still counts against the cap on draws, so with
failures the truncation point is N trials < cap (unbiased while failures do not depend on the
outcome); a prompt stopped by the token budget is treated as stopped at N (c/N): unbiased as long as
the budget running out does not depend on this prompt's outcomes.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from factory.stages.filter.rejection import SCORED_VERDICTS
from factory.stages.generate.config import AdaptiveConfig

STOP_K_REACHED, STOP_CAP, STOP_BUDGET, STOP_FIXED = "k_reached", "cap_reached", "budget", "fixed_n"
PROMPT_TABLE_SCHEMA = pa.schema([
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("task", pa.string()),
    pa.field("source", pa.string()),
    pa.field("samples", pa.int32()),  # rows drawn, failures included
    pa.field("trials", pa.int32()),  # samples with a scored verdict
    pa.field("correct", pa.int32()),
    pa.field("rounds", pa.int32()),
    pa.field("completion_tokens", pa.int64()),
    pa.field("pass_rate_estimate", pa.float64()),  # pass_rate_estimate(); null without trials
    pa.field("stop_reason", pa.string()),  # k_reached | cap_reached | budget | fixed_n | a failure gen_status
    pa.field("difficulty", pa.string()),  # unsolved | partial | always | unknown
])


@dataclass(frozen=True)
class PromptState:
    """What one prompt's samples so far say (rows in sample_index order)."""

    drawn: int = 0
    trials: int = 0
    correct: int = 0
    rounds: int = 0
    next_index: int = 0
    failure: str | None = None
    """The gen_status of a round that failed (prompt_too_long, engine_error): no further round."""

    @classmethod
    def of(cls, verdicts: Sequence[str | None], statuses: Sequence[str], rounds: Sequence[int | None],
           indices: Sequence[int]) -> "PromptState":
        failure = next((s for s in statuses if s != "ok"), None)
        return cls(drawn=len(verdicts), trials=sum(v in SCORED_VERDICTS for v in verdicts),
                   correct=sum(v == "correct" for v in verdicts), rounds=max((r or 0 for r in rounds), default=-1) + 1,
                   next_index=max(indices, default=-1) + 1, failure=failure)


def stop_reason(state: PromptState, cfg: AdaptiveConfig) -> str | None:
    """Why the prompt needs no further round, or None (module docstring)."""
    if state.failure is not None:
        return state.failure
    if state.correct >= cfg.k:
        return STOP_K_REACHED
    if state.drawn >= cfg.max_samples:
        return STOP_CAP
    return None


def next_round_size(state: PromptState, cfg: AdaptiveConfig) -> int:
    """Samples of the prompt's next round (module docstring); > 0 while :func:`stop_reason` is None."""
    left = cfg.max_samples - state.drawn
    if state.drawn == 0:
        return min(cfg.first_round, left)
    needed = max(cfg.k - state.correct, 1)
    optimistic = beta_quantile(cfg.round_quantile, state.correct + 1, state.trials - state.correct + 1)
    return max(1, min(left, max(needed, math.floor(needed / optimistic))))


@functools.lru_cache(maxsize=4096)
def beta_quantile(q: float, a: int, b: int) -> float:
    """The ``q`` quantile of Beta(a, b) for integer a, b >= 1, by bisection on its CDF
    (I_x(a, b) = P(Binomial(a + b - 1, x) >= a): exact sums, no special functions)."""
    n = a + b - 1

    def cdf(x: float) -> float:
        return sum(math.comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))

    low, high = 0.0, 1.0
    for _ in range(48):  # 2^-48: far below what floor((k - c) / p) can tell apart
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < q else (low, middle)
    return (low + high) / 2


def pass_rate_estimate(verdicts: Sequence[str | None], k: int | None) -> float | None:
    """Unbiased pass rate from a prompt's verdicts in draw order, sampled until ``k`` correct (or
    stopped earlier); ``k`` None: a fixed number of samples (c/N). None without a trial."""
    trials = [v == "correct" for v in verdicts if v in SCORED_VERDICTS]
    if not trials:
        return None
    if k is not None and sum(trials) >= k:
        at = [i for i, ok in enumerate(trials, start=1) if ok][k - 1]  # the trial that brought the k-th correct
        if k == 1:
            return 1.0 if at == 1 else 0.0
        return (k - 1) / (at - 1)
    return sum(trials) / len(trials)


def prompt_table(rows: pa.Table, adaptive: AdaptiveConfig | None) -> pa.Table:
    """One row per prompt of ``rows`` (the generation stage's output rows, whole prompts; other
    columns are ignored): counts, the unbiased estimate, the stop reason and the difficulty band
    (``unsolved``: no correct sample; ``partial``: 0 < estimate < 1; ``always``: estimate 1;
    ``unknown``: no trial). ``adaptive`` None or in fixed mode: a fixed n was drawn."""
    columns = ("prompt_id", "task", "source", "sample_index", "sample_round", "verdict", "gen_status",
               "completion_tokens")
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows.select(list(columns)).to_pylist():
        grouped[row["prompt_id"]].append(row)
    adaptive = adaptive if adaptive is not None and adaptive.mode == "adaptive" else None
    out = []
    for prompt_id, samples in grouped.items():
        samples.sort(key=lambda r: r["sample_index"])
        verdicts = [r["verdict"] for r in samples]
        state = PromptState.of(verdicts, [r["gen_status"] for r in samples], [r["sample_round"] for r in samples],
                               [r["sample_index"] for r in samples])
        estimate = pass_rate_estimate(verdicts, adaptive.k if adaptive else None)
        reason = (stop_reason(state, adaptive) or STOP_BUDGET) if adaptive else (state.failure or STOP_FIXED)
        out.append({
            "prompt_id": prompt_id, "task": samples[0]["task"], "source": samples[0]["source"],
            "samples": state.drawn, "trials": state.trials, "correct": state.correct, "rounds": state.rounds,
            "completion_tokens": sum(r["completion_tokens"] or 0 for r in samples),
            "pass_rate_estimate": estimate, "stop_reason": reason, "difficulty": _difficulty(state, estimate),
        })
    return pa.Table.from_pylist(out, schema=PROMPT_TABLE_SCHEMA)


def _difficulty(state: PromptState, estimate: float | None) -> str:
    if estimate is None:
        return "unknown"
    if state.correct == 0:
        return "unsolved"
    return "always" if estimate >= 1.0 else "partial"
