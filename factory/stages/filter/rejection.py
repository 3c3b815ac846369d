"""Rejection sampling over one prompt's samples, and the prompt's pass rate.

:func:`reject_group` takes every sample row of one ``prompt_id`` (as a pyarrow table, the unit of
``groupby("prompt_id").map_groups``) and returns the same rows with:

- ``pass_rate`` on every row: correct / (correct + wrong + no_answer) over all the prompt's samples,
  including rows already dropped by quality filters (a truncated trace is still a teacher failure).
  Samples whose verdict is ``error``, ``timeout`` or null are left out of the denominator (they are
  dropped and counted as ``infra:verify_*`` upstream); ``null`` when no sample has a verdict. Rows
  of adaptive sampling carry the prompt's unbiased ``pass_rate_estimate`` (the share correct is
  biased under early stopping: k/N at the k-th success), which is used instead.
- ``drop_reason``/``drop_stage = "rejection"`` on still-kept rows by these policies, in order:
  1. pass-rate band: ``pass_rate_below_min`` / ``pass_rate_above_max`` (or ``pass_rate_unknown``)
     drop prompts the teacher (almost) never or always solves;
  2. ``require_correct``: ``verdict_<verdict>`` (``verdict_missing`` for null) for non-correct rows;
  3. reward policies need a reward: ``no_reward`` when it is null, ``below_min_reward`` under
     ``min_reward``;
  4. ``best_of_n``: ``not_best_of_n`` beyond the n best remaining rows;
  5. ``max_per_prompt``: ``over_max_per_prompt`` beyond the k best remaining rows.
  "Best" is deterministic: reward descending (null last), then completion_tokens ascending (null
  last), then sample_index.

Not covered: cross-prompt quotas (e.g. per-source balance) and diversity-aware selection.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import field_validator, model_validator

from factory.pipeline import Stage, StageOutput
from factory.rows import looked_up, mark_drops, mark_listed, values, with_column
from factory.sections import Section

SCORED_VERDICTS = ("correct", "wrong", "no_answer")
"""Verdicts that say something about the teacher; others (error, timeout, null) are infrastructure."""

STAGE = "rejection"


class RejectionConfig(Section):
    """Rejection-sampling policies applied per prompt, after the quality filters."""

    require_correct: bool = True
    """Distillation data should only show the student solutions the verifier accepted."""
    min_reward: float | None = None
    """Reward-model floor: drops verified-but-sloppy traces the RM scores low (needs reward.enabled)."""
    best_of_n: int | None = None
    """Keep only the n highest-reward remaining samples per prompt (needs reward.enabled)."""
    max_per_prompt: int | None = None
    """Caps samples per prompt so easy prompts do not dominate the dataset."""
    min_pass_rate: float | None = None
    """Drop prompts the teacher solves less often (e.g. 0.01 drops never-solved: likely bad references)."""
    max_pass_rate: float | None = None
    """Drop prompts the teacher solves more often (e.g. 0.99 drops always-solved: little to learn)."""

    @field_validator("best_of_n", "max_per_prompt")
    @classmethod
    def _positive(cls, value: int | None, info) -> int | None:
        if value is not None and value <= 0:
            raise ValueError(f"{info.field_name} must be > 0")
        return value

    @field_validator("min_pass_rate", "max_pass_rate")
    @classmethod
    def _rate(cls, value: float | None, info) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{info.field_name} must be within [0, 1]")
        return value

    @model_validator(mode="after")
    def _band(self) -> "RejectionConfig":
        if self.min_pass_rate is not None and self.max_pass_rate is not None and self.min_pass_rate > self.max_pass_rate:
            raise ValueError("min_pass_rate must be <= max_pass_rate")
        return self


def pass_rate(verdicts: list[str | None]) -> float | None:
    """Share of scored verdicts (:data:`SCORED_VERDICTS`) that are ``correct``; ``None`` if none."""
    scored = [verdict for verdict in verdicts if verdict in SCORED_VERDICTS]
    return sum(verdict == "correct" for verdict in scored) / len(scored) if scored else None


def rank_key(reward: float | None, completion_tokens: int | None, sample_index: int) -> tuple:
    """Sort key, best first: reward descending, completion_tokens ascending (nulls last), sample_index."""
    return (
        reward is None,
        -reward if reward is not None else 0.0,
        completion_tokens is None,
        completion_tokens if completion_tokens is not None else 0,
        sample_index,
    )


def _band_reason(rate: float | None, cfg: RejectionConfig) -> str | None:
    if cfg.min_pass_rate is None and cfg.max_pass_rate is None:
        return None
    if rate is None:
        return "pass_rate_unknown"
    if cfg.min_pass_rate is not None and rate < cfg.min_pass_rate:
        return "pass_rate_below_min"
    if cfg.max_pass_rate is not None and rate > cfg.max_pass_rate:
        return "pass_rate_above_max"
    return None


def reject_group(table: pa.Table, cfg: RejectionConfig) -> pa.Table:
    """One prompt's rows with ``pass_rate`` set and rejection drops marked (module docstring).
    Raises ValueError when the rows belong to more than one ``prompt_id``."""
    if len(set(table.column("prompt_id").to_pylist())) > 1:
        raise ValueError("reject_group takes the rows of exactly one prompt_id")
    verdicts = values(table, "verdict")
    rewards = values(table, "reward")
    tokens = values(table, "completion_tokens")
    indices = table.column("sample_index").to_pylist()
    estimates = {v for v in values(table, "pass_rate_estimate") if v is not None}
    rate = estimates.pop() if len(estimates) == 1 else pass_rate(verdicts)
    reasons: list[str | None] = [None] * table.num_rows
    alive = [i for i, dropped in enumerate(values(table, "drop_reason")) if dropped is None]

    def drop(rows: list[int], reason_of) -> list[int]:
        """Mark rows for which ``reason_of(row)`` gives a reason; return the rows still alive."""
        kept = []
        for row in rows:
            reason = reason_of(row)
            if reason is None:
                kept.append(row)
            else:
                reasons[row] = reason
        return kept

    band = _band_reason(rate, cfg)
    alive = drop(alive, lambda row: band)
    if cfg.require_correct:
        alive = drop(alive, lambda row: None if verdicts[row] == "correct" else f"verdict_{verdicts[row] or 'missing'}")
    if cfg.min_reward is not None or cfg.best_of_n is not None:
        alive = drop(alive, lambda row: "no_reward" if rewards[row] is None else None)
    if cfg.min_reward is not None:
        alive = drop(alive, lambda row: "below_min_reward" if rewards[row] < cfg.min_reward else None)
    alive.sort(key=lambda row: rank_key(rewards[row], tokens[row], indices[row]))
    for limit, reason in ((cfg.best_of_n, "not_best_of_n"), (cfg.max_per_prompt, "over_max_per_prompt")):
        if limit is not None:
            for row in alive[limit:]:
                reasons[row] = reason
            alive = alive[:limit]
    out = with_column(table, "pass_rate", pa.array([rate] * table.num_rows, pa.float64()))
    return mark_drops(out, reasons, STAGE)


JUDGED_COLUMNS = ("prompt_id", "sample_id", "sample_index", "verdict", "reward", "completion_tokens", "drop_reason",
                  "pass_rate_estimate")
"""What :func:`reject_group` reads, plus ``sample_id`` to name the rows: the only columns the grouping moves (the
rows' text stays where it is, so no process holds a partition's chains)."""


def decide_group(table: pa.Table, cfg: RejectionConfig) -> pa.Table:
    """One prompt's judged columns -> its decisions, a row per sample: ``prompt_id``, ``sample_id``,
    ``pass_rate`` and ``drop_reason``, the reason this stage drops the row for (null where it keeps the row
    or an earlier stage dropped it)."""
    out = reject_group(table, cfg)
    mine = pc.fill_null(pc.equal(out["drop_stage"], STAGE), False)
    return pa.table({"prompt_id": out["prompt_id"], "sample_id": out["sample_id"], "pass_rate": out["pass_rate"],
                     "drop_reason": pc.if_else(mine, out["drop_reason"], pa.scalar(None, pa.string()))})


def decide_in_process(table: pa.Table, cfg: RejectionConfig) -> pa.Table:
    """:func:`decide_group` over every prompt of ``table`` (the judged columns of a small run, at least one row)
    in this process."""
    table = table.sort_by("prompt_id")
    ids = table["prompt_id"].to_pylist()
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]] + [len(ids)]
    parts = [decide_group(table.slice(start, end - start), cfg) for start, end in zip(starts, starts[1:])]
    return pa.concat_tables(parts)


class Rejection(Stage):
    """Per-prompt rejection sampling and pass rates (module docstring). The decisions are made over the judged
    columns only (:data:`JUDGED_COLUMNS`): grouped by ``prompt_id`` in a Ray shuffle, or in the driver up to
    :data:`factory.runtime.IN_PROCESS_MAX_ROWS` rows, then collected on the driver (~100 bytes a row) and applied
    to the rows where they are, batch by batch."""

    name = STAGE
    section = "filter.rejection"
    requires = ("prompt_id", "sample_id", "sample_index", "verdict", "completion_tokens", "drop_reason", "drop_stage")
    adds = ("pass_rate", "drop_reason", "drop_stage")
    barrier = ("a prompt's samples are judged together: their judged columns are grouped by prompt_id, so the input "
               "is materialised once (read for the decisions, then marked)")

    def apply(self, ds) -> StageOutput:
        import ray

        from factory.rows import collect
        from factory.runtime import groupby_partitions, runs_in_process

        cfg = self.config
        ds = ds.materialize()
        rows = ds.count()
        if rows == 0:  # e.g. a refresh with nothing new to generate
            return StageOutput(ds)
        judged = ds.select_columns([name for name in JUDGED_COLUMNS if name in ds.schema().names])
        if runs_in_process(rows):
            decisions = self.metered(decide_in_process)(collect(judged), cfg)
        else:
            grouped = judged.groupby("prompt_id", num_partitions=groupby_partitions())
            decisions = collect(grouped.map_groups(self.metered(decide_group), fn_kwargs={"cfg": cfg},
                                                   batch_format="pyarrow"))
        rates = decisions.group_by("prompt_id").aggregate([("pass_rate", "min")])  # one rate per prompt
        dropped = decisions.filter(pc.is_valid(decisions["drop_reason"]))
        sample_drops = {why: dropped.filter(pc.equal(dropped["drop_reason"], why))["sample_id"].combine_chunks()
                        for why in pc.unique(dropped["drop_reason"]).to_pylist()}
        shared = ray.put((rates["prompt_id"].combine_chunks(), rates["pass_rate_min"].combine_chunks(), sample_drops))

        def mark(batch: pa.Table) -> pa.Table:
            prompt_ids, pass_rates, sample_drops = ray.get(shared)
            batch = with_column(batch, "pass_rate", looked_up(batch, "prompt_id", prompt_ids, pass_rates))
            return mark_listed(batch, {"sample_id": sample_drops}, STAGE)

        return StageOutput(self.map_batches(ds, mark))
