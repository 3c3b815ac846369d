"""Rows an upstream stage failed on leave the data here, counted with the failure as their reason.

``gen_<status>`` for ``gen_status != "ok"`` (``gen_engine_error``, ``gen_prompt_too_long``),
``verify_error`` / ``verify_timeout`` for a verifier that could not judge, ``reward_error`` for a
reward model that could not score. An infrastructure failure is never a score of 0: these rows are
excluded, and the report shows how many. Always on; no config.
"""

from __future__ import annotations

import pyarrow as pa

from factory.pipeline import Stage, StageOutput
from factory.rows import mark_drops, values


def infra_failure(gen_status: str | None, verdict: str | None, reward_error: str | None) -> str | None:
    """Reason for a row that an upstream stage failed on (generation, verifier, reward model)."""
    if gen_status != "ok":
        return f"gen_{gen_status}"
    if verdict in ("error", "timeout"):
        return f"verify_{verdict}"
    if reward_error is not None:
        return "reward_error"
    return None


def mark_failures(table: pa.Table) -> pa.Table:
    """``table`` with :func:`infra_failure` reasons marked (``drop_stage = "infra"``)."""
    reasons = [infra_failure(status, verdict, error) for status, verdict, error in zip(
        table.column("gen_status").to_pylist(), values(table, "verdict"), values(table, "reward_error"), strict=True)]
    return mark_drops(table, reasons, FailedUpstream.name)


class FailedUpstream(Stage):
    """Drops rows generation, verification or the reward model failed on (module docstring)."""

    name = "infra"
    requires = ("gen_status", "drop_reason", "drop_stage")
    adds = ("drop_reason", "drop_stage")

    def apply(self, ds) -> StageOutput:
        return StageOutput(self.map_batches(ds, mark_failures, udf_modifying_row_count=False))
