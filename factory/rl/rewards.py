"""GRPO's reward functions, from the factory's own verifiers and (optionally) its reward model.

Contract: :class:`VerifiedRewards` judges each batch of completions once, with the verify stage's own
callable (:class:`factory.stages.verify.Verify`: math-verify in a time-limited child process, code in
the sandbox, the R1 format rule of :mod:`factory.think`), and hands TRL one reward function per
weight > 0 (their ``__name__`` names TRL's ``rewards/<name>/mean`` metrics):

- ``correctness``: 1.0 for ``correct``, 0.0 for ``wrong`` / ``no_answer`` (a chain cut at the rollout
  length has no answer: the policy's failure, scored 0);
- ``format``: 1.0 when :func:`factory.think.format_ok`, else 0.0;
- ``reward_model``: the RM's score (:class:`factory.stages.reward.RewardScorer`, the reward stage's
  scorer), None for a row the RM could not score (too long, RM failure): that one function abstains.

A completion whose verification failed for infrastructure reasons (verdict ``error`` or ``timeout``:
a crashed math worker, a sandbox that would not start, a check over its time limit) gets None from
*every* function, so TRL leaves it out of its group's mean and std and gives it zero advantage: it is
excluded, never scored 0. Exclusions are counted by verdict (:attr:`VerifiedRewards.excluded`) and the
batch's excluded share is logged as the ``verification/excluded_frac`` metric each step.

TRL passes the dataset's columns to every function: this module needs ``task``, ``problem`` (the raw
prompt; the ``prompt`` column is the rendered text the policy sees), ``reference``, ``tests``,
``entry_point``. Not covered: process rewards, length penalties (TRL's own reward functions can be
added beside these).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import pyarrow as pa

from factory.rl.config import RewardsConfig

INFRA_VERDICTS = ("error", "timeout")
"""Verdicts that say the check failed, not the completion."""
SCORES = {"correct": 1.0, "wrong": 0.0, "no_answer": 0.0}


class VerifiedRewards:
    """One verification per batch behind TRL reward functions (module docstring)."""

    def __init__(self, weights: RewardsConfig, verify_cfg, think_prefilled: bool = True, reward_cfg=None):
        from factory.stages.verify import Verify

        self.weights = weights
        self.verify = Verify(verify_cfg, think_prefilled)
        self.scorer = None
        if weights.reward_model > 0:
            from factory.stages.reward import RewardScorer

            self.scorer = RewardScorer(reward_cfg)
        self.excluded: Counter = Counter()
        """Completions left out of their group's advantage, by verdict (error, timeout)."""
        self.judged = 0
        """Completions judged (excluded ones included)."""
        self._last_key: tuple | None = None
        self._last: dict | None = None

    def judge(self, completions: list[str], task: list[str], problem: list[str], reference: list, tests: list,
              entry_point: list) -> dict:
        """``{"verdict", "format_ok", "rm"}`` lists for one batch; computed once per distinct batch."""
        key = (tuple(completions), tuple(problem))
        if key == self._last_key:
            return self._last
        n = len(completions)
        table = pa.table({"task": task, "prompt": problem, "completion": completions,
                          "answer": pa.nulls(n, pa.string()),
                          "reference": pa.array(reference, pa.string()), "tests": pa.array(tests, pa.string()),
                          "entry_point": pa.array(entry_point, pa.string()), "gen_status": ["ok"] * n})
        verified = self.verify(table)
        verdicts = verified.column("verdict").to_pylist()
        rm = [None] * n
        if self.scorer is not None:
            rm = self.scorer(table).column("reward").to_pylist()
        self.judged += n
        self.excluded.update(v for v in verdicts if v in INFRA_VERDICTS)
        self._last_key = key
        self._last = {"verdict": verdicts, "format_ok": verified.column("format_ok").to_pylist(), "rm": rm}
        return self._last

    def functions(self) -> tuple[list[Callable], list[float]]:
        """TRL reward functions and their weights (``GRPOConfig.reward_weights``), weight > 0 only."""
        candidates = [("correctness", self.weights.correctness, self._correctness),
                      ("format", self.weights.format, self._format),
                      ("reward_model", self.weights.reward_model, self._reward_model)]
        functions, weights = [], []
        for name, weight, method in candidates:
            if weight > 0:
                functions.append(_named(name, method))
                weights.append(weight)
        return functions, weights

    def _batch(self, completions, kwargs) -> dict:
        judged = self.judge(completions, kwargs["task"], kwargs["problem"], kwargs["reference"], kwargs["tests"],
                            kwargs["entry_point"])
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and not judged.get("logged"):
            excluded = sum(v in INFRA_VERDICTS for v in judged["verdict"])
            log_metric("verification/excluded_frac", excluded / max(len(completions), 1))
            judged["logged"] = True
        return judged

    def _correctness(self, prompts, completions, **kwargs) -> list[float | None]:
        judged = self._batch(completions, kwargs)
        return [None if v in INFRA_VERDICTS else SCORES.get(v) for v in judged["verdict"]]

    def _format(self, prompts, completions, **kwargs) -> list[float | None]:
        judged = self._batch(completions, kwargs)
        return [None if v in INFRA_VERDICTS else float(bool(ok))
                for v, ok in zip(judged["verdict"], judged["format_ok"])]

    def _reward_model(self, prompts, completions, **kwargs) -> list[float | None]:
        judged = self._batch(completions, kwargs)
        return [None if v in INFRA_VERDICTS else score for v, score in zip(judged["verdict"], judged["rm"])]


def _named(name: str, method: Callable) -> Callable:
    def reward(prompts, completions, **kwargs):
        return method(prompts, completions, **kwargs)

    reward.__name__ = reward.__qualname__ = name
    return reward
