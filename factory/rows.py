"""Small pyarrow/Ray Data helpers for the row contract in :mod:`factory.schema`.

Rows are never removed mid-pipeline: filters set ``drop_reason``. These helpers add the filter
columns, split kept from dropped rows, count, and build the chat ``messages`` column of the
committed dataset.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from factory.prompting import user_message
from factory.schema import DATASET_SCHEMA, FILTER_FIELDS, MESSAGE_TYPE, SCORED_SCHEMA, conform
from factory.think import THINK_OPEN


def with_column(table: pa.Table, name: str, array) -> pa.Table:
    """``table`` with column ``name`` replaced by ``array`` (appended when absent)."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def with_filter_columns(table: pa.Table) -> pa.Table:
    """Add null ``drop_reason``/``drop_stage`` columns where missing (one row out per row in)."""
    for field in FILTER_FIELDS:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


def values(table: pa.Table, name: str, default=None) -> list:
    """The column's values as a list, or ``default`` for every row when the column is absent."""
    if name in table.column_names:
        return table.column(name).to_pylist()
    return [default] * table.num_rows


def mark_drops(table: pa.Table, reasons: list[str | None] | pa.Array, stage: str) -> pa.Table:
    """The one way a row is dropped: set ``drop_reason = reasons[i]`` and ``drop_stage = stage`` on
    rows with a reason whose ``drop_reason`` is still null (the first reason wins); other rows are
    untouched, no row is removed, and both columns are strings afterwards (added when absent).
    ``len(reasons)`` must equal the row count."""
    if len(reasons) != table.num_rows:
        raise ValueError(f"{len(reasons)} reasons for {table.num_rows} rows")
    table = with_filter_columns(table)
    reasons = reasons if isinstance(reasons, pa.Array) else pa.array(reasons, pa.string())
    old_reason, old_stage = table["drop_reason"].cast(pa.string()), table["drop_stage"].cast(pa.string())
    new = pc.and_(pc.is_null(old_reason), pc.is_valid(reasons)).fill_null(False)
    table = with_column(table, "drop_reason", pc.if_else(new, reasons.cast(pa.string()), old_reason))
    return with_column(table, "drop_stage", pc.if_else(new, pa.scalar(stage, pa.string()), old_stage))


def mark_listed(table: pa.Table, listed: dict[str, dict[str, pa.Array]], stage: str) -> pa.Table:
    """:func:`mark_drops` for decisions made elsewhere (a global step on the driver, a narrow shuffle):
    ``listed`` maps a key column (``prompt_id``, ``sample_id``) to ``{reason: ids}``; a row whose key is
    in ``ids`` gets ``reason`` (the first listing that names a row wins). Key columns absent from the
    table are skipped."""
    reasons = pa.nulls(table.num_rows, pa.string())
    for column, drops in listed.items():
        if column not in table.column_names:
            continue
        for why, ids in drops.items():
            hit = pc.and_(pc.is_in(table[column], value_set=ids), pc.is_null(reasons))
            reasons = pc.if_else(hit, pa.scalar(why), reasons)
    return mark_drops(table, reasons, stage)


def looked_up(table: pa.Table, key: str, keys: pa.Array, found: pa.Array) -> pa.Array:
    """Per row of ``table``, ``found[i]`` where ``keys[i]`` equals the row's ``key`` column (null when no
    key matches): a per-key value decided elsewhere brought back to the rows without a join."""
    return pc.take(found, pc.index_in(table[key], value_set=keys))


def count_table_drops(table: pa.Table) -> dict[str, int]:
    """Dropped rows of ``table`` counted by ``"drop_stage:drop_reason"``, keys sorted."""
    counts: dict[str, int] = {}
    for reason, stage in zip(values(table, "drop_reason"), values(table, "drop_stage"), strict=True):
        if reason is not None:
            key = f"{stage}:{reason}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def kept_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_null(table["drop_reason"]))


def dropped_rows(table: pa.Table) -> pa.Table:
    return conform(table.filter(pc.is_valid(table["drop_reason"])), SCORED_SCHEMA)


def drop_counts(ds) -> Counter:
    """``{"stage:reason": rows}`` over a Ray dataset (reads two columns only)."""
    counts: Counter = Counter()
    for batch in ds.select_columns(["drop_stage", "drop_reason"]).iter_batches(batch_format="pyarrow"):
        dropped = batch.filter(pc.is_valid(batch["drop_reason"]))
        for stage, reason in zip(dropped["drop_stage"].to_pylist(), dropped["drop_reason"].to_pylist()):
            counts[f"{stage}:{reason}"] += 1
    return counts


def kept_count(ds) -> int:
    total = 0
    for batch in ds.select_columns(["drop_reason"]).iter_batches(batch_format="pyarrow"):
        total += batch["drop_reason"].null_count
    return total


def to_dataset_rows(table: pa.Table, prompting) -> pa.Table:
    """Kept scored rows → DATASET_SCHEMA, with ``messages`` = the system turn (if any), the user turn
    exactly as the teacher saw it, and the assistant turn as it produced it (``<think>\\n`` +
    completion when thinking was forced)."""
    opening = THINK_OPEN + "\n" if prompting.force_think else ""
    system = [{"role": "system", "content": prompting.system_prompt}] if prompting.system_prompt else []
    messages = [
        system + [{"role": "user", "content": user_message(p, t, prompting)},
                  {"role": "assistant", "content": opening + (c or "")}]
        for p, t, c in zip(table["prompt"].to_pylist(), table["task"].to_pylist(), table["completion"].to_pylist())
    ]
    table = table.append_column(pa.field("messages", MESSAGE_TYPE), pa.array(messages, type=MESSAGE_TYPE))
    return conform(table, DATASET_SCHEMA)


def collect(ds) -> pa.Table:
    """A (small) Ray dataset as one Arrow table on the driver."""
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
