"""Ray Data against a snapshot store on object storage (a real S3-compatible server, moto, on
127.0.0.1): pipeline-style ``write_parquet`` into a staged snapshot's URIs with
``staged.ray_write_kwargs()``, commit, and reads through ``Snapshot.to_ray()`` and
``ray.data.read_parquet(snapshot.files, filesystem=snapshot.filesystem)``.

Isolated: this module starts its own local Ray after the server, so that the workers inherit the
endpoint and the (fake) credentials from the environment, as cluster workers would from theirs.
"""

from __future__ import annotations

import os
import sys
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.schema import DATASET_SCHEMA, conform
from factory.store import SnapshotStore, WriteOptions

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "unit", "store"))
from s3_server import moto_s3  # noqa: E402

pytestmark = pytest.mark.isolated

BUCKET = "factory-ray"
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
def ray_s3():
    """The S3 server, then a local Ray (2 CPUs) whose workers inherit its environment; both stopped at the end."""
    import ray

    assert not ray.is_initialized(), "this module needs its own Ray, started after the S3 server"
    with moto_s3(BUCKET):
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def s3_snapshot(ray_s3):
    """A snapshot whose data and side files were written by Ray Data ``write_parquet`` to S3."""
    store = SnapshotStore(f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}", "demo", OPTIONS)
    staged = store.begin(schema=DATASET_SCHEMA)
    data = ray_s3.data.from_arrow(_rows(ROWS)).repartition(2)
    data.write_parquet(staged.data_dir, **staged.ray_write_kwargs())
    dropped = ray_s3.data.from_arrow(pa.table({"sample_id": ["x1", "x2"], "drop_reason": ["wrong", "wrong"]}))
    dropped.write_parquet(staged.side_dir("dropped"), **staged.ray_write_kwargs())
    return staged.commit({"counts": {"kept": ROWS}})


def test_ray_written_objects_are_committed_with_counts_matching_data(s3_snapshot):
    assert s3_snapshot.files[0].startswith(f"s3://{BUCKET}/") and s3_snapshot.manifest["num_rows"] == ROWS
    listed = [entry["rows"] for entry in s3_snapshot.manifest["files"]]
    fs = s3_snapshot.filesystem
    assert listed == [pq.read_metadata(p, filesystem=fs).num_rows for p in s3_snapshot.arrow_paths()]
    s3_snapshot.verify()


def test_no_staging_objects_or_directory_markers_remain(s3_snapshot):
    store = SnapshotStore(s3_snapshot.path.split("/demo/")[0], "demo", OPTIONS)
    assert store.files.names(store.layout.staging) == []


def test_ray_writes_follow_the_store_write_options(s3_snapshot):
    for path in s3_snapshot.arrow_paths():
        metadata = pq.read_metadata(path, filesystem=s3_snapshot.filesystem)
        assert metadata.num_rows <= OPTIONS.rows_per_file
        assert all(metadata.row_group(i).num_rows <= OPTIONS.row_group_rows for i in range(metadata.num_row_groups))


def test_ray_written_side_table_is_committed(s3_snapshot):
    assert sorted(s3_snapshot.read_side("dropped").column("sample_id").to_pylist()) == ["x1", "x2"]


def test_to_ray_reads_every_row_once(s3_snapshot):
    ids = [row["sample_id"] for row in s3_snapshot.to_ray(columns=["sample_id"]).take_all()]
    assert sorted(ids) == [f"s{i:03d}" for i in range(ROWS)]


def test_ray_read_parquet_with_the_snapshot_filesystem(s3_snapshot, ray_s3):
    ds = ray_s3.data.read_parquet(s3_snapshot.files, filesystem=s3_snapshot.filesystem, columns=["reward"])
    assert ds.count() == ROWS
