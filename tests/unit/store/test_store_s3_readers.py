"""A snapshot committed to a real S3-compatible server on 127.0.0.1 reads the same through
pyarrow, pandas, HF datasets and DuckDB (httpfs), following docs/object-storage.md, using the
manifest-listed URIs; verify() catches corrupted and missing objects."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

import pytest
from store_data import BUCKET, SMALL_FILES, commit_rows

from factory.store import CorruptSnapshot, SnapshotStore

ROWS = 10
EXPECTED_IDS = sorted(f"s{i}" for i in range(ROWS))


@pytest.fixture(scope="module")
def snapshot(s3_endpoint):
    store = SnapshotStore(f"s3://{BUCKET}/readers-{uuid.uuid4().hex[:8]}", "demo", SMALL_FILES)
    return commit_rows(store, ROWS)


def test_snapshot_read_streams_from_s3(snapshot):
    assert sorted(snapshot.read(columns=["sample_id"]).column("sample_id").to_pylist()) == EXPECTED_IDS


def test_pyarrow_dataset_with_the_snapshot_filesystem(snapshot):
    import pyarrow.dataset as ds

    table = ds.dataset(snapshot.arrow_paths(), filesystem=snapshot.filesystem, format="parquet").to_table()
    assert sorted(table.column("sample_id").to_pylist()) == EXPECTED_IDS


def test_pyarrow_with_its_own_s3_filesystem(snapshot, s3_endpoint):
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs = pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1")
    paths = [uri.removeprefix("s3://") for uri in snapshot.files]
    assert sorted(pq.read_table(paths, filesystem=fs).column("sample_id").to_pylist()) == EXPECTED_IDS


def test_pandas_reads_the_uris_through_fsspec(snapshot):
    import pandas as pd

    frame = pd.concat([pd.read_parquet(uri, storage_options=snapshot.storage_options) for uri in snapshot.files],
                      ignore_index=True)
    assert sorted(frame["sample_id"]) == EXPECTED_IDS
    assert frame["messages"].iloc[0][0]["role"] == "user"


def test_hf_datasets_reads_the_uris(snapshot, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # = HF_DATASETS_OFFLINE=0: s3 is not the Hub
    loaded = datasets.load_dataset("parquet", data_files=snapshot.files, split="train",
                                   storage_options=snapshot.storage_options, cache_dir=str(tmp_path / "hf"))
    assert sorted(loaded["sample_id"]) == EXPECTED_IDS
    assert loaded[0]["messages"][1]["role"] == "assistant"


def _duckdb(endpoint: str):
    """DuckDB with the httpfs extension from the duckdb-ext-httpfs wheel (no download) and an S3
    secret built from the environment."""
    import duckdb
    import duckdb_ext

    extensions = os.path.join(list(duckdb_ext.__path__)[0], "extensions")
    con = duckdb.connect(config={"extension_directory": extensions, "autoinstall_known_extensions": False})
    con.execute("LOAD httpfs")
    parts = urlsplit(endpoint)
    con.execute(
        "CREATE SECRET store (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
        [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_REGION"],
         parts.netloc, parts.scheme == "https"])
    return con


def test_duckdb_httpfs_reads_the_uris(snapshot, s3_endpoint):
    rows = _duckdb(s3_endpoint).execute("SELECT sample_id FROM read_parquet(?)", [snapshot.files]).fetchall()
    assert sorted(r[0] for r in rows) == EXPECTED_IDS


def test_duckdb_sees_nested_messages(snapshot, s3_endpoint):
    query = "SELECT messages[2].role FROM read_parquet(?) LIMIT 1"
    assert _duckdb(s3_endpoint).execute(query, [snapshot.files]).fetchone()[0] == "assistant"


def test_verify_accepts_an_intact_snapshot(snapshot):
    snapshot.verify()


def _overwrite_with_other_bytes(snapshot, uri: str) -> None:
    fs, path = snapshot.filesystem, snapshot.arrow_paths([uri])[0]
    with fs.open_input_file(path) as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0xFF
    with fs.open_output_stream(path) as handle:
        handle.write(bytes(data))


def _delete(snapshot, uri: str) -> None:
    snapshot.filesystem.delete_file(snapshot.arrow_paths([uri])[0])


@pytest.mark.parametrize("damage, symptom", [(_overwrite_with_other_bytes, "sha256 differs"), (_delete, "missing")])
def test_verify_detects_corruption(s3_root, damage, symptom):
    snapshot = commit_rows(SnapshotStore(s3_root, "demo", SMALL_FILES), ROWS)
    damage(snapshot, snapshot.files[1])
    with pytest.raises(CorruptSnapshot, match=symptom) as caught:
        snapshot.verify()
    assert caught.value.problems[0].startswith("part-00001.parquet")
