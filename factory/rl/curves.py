"""Per-step RL curves as data (from TRL's log history) and their charts for a report.

:func:`curves_from_log` turns ``trainer.state.log_history`` (one entry per step with ``logging_steps=1``)
into plain lists keyed by :data:`CURVES`: mean correctness reward (TRL's ``rewards/correctness/mean``,
excluded completions left out), total reward, KL to the starting policy (absent when ``beta`` is 0),
mean completion length in tokens, the share of completions excluded for verifier failures, the
learning rate and seconds per step. :func:`render_curves` draws them as inline PNG ``<img>`` tags
(matplotlib Agg, through :func:`factory.report_plots.lines`), one chart per curve present.
"""

from __future__ import annotations

CURVES = {
    "correctness": "rewards/correctness/mean",
    "format": "rewards/format/mean",
    "reward_model": "rewards/reward_model/mean",
    "reward": "reward",
    "kl": "kl",
    "completion_length": "completions/mean_length",
    "excluded_frac": "verification/excluded_frac",
    "learning_rate": "learning_rate",
    "step_s": "step_time",
}
"""Curve name -> TRL log key."""
TITLES = {
    "correctness": "Mean correctness reward per step",
    "kl": "KL to the starting policy per step",
    "completion_length": "Mean completion length per step (tokens)",
    "excluded_frac": "Completions excluded (verifier failures) per step",
}


def curves_from_log(log_history: list[dict]) -> dict[str, list]:
    """``{"step": [...], <curve>: [...]}`` for the per-step entries of a TRL log history; a curve
    whose key never appears is left out; a step missing a logged key, or logging NaN, has None there."""
    entries = [e for e in log_history if "step" in e and "reward" in e]
    curves: dict[str, list] = {"step": [int(e["step"]) for e in entries]}
    for name, key in CURVES.items():
        if any(key in e for e in entries):
            curves[name] = [_number(e.get(key)) for e in entries]
    return curves


def _number(value) -> float | None:
    """A logged value as a float; None when absent or NaN (TRL's mean of a batch whose every
    completion was excluded)."""
    if value is None or value != value:
        return None
    return float(value)


def render_curves(curves: dict[str, list], names: tuple[str, ...] = tuple(TITLES)) -> list[str]:
    """One inline ``<img>`` line chart per curve of ``names`` present in ``curves`` (step on x)."""
    from factory.report_plots import lines

    return [lines(curves[name], TITLES.get(name, name), "step", name, x=curves["step"])
            for name in names if curves.get(name) and any(v is not None for v in curves[name])]
