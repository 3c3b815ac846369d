"""Row-level helpers shared by the filter stages: reading optional columns and marking drops.

Contract: ``mark_drops`` never removes a row and never overwrites a reason already set (the first
reason wins); ``drop_reason``/``drop_stage`` are always string columns afterwards, so Ray Data
blocks keep one schema. Only pyarrow is used here.
"""

from __future__ import annotations

import pyarrow as pa

from factory.rows import with_column


def values(table: pa.Table, name: str, default=None) -> list:
    """The column's values as a list, or ``default`` for every row when the column is absent."""
    if name in table.column_names:
        return table.column(name).to_pylist()
    return [default] * table.num_rows


def mark_drops(table: pa.Table, reasons: list[str | None], stage: str) -> pa.Table:
    """Set ``drop_reason = reasons[i]`` and ``drop_stage = stage`` on rows with a reason whose
    ``drop_reason`` is still null; other rows are untouched. ``len(reasons)`` must equal the row count."""
    if len(reasons) != table.num_rows:
        raise ValueError(f"{len(reasons)} reasons for {table.num_rows} rows")
    old_reasons, old_stages = values(table, "drop_reason"), values(table, "drop_stage")
    new_reasons, new_stages = [], []
    for old_reason, old_stage, reason in zip(old_reasons, old_stages, reasons, strict=True):
        if old_reason is None and reason is not None:
            new_reasons.append(reason)
            new_stages.append(stage)
        else:
            new_reasons.append(old_reason)
            new_stages.append(old_stage)
    table = with_column(table, "drop_reason", pa.array(new_reasons, pa.string()))
    return with_column(table, "drop_stage", pa.array(new_stages, pa.string()))


def count_table_drops(table: pa.Table) -> dict[str, int]:
    """Dropped rows of ``table`` counted by ``"drop_stage:drop_reason"``, keys sorted."""
    counts: dict[str, int] = {}
    for reason, stage in zip(values(table, "drop_reason"), values(table, "drop_stage"), strict=True):
        if reason is not None:
            key = f"{stage}:{reason}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
