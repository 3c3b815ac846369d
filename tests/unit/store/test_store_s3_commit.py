"""Commit semantics on object storage, against a real S3-compatible server (moto) on 127.0.0.1:
the same layout, manifest, parent checks and LATEST as a local store, with no staging left behind."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from store_data import MANIFEST, SMALL_FILES, commit_rows, dataset_rows, object_keys

from factory.schema import DATASET_SCHEMA
from factory.store import CommitConflict, SnapshotStore, StoreError


def test_commit_publishes_parts_card_and_manifest_under_the_prefix(s3_store):
    snapshot = commit_rows(s3_store, 10)
    assert snapshot.path == f"{s3_store.layout.root}/demo/snapshots/v000001"
    assert object_keys(s3_store, snapshot.path) == [
        "README.md", "_manifest.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert snapshot.files == [f"{snapshot.path}/part-{i:05d}.parquet" for i in range(3)]


def test_latest_names_the_newest_version(s3_store):
    commit_rows(s3_store, 2)
    commit_rows(s3_store, 2, start=10)
    assert s3_store.files.read_bytes(s3_store.layout.latest_file) == b"v000002\n"
    assert s3_store.versions() == ["v000001", "v000002"] and s3_store.latest().version == "v000002"


def test_no_staging_objects_remain_after_a_commit(s3_store):
    commit_rows(s3_store, 6)
    assert object_keys(s3_store, s3_store.layout.staging) == []


def test_read_returns_rows_in_write_order(s3_store):
    assert commit_rows(s3_store, 7).read().equals(dataset_rows(7))


def test_manifest_counts_and_sizes_equal_the_objects(s3_store):
    snapshot = commit_rows(s3_store, 10)
    fs = snapshot.filesystem
    for entry, path in zip(snapshot.manifest["files"], snapshot.arrow_paths()):
        assert (entry["rows"], entry["bytes"]) == (pq.read_metadata(path, filesystem=fs).num_rows,
                                                   fs.get_file_info(path).size)


def test_side_tables_are_listed_and_readable(s3_store):
    with s3_store.begin(schema=DATASET_SCHEMA) as staged:
        staged.write_table(dataset_rows(2))
        staged.write_table(pa.table({"sample_id": ["s9"], "drop_reason": ["wrong"]}), side="dropped")
        snapshot = staged.commit(MANIFEST)
    assert snapshot.side_files("dropped") == [f"{snapshot.path}/_side/dropped/part-00000.parquet"]
    assert snapshot.read_side("dropped").to_pylist() == [{"sample_id": "s9", "drop_reason": "wrong"}]


def test_commit_against_moved_parent_conflicts_and_leaves_no_staging(s3_store):
    first, second = s3_store.begin(), s3_store.begin()
    first.write_table(dataset_rows(2))
    second.write_table(dataset_rows(2, start=2))
    first.commit(MANIFEST)
    with pytest.raises(CommitConflict):
        second.commit(MANIFEST)
    assert s3_store.versions() == ["v000001"]
    assert object_keys(s3_store, second.path) == []


def test_abort_leaves_nothing(s3_store):
    with s3_store.begin() as staged:
        staged.write_table(dataset_rows(3))
    assert s3_store.versions() == [] and object_keys(s3_store, s3_store.layout.base) == []


def test_file_with_other_columns_fails_the_commit_and_cleans_up(s3_store):
    staged = s3_store.begin(schema=DATASET_SCHEMA)
    staged.write_table(dataset_rows(2))
    pq.write_table(pa.table({"sample_id": ["x"]}), staged.files.arrow_path(f"{staged.data_dir}/zz.parquet"),
                   filesystem=staged.filesystem)
    with pytest.raises(StoreError, match="columns differ"):
        staged.commit(MANIFEST)
    assert s3_store.versions() == [] and object_keys(s3_store, staged.path) == []


def test_empty_commit_with_schema_has_zero_rows_and_the_schema(s3_store):
    with s3_store.begin(schema=DATASET_SCHEMA) as staged:
        snapshot = staged.commit(MANIFEST)
    assert snapshot.read().num_rows == 0 and snapshot.schema.equals(DATASET_SCHEMA)


def test_ray_write_kwargs_carry_the_s3_filesystem(s3_store):
    with s3_store.begin() as staged:
        kwargs = staged.ray_write_kwargs()
    assert isinstance(kwargs["filesystem"], pafs.S3FileSystem) and kwargs["max_rows_per_file"] == 4


def test_a_second_client_sees_the_same_snapshots(s3_store):
    commit_rows(s3_store, 5)
    other = SnapshotStore(s3_store.layout.root, "demo", SMALL_FILES)
    assert other.get("v000001").read().num_rows == 5
    assert json.loads(other.files.read_bytes(f"{other.latest().path}/_manifest.json"))["num_rows"] == 5


def test_gc_staging_removes_a_stale_staging_prefix(s3_store):
    staged = s3_store.begin()
    staged.write_table(dataset_rows(2))
    assert s3_store.gc_staging(older_than_s=3600) == []
    assert s3_store.gc_staging(older_than_s=0) == [staged.path]
    assert object_keys(s3_store, s3_store.layout.staging) == []


def test_a_store_that_ignores_conditional_puts_is_refused_before_any_write(s3_store, monkeypatch):
    import obstore

    real_put = obstore.put
    monkeypatch.setattr(obstore, "put", lambda store, path, data, mode=None: real_put(store, path, data))
    with pytest.raises(StoreError, match="does not honour conditional PUTs"):
        s3_store.begin()
    assert object_keys(s3_store, s3_store.layout.base) == []


def test_write_file_puts_an_object_beside_the_manifest(s3_store):
    snapshot = commit_rows(s3_store, 2)
    assert snapshot.write_file("report.html", b"<html>") == f"{snapshot.path}/report.html"
    assert snapshot.read_file("report.html") == b"<html>"
    assert "report.html" in object_keys(s3_store, snapshot.path)
