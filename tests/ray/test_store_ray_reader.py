"""Ray Data against the snapshot store: pipeline-style writes into a staged snapshot, and
``Snapshot.to_ray()`` reading exactly the manifest-listed files."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.schema import DATASET_SCHEMA, conform
from factory.store import SnapshotStore, WriteOptions

ROWS = 40
OPTIONS = WriteOptions(rows_per_file=16, row_group_rows=8)


def _rows(n: int) -> pa.Table:
    table = pa.table({
        "prompt_id": [f"p{i // 4}" for i in range(n)],
        "task": ["math"] * n,
        "prompt": [f"What is {i}+1?" for i in range(n)],
        "source": ["synthetic"] * n,
        "source_row": [i // 4 + 1 for i in range(n)],
        "sample_index": pa.array([i % 4 for i in range(n)], pa.int32()),
        "sample_id": [f"s{i:03d}" for i in range(n)],
        "gen_key": ["k"] * n,
        "gen_status": ["ok"] * n,
        "reward": [i / n for i in range(n)],
    })
    return conform(table, DATASET_SCHEMA)


@pytest.fixture(scope="module")
def ray_snapshot(ray_local, tmp_path_factory):
    """A snapshot whose data files were written by Ray Data ``write_parquet`` (as the pipeline does)."""
    store = SnapshotStore(str(tmp_path_factory.mktemp("ray-store")), "demo", OPTIONS)
    staged = store.begin(schema=DATASET_SCHEMA)
    ray_local.data.from_arrow(_rows(ROWS)).repartition(2).write_parquet(staged.data_dir, **staged.ray_write_kwargs())
    return staged.commit({"counts": {"kept": ROWS}})


def test_ray_written_files_are_committed_with_counts_matching_data(ray_snapshot):
    assert ray_snapshot.manifest["num_rows"] == ROWS
    listed = [entry["rows"] for entry in ray_snapshot.manifest["files"]]
    assert listed == [pq.read_metadata(f).num_rows for f in ray_snapshot.files]
    assert all(os.path.basename(f).startswith("part-") for f in ray_snapshot.files)
    ray_snapshot.verify()


def test_ray_writes_follow_the_store_write_options(ray_snapshot):
    for path in ray_snapshot.files:
        metadata = pq.read_metadata(path)
        assert metadata.num_rows <= OPTIONS.rows_per_file
        groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
        assert all(g.num_rows <= OPTIONS.row_group_rows for g in groups)
        assert {g.column(0).compression for g in groups} == {"ZSTD"}


def test_to_ray_reads_every_row_once(ray_snapshot):
    ids = [row["sample_id"] for row in ray_snapshot.to_ray(columns=["sample_id"]).take_all()]
    assert sorted(ids) == [f"s{i:03d}" for i in range(ROWS)]

