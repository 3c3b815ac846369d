"""Filter stage: quality filters, then per-prompt rejection sampling with pass rates.

Contract (docs/ARCHITECTURE.md): no row is ever removed. Rejected rows get ``drop_reason`` and
``drop_stage`` (``infra``, ``quality`` or ``rejection``) when their ``drop_reason`` is still null;
rows dropped by an earlier stage pass through untouched (but still count towards the prompt's
``pass_rate``, which is set on every row). Infrastructure failures are dropped with their own
reasons (``gen_*``, ``verify_error``, ``verify_timeout``, ``reward_error``), never scored 0.
The checks and policies are documented in :mod:`factory.stages.filter.quality` and
:mod:`factory.stages.filter.rejection`; :func:`count_drops` turns reasons into counters.

Output order: :func:`apply_filters` groups by ``prompt_id`` (a Ray shuffle), so row order is not
kept; the rows themselves depend only on their prompt's rows and the config.
"""

from __future__ import annotations

import pyarrow as pa

from factory.rows import count_table_drops, with_column
from factory.sections import Section
from factory.stages.filter.quality import QualityConfig, QualityFilter
from factory.stages.filter.rejection import RejectionConfig, reject_group

__all__ = [
    "FilterConfig",
    "QualityConfig",
    "QualityFilter",
    "RejectionConfig",
    "apply_filters",
    "apply_filters_table",
    "count_drops",
    "reject_group",
]


class FilterConfig(Section):
    """Quality filters and rejection sampling."""

    quality: QualityConfig = QualityConfig()
    """Per-row checks of the reasoning trace (format, truncation, repetition, language, length)."""
    rejection: RejectionConfig = RejectionConfig()
    """Per-prompt policies (correctness, reward, best-of-n, caps, pass-rate band)."""


def apply_filters(ds, cfg: FilterConfig, think_prefilled: bool = True):
    """Ray Dataset ``ds`` with quality drops marked (``map_batches``), then rejection drops and
    ``pass_rate`` per prompt (``groupby("prompt_id").map_groups``). Lazy, like any Ray Data op."""
    quality = ds.map_batches(QualityFilter(cfg.quality, think_prefilled), batch_format="pyarrow",
                             udf_modifying_row_count=False)
    return quality.groupby("prompt_id").map_groups(reject_group, fn_kwargs={"cfg": cfg.rejection}, batch_format="pyarrow")


def apply_filters_table(table: pa.Table, cfg: FilterConfig, think_prefilled: bool = True) -> pa.Table:
    """In-memory equivalent of :func:`apply_filters` for one pyarrow table (small runs, tests);
    rows come back grouped by prompt in first-seen order."""
    marked = QualityFilter(cfg.quality, think_prefilled)(table)
    prompt_ids = marked.column("prompt_id").to_pylist()
    groups: dict[str, list[int]] = {}
    for row, prompt_id in enumerate(prompt_ids):
        groups.setdefault(prompt_id, []).append(row)
    parts = [reject_group(marked.take(rows), cfg.rejection) for rows in groups.values()]
    if not parts:
        return with_column(marked, "pass_rate", pa.nulls(0, pa.float64()))
    return pa.concat_tables(parts)


def _count_batch(table: pa.Table) -> pa.Table:
    counts = count_table_drops(table)
    return pa.table({"key": pa.array(list(counts), pa.string()), "rows": pa.array(list(counts.values()), pa.int64())})


def count_drops(data) -> dict[str, int]:
    """Dropped rows counted by ``"drop_stage:drop_reason"`` (keys sorted) for a pyarrow Table or a
    Ray Dataset (counted per block in parallel, summed on the driver; this executes the dataset)."""
    if isinstance(data, pa.Table):
        return count_table_drops(data)
    totals: dict[str, int] = {}
    for row in data.map_batches(_count_batch, batch_format="pyarrow").take_all():
        totals[row["key"]] = totals.get(row["key"], 0) + row["rows"]
    return dict(sorted(totals.items()))
