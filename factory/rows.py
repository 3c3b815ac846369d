"""Small pyarrow/Ray Data helpers for the row contract in :mod:`factory.schema`.

Rows are never removed mid-pipeline: filters set ``drop_reason``. These helpers add the filter
columns, split kept from dropped rows, count, and build the chat ``messages`` column of the
committed dataset.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from factory.schema import DATASET_SCHEMA, FILTER_FIELDS, MESSAGE_TYPE, SCORED_SCHEMA, conform


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
    from factory.stages.generate_udf import user_message

    opening = "<think>\n" if prompting.force_think else ""
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
