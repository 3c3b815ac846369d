"""Commit semantics of the snapshot store: versions, manifest contents, parent checks, LATEST."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_data import MANIFEST, commit_rows, dataset_rows

from factory.schema import DATASET_SCHEMA
from factory.store import CommitConflict, SnapshotNotFound, SnapshotStore, StoreError
from factory.store import commit as protocol


def test_versions_are_assigned_monotonically(store):
    made = [commit_rows(store, 3, start=10 * k).version for k in range(3)]
    assert made == ["v000001", "v000002", "v000003"]
    assert store.versions() == made
    assert store.latest().version == "v000003"


def test_parts_get_deterministic_names_and_respect_rows_per_file(store):
    snapshot = commit_rows(store, 10)
    assert [os.path.basename(f) for f in snapshot.files] == [f"part-{i:05d}.parquet" for i in range(3)]
    assert [pq.read_metadata(f).num_rows for f in snapshot.files] == [4, 4, 2]


def test_row_groups_and_codec_follow_write_options(store):
    metadata = pq.read_metadata(commit_rows(store, 4).files[0])
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [2, 2]
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_manifest_counts_equal_data(store):
    snapshot = commit_rows(store, 10)
    listed = {entry["path"]: entry["rows"] for entry in snapshot.manifest["files"]}
    actual = {os.path.relpath(f, snapshot.path): pq.read_metadata(f).num_rows for f in snapshot.files}
    assert listed == actual
    assert snapshot.manifest["num_rows"] == sum(actual.values()) == snapshot.read().num_rows == 10


def test_manifest_records_schema_lineage_and_code_version(store):
    manifest = commit_rows(store, 2).manifest
    assert [f["name"] for f in manifest["schema"]["fields"]] == DATASET_SCHEMA.names
    assert manifest["lineage"] == MANIFEST["lineage"]
    assert manifest["drops"] == {"wrong": 2}
    assert manifest["code_version"]
    assert manifest["dataset"] == "demo" and manifest["parent"] is None


def test_snapshot_schema_round_trips_exactly(store):
    assert commit_rows(store, 2).schema.equals(DATASET_SCHEMA)


def test_read_returns_rows_in_write_order(store):
    table = dataset_rows(7)
    assert commit_rows(store, 7).read().equals(table)


def test_read_selects_columns(store):
    assert commit_rows(store, 3).read(columns=["sample_id", "reward"]).column_names == ["sample_id", "reward"]


def test_latest_file_names_newest_version(store):
    commit_rows(store, 1)
    commit_rows(store, 1, start=5)
    with open(store.layout.latest_file) as handle:
        assert handle.read() == "v000002\n"


def test_latest_is_written_after_the_snapshot_is_complete(store, monkeypatch):
    seen = []
    real = protocol.update_latest

    def spy(layout):
        seen.append((store.versions(), os.path.exists(layout.latest_file)))
        real(layout)

    monkeypatch.setattr(protocol, "update_latest", spy)
    commit_rows(store, 2)
    assert seen == [(["v000001"], False)]


def test_commit_against_moved_parent_conflicts(store):
    first = store.begin()
    second = store.begin()
    first.write_table(dataset_rows(2))
    second.write_table(dataset_rows(2, start=2))
    first.commit(MANIFEST)
    with pytest.raises(CommitConflict):
        second.commit(MANIFEST)
    assert store.versions() == ["v000001"]
    assert not os.path.exists(second.path)


def test_explicit_stale_parent_conflicts(store):
    commit_rows(store, 1)
    commit_rows(store, 1, start=1)
    with pytest.raises(CommitConflict):
        commit_rows(store, 1, start=2, parent="v000001")


def test_unchecked_parent_appends_after_a_concurrent_commit(store):
    loose = store.begin(parent=None)
    loose.write_table(dataset_rows(2))
    commit_rows(store, 1, start=10)
    snapshot = loose.commit(MANIFEST)
    assert (snapshot.version, snapshot.manifest["parent"]) == ("v000002", "v000001")


def test_unknown_parent_is_rejected(store):
    with pytest.raises(SnapshotNotFound):
        store.begin(parent="v000007")


def test_get_unknown_version_raises(store):
    commit_rows(store, 1)
    with pytest.raises(SnapshotNotFound):
        store.get("v000002")


def test_empty_store_has_no_latest(store):
    assert (store.latest(), store.versions()) == (None, [])


@pytest.mark.parametrize("key", ["version", "files", "num_rows", "schema"])
def test_manifest_may_not_override_store_keys(store, key):
    staged = store.begin()
    staged.write_table(dataset_rows(1))
    with pytest.raises(ValueError, match=key):
        staged.commit({key: 1})
    staged.abort()


def test_manifest_must_be_json(store):
    staged = store.begin()
    with pytest.raises(ValueError, match="JSON"):
        staged.commit({"when": object()})
    staged.abort()


def test_abort_leaves_nothing(store):
    with store.begin() as staged:
        staged.write_table(dataset_rows(3))
    assert store.versions() == [] and os.listdir(store.layout.staging) == []


def test_file_with_other_columns_fails_the_commit_and_cleans_up(store):
    staged = store.begin(schema=DATASET_SCHEMA)
    staged.write_table(dataset_rows(2))
    pq.write_table(pa.table({"sample_id": ["x"]}), os.path.join(staged.data_dir, "zz-ray.parquet"))
    with pytest.raises(StoreError, match="columns differ"):
        staged.commit(MANIFEST)
    assert store.versions() == [] and not os.path.exists(staged.path)


def test_non_parquet_file_fails_the_commit(store):
    staged = store.begin()
    staged.write_table(dataset_rows(2))
    with open(os.path.join(staged.data_dir, "notes.txt"), "w") as handle:
        handle.write("stray")
    with pytest.raises(StoreError, match="only .parquet"):
        staged.commit(MANIFEST)


def test_empty_commit_with_schema_has_zero_rows_and_the_schema(store):
    with store.begin(schema=DATASET_SCHEMA) as staged:
        snapshot = staged.commit(MANIFEST)
    assert snapshot.read().num_rows == 0 and snapshot.read().schema.names == DATASET_SCHEMA.names


def test_empty_commit_without_schema_is_an_error(store):
    with store.begin() as staged, pytest.raises(StoreError, match="nothing to commit"):
        staged.commit(MANIFEST)


def test_side_tables_are_listed_and_readable(store):
    with store.begin(schema=DATASET_SCHEMA) as staged:
        staged.write_table(dataset_rows(2))
        staged.write_table(pa.table({"sample_id": ["s9"], "drop_reason": ["wrong"]}), side="dropped")
        snapshot = staged.commit(MANIFEST)
    assert snapshot.side_tables() == ["dropped"]
    assert snapshot.read_side("dropped").to_pylist() == [{"sample_id": "s9", "drop_reason": "wrong"}]
    assert snapshot.manifest["side_tables"]["dropped"]["num_rows"] == 1


def test_missing_side_table_has_no_files(store):
    assert commit_rows(store, 1).side_files("signatures") == []


def test_stray_file_in_snapshot_dir_is_not_read(store):
    snapshot = commit_rows(store, 3)
    pq.write_table(dataset_rows(5, start=100), os.path.join(snapshot.path, "part-99999.parquet"))
    reopened = SnapshotStore(store.layout.root, "demo").latest()
    assert reopened.read().num_rows == 3


def test_write_file_puts_an_unlisted_file_beside_the_manifest(store):
    snapshot = commit_rows(store, 2)
    path = snapshot.write_file("run_summary.json", b"{}")
    assert path == os.path.join(snapshot.path, "run_summary.json") and snapshot.read_file("run_summary.json") == b"{}"
    assert store.latest().manifest == snapshot.manifest


@pytest.mark.parametrize("name", ["_manifest.json", "README.md", "part-00000.parquet", "sub/x.json"])
def test_write_file_cannot_replace_snapshot_files(store, name):
    with pytest.raises(ValueError, match="not a free file name"):
        commit_rows(store, 2).write_file(name, b"x")


def test_published_files_are_readable_by_the_datasets_other_readers(store):
    import os
    import stat

    snapshot = commit_rows(store, 6)
    manifest = os.path.join(snapshot.path, "_manifest.json")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(manifest).st_mode) == 0o666 & ~umask
