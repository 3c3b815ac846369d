"""RL prompt selection from the factory's own generation data: prompts the teacher solves sometimes.

A GRPO group whose completions are all right or all wrong has zero advantage everywhere and teaches
nothing, so RL trains on prompts whose pass rate lies strictly inside (``min_pass_rate``,
``max_pass_rate``). Per-prompt pass rates come from a committed snapshot's sample rows, read from the
kept rows *and* the ``dropped`` side table (a never-solved prompt has no kept row): the ``pass_rate``
column the rejection stage sets on every row (correct / scored samples over all n samples of the
prompt, infrastructure failures left out), or adaptive sampling's ``pass_rate_estimate`` (its unbiased
per-prompt estimate; ``prompts.pass_rate_from``, by default the estimate where a row has one). Every
other prompt is reported with one reason (first that applies): ``decontaminated`` (a row of it was
dropped by decontamination: a benchmark problem is never trained on), ``unknown_pass_rate`` (no
scored sample), ``never_solved``, ``always_solved``, ``at_or_below_min_pass_rate``,
``at_or_above_max_pass_rate``, ``over_max_prompts`` (a seeded choice keeps ``max_prompts``).

Not covered: prompts of the snapshot's source that never reached generation (dropped on the prompt
side, or absent from a snapshot written without the dropped side table: then never-solved prompts
are simply not seen, and the report says ``dropped_side_table: false``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from factory.rl.config import SelectionConfig
from factory.schema import PROMPT_FIELDS

PROMPT_COLUMNS = [field.name for field in PROMPT_FIELDS]
ROW_COLUMNS = PROMPT_COLUMNS + ["pass_rate", "pass_rate_estimate", "drop_stage"]
DECONTAM_STAGE_PREFIX = "decontam"


@dataclass
class Selection:
    """The selected prompt rows and what happened to every prompt seen."""

    prompts: pa.Table
    """One row per selected prompt: the prompt columns plus ``pass_rate``, ordered by prompt_id."""
    report: dict
    """``seen``, ``selected``, ``left_out`` (prompts by reason), the band, the snapshot and its source."""


def row_pass_rate(row: dict, source: str) -> float | None:
    """The pass rate a row carries for its prompt, from the column ``source`` names (see SelectionConfig)."""
    if source == "auto":
        source = "pass_rate_estimate" if row.get("pass_rate_estimate") is not None else "pass_rate"
    value = row.get(source)
    return None if value is None else float(value)


def per_prompt(rows: list[dict], source: str = "auto") -> dict[str, dict]:
    """prompt_id -> its prompt columns, its pass rate (the first non-null row value) and whether any of
    its rows was dropped by decontamination."""
    prompts: dict[str, dict] = {}
    for row in rows:
        entry = prompts.setdefault(row["prompt_id"], {**{c: row[c] for c in PROMPT_COLUMNS}, "pass_rate": None,
                                                      "decontaminated": False})
        if entry["pass_rate"] is None:
            entry["pass_rate"] = row_pass_rate(row, source)
        if (row.get("drop_stage") or "").startswith(DECONTAM_STAGE_PREFIX):
            entry["decontaminated"] = True
    return prompts


def reason_left_out(entry: dict, cfg: SelectionConfig) -> str | None:
    """Why a prompt is not selected (module docstring), or None when it is."""
    rate = entry["pass_rate"]
    if entry["decontaminated"]:
        return "decontaminated"
    if rate is None:
        return "unknown_pass_rate"
    if rate == 0.0:
        return "never_solved"
    if rate == 1.0:
        return "always_solved"
    if rate <= cfg.min_pass_rate:
        return "at_or_below_min_pass_rate"
    if rate >= cfg.max_pass_rate:
        return "at_or_above_max_pass_rate"
    return None


def _seeded_order(prompt_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{prompt_id}".encode()).hexdigest()


def select(prompts: dict[str, dict], cfg: SelectionConfig, seed: int) -> tuple[list[dict], Counter]:
    """The selected prompt entries (ordered by prompt_id) and the left-out counts by reason."""
    left_out: Counter = Counter()
    chosen = []
    for entry in prompts.values():
        reason = reason_left_out(entry, cfg)
        if reason is None:
            chosen.append(entry)
        else:
            left_out[reason] += 1
    if cfg.max_prompts is not None and len(chosen) > cfg.max_prompts:
        chosen.sort(key=lambda entry: _seeded_order(entry["prompt_id"], seed))
        left_out["over_max_prompts"] += len(chosen) - cfg.max_prompts
        chosen = chosen[:cfg.max_prompts]
    return sorted(chosen, key=lambda entry: entry["prompt_id"]), left_out


def _rows(snapshot, side: str | None) -> list[dict]:
    dataset = snapshot.to_arrow_dataset(side=side)
    columns = [c for c in ROW_COLUMNS if c in dataset.schema.names]
    return dataset.to_table(columns=columns).to_pylist()


def select_from_snapshot(snapshot, cfg: SelectionConfig, seed: int = 0) -> Selection:
    """Select RL prompts from a committed :class:`~factory.store.Snapshot` (module docstring)."""
    has_dropped = "dropped" in snapshot.side_tables()
    rows = _rows(snapshot, None) + (_rows(snapshot, "dropped") if has_dropped else [])
    prompts = per_prompt(rows, cfg.pass_rate_from)
    chosen, left_out = select(prompts, cfg, seed)
    schema = pa.schema([field for field in PROMPT_FIELDS] + [pa.field("pass_rate", pa.float64())])
    table = pa.Table.from_pylist([{c: entry[c] for c in schema.names} for entry in chosen], schema=schema)
    report = {
        "snapshot": snapshot.version, "snapshot_path": str(snapshot.path),
        "pass_rate_from": cfg.pass_rate_from,
        "dropped_side_table": has_dropped, "band": [cfg.min_pass_rate, cfg.max_pass_rate],
        "seen": len(prompts), "selected": len(chosen), "left_out": dict(sorted(left_out.items())),
        "prompt_ids_sha256": hashlib.sha256("\n".join(e["prompt_id"] for e in chosen).encode()).hexdigest(),
    }
    return Selection(prompts=table, report=report)
