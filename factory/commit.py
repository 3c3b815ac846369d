"""The commit: one streaming pass writes a run's rows into a staged snapshot, then the store
publishes it atomically with its manifest.

Contract: :class:`SnapshotSink` is a Ray Data datasink. Each write task splits its blocks into kept
rows — written as the snapshot's data files (DATASET_SCHEMA, with the chat ``messages``, sorted by
(prompt_id, sample_index) within each file: readers need no global order, so nothing sorts the
dataset as a whole) — dropped rows (the ``dropped`` side table, SCORED_SCHEMA), the kept rows'
MinHash signatures (the ``signatures`` side table, for cross-snapshot dedup) and a few columns of
every row (:data:`PROMPT_SAMPLE_COLUMNS`, into a scratch dir of the staging dir). From those,
:func:`write_prompt_table` then builds the ``prompts`` side table — one row per prompt with its
sample counts, pass-rate estimate, stop reason and difficulty
(:func:`factory.stages.generate.policy.prompt_table`: the never-solved prompts, and the
0 < pass rate < 1 ones RL tuning wants) — with a Ray groupby (in the driver for a small run:
:func:`factory.runtime.runs_in_process`), and removes the scratch dir; it is
staged like every side table, so it is published with the snapshot or not at all. File names derive from
the write task's index and the block's position in it, so a retried task overwrites its own files
and the store's finalize (which renames, counts and checksums every file) sees each row once. Nothing
is gathered on the driver; the rows never pass through it. Local and object-storage roots alike
(the staged snapshot's pyarrow filesystem). Not covered: compaction of many small files.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from factory.schema import SCORED_SCHEMA, conform

PROMPT_SAMPLE_COLUMNS = ("prompt_id", "task", "source", "sample_index", "sample_round", "verdict", "gen_status",
                         "completion_tokens")
"""What the ``prompts`` side table is built from, for every row the sink takes (kept or dropped)."""
PROMPT_SCRATCH = "scratch-prompt-samples"
"""Scratch dir (in the staging dir, outside its incoming files) of those rows; removed before the commit."""


@dataclass(frozen=True)
class SinkTargets:
    """Where and how the sink writes (picklable: it travels to the write tasks)."""

    data: str
    """Arrow path of the staged data directory."""
    dropped: str | None
    """Arrow path of the ``dropped`` side table's directory; None: dropped rows are not kept."""
    signatures: str
    """Arrow path of the ``signatures`` side table's directory."""
    prompt_samples: str
    """Arrow path of the scratch dir of :data:`PROMPT_SAMPLE_COLUMNS` rows."""
    filesystem: object
    """pyarrow filesystem of the paths (None: local)."""
    parquet: dict
    """``pyarrow.parquet.write_table`` options of the store (codec, row groups)."""


def sink_targets(staged, keep_dropped: bool) -> SinkTargets:
    """The :class:`SinkTargets` of a :class:`factory.store.StagedSnapshot`."""
    path = staged.files.arrow_path
    return SinkTargets(data=path(staged.data_dir),
                       dropped=path(staged.side_dir("dropped")) if keep_dropped else None,
                       signatures=path(staged.side_dir("signatures")), prompt_samples=path(_scratch_dir(staged)),
                       filesystem=staged.filesystem, parquet=staged.store.options.parquet_kwargs())


def _scratch_dir(staged) -> str:
    directory = staged.files.join(staged.path, PROMPT_SCRATCH)
    staged.files.ensure_dirs(directory)
    return directory


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
                if table.num_rows:
                    put(targets.prompt_samples, name, table.select(list(PROMPT_SAMPLE_COLUMNS)))
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


def write_prompt_table(staged, cfg, sink) -> None:
    """After ``sink`` (:func:`snapshot_sink`) has written every row into ``staged``: the ``prompts``
    side table from its scratch rows (module docstring), then the scratch dir removed."""
    import ray

    from factory.runtime import groupby_partitions, runs_in_process
    from factory.stages.generate.policy import prompt_table

    scratch = _scratch_dir(staged)
    total = sink.counts["kept"] + sink.counts["dropped"]
    if total and runs_in_process(total):  # narrow columns only: a small run skips a hash shuffle's start-up
        import pyarrow.dataset as pads

        rows = pads.dataset(staged.files.arrow_path(scratch), filesystem=staged.filesystem, format="parquet").to_table()
        staged.write_table(prompt_table(rows, cfg.generation.adaptive).sort_by("prompt_id"), side="prompts")
    elif total:
        rows = ray.data.read_parquet(scratch, filesystem=staged.filesystem)
        grouped = rows.groupby("prompt_id", num_partitions=groupby_partitions())  # not Ray's fixed 200
        table = grouped.map_groups(prompt_table, fn_kwargs={"adaptive": cfg.generation.adaptive}, batch_format="pyarrow")
        table.write_parquet(staged.side_dir("prompts"), **staged.ray_write_kwargs())
    staged.files.remove_tree(scratch)
