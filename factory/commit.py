"""The commit: one streaming pass writes a run's rows into a staged snapshot, then the store
publishes it atomically with its manifest.

Contract: :class:`SnapshotSink` is a Ray Data datasink. Each write task splits its blocks into kept
rows — written as the snapshot's data files (DATASET_SCHEMA, with the chat ``messages``, sorted by
(prompt_id, sample_index) within each file: readers need no global order, so nothing sorts the
dataset as a whole) — dropped rows (the ``dropped`` side table, SCORED_SCHEMA), and the kept rows'
MinHash signatures (the ``signatures`` side table, for cross-snapshot dedup). File names derive from
the write task's index and the block's position in it, so a retried task overwrites its own files
and the store's finalize (which renames, counts and checksums every file) sees each row once. Nothing
is gathered on the driver; the rows never pass through it. Local and object-storage roots alike
(the staged snapshot's pyarrow filesystem). Not covered: compaction of many small files.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from factory.schema import SCORED_SCHEMA, conform


@dataclass(frozen=True)
class SinkTargets:
    """Where and how the sink writes (picklable: it travels to the write tasks)."""

    data: str
    """Arrow path of the staged data directory."""
    dropped: str | None
    """Arrow path of the ``dropped`` side table's directory; None: dropped rows are not kept."""
    signatures: str
    """Arrow path of the ``signatures`` side table's directory."""
    filesystem: object
    """pyarrow filesystem of the paths (None: local)."""
    parquet: dict
    """``pyarrow.parquet.write_table`` options of the store (codec, row groups)."""


def sink_targets(staged, keep_dropped: bool) -> SinkTargets:
    """The :class:`SinkTargets` of a :class:`factory.store.StagedSnapshot`."""
    path = staged.files.arrow_path
    return SinkTargets(data=path(staged.data_dir),
                       dropped=path(staged.side_dir("dropped")) if keep_dropped else None,
                       signatures=path(staged.side_dir("signatures")), filesystem=staged.filesystem,
                       parquet=staged.store.options.parquet_kwargs())


def scored_rows(table: pa.Table) -> pa.Table:
    """Any row the commit takes (scored, carried kept or carried dropped) in one schema (SCORED_SCHEMA),
    so carried and new rows stream through one sink."""
    from factory.rows import with_filter_columns

    return conform(with_filter_columns(table), SCORED_SCHEMA)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("prompt_id", "ascending"), ("sample_index", "ascending")])


def _datasink_class():
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class SnapshotSink(Datasink):
        """Writes kept rows, dropped rows and signatures of every block (module docstring)."""

        def __init__(self, targets: SinkTargets, prompting, dedup):
            self.targets, self.prompting, self.dedup = targets, prompting, dedup
            self.counts: dict[str, int] = {"kept": 0, "dropped": 0}

        def write(self, blocks, ctx) -> dict[str, int]:
            import pyarrow.parquet as pq

            from factory.dedup.side_table import side_rows, with_params
            from factory.rows import dropped_rows, kept_rows, to_dataset_rows

            targets, written = self.targets, {"kept": 0, "dropped": 0}

            def put(directory: str, name: str, table: pa.Table) -> None:
                path = f"{directory}/{name}"
                pq.write_table(table, path, filesystem=targets.filesystem, **targets.parquet)

            for index, block in enumerate(blocks):
                table = BlockAccessor.for_block(block).to_arrow()
                name = f"{ctx.task_idx:06d}-{index:05d}.parquet"  # deterministic: a retried task overwrites it
                kept = kept_rows(table)
                if kept.num_rows:
                    put(targets.data, name, _sorted(to_dataset_rows(kept, self.prompting)))
                    params = self.dedup.signature_params()
                    put(targets.signatures, name, with_params(side_rows(kept, params), params))
                dropped = dropped_rows(table)
                if dropped.num_rows and targets.dropped is not None:
                    put(targets.dropped, name, _sorted(dropped))
                written["kept"] += kept.num_rows
                written["dropped"] += dropped.num_rows
            return written

        def on_write_complete(self, write_result) -> None:
            for counts in write_result.write_returns:
                for key, n in counts.items():
                    self.counts[key] += n

    return SnapshotSink


def snapshot_sink(staged, cfg):
    """A :class:`SnapshotSink` into ``staged`` for a run configured by ``cfg`` (a FactoryConfig)."""
    return _datasink_class()(sink_targets(staged, cfg.store.keep_dropped_side_table), cfg.generation.prompting,
                             cfg.dedup)
