"""A committed snapshot reads the same through pyarrow.dataset, pandas, DuckDB and HF datasets,
using the manifest-listed files; verify() catches corrupted files."""

from __future__ import annotations

import os

import pytest
from store_data import SMALL_FILES, commit_rows

from factory.store import CorruptSnapshot, SnapshotStore

ROWS = 10


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    store = SnapshotStore(str(tmp_path_factory.mktemp("readers")), "demo", SMALL_FILES)
    return commit_rows(store, ROWS)


def _ids(values) -> list[str]:
    return sorted(values)


EXPECTED_IDS = sorted(f"s{i}" for i in range(ROWS))


def test_pyarrow_dataset_reads_all_rows(snapshot):
    import pyarrow.dataset as ds

    table = ds.dataset(snapshot.files, format="parquet").to_table()
    assert _ids(table.column("sample_id").to_pylist()) == EXPECTED_IDS


def test_pandas_reads_all_rows(snapshot):
    import pandas as pd

    frame = pd.concat([pd.read_parquet(f) for f in snapshot.files], ignore_index=True)
    assert _ids(frame["sample_id"]) == EXPECTED_IDS
    assert frame["messages"].iloc[0][0]["role"] == "user"


def test_duckdb_reads_all_rows(snapshot):
    import duckdb

    rows = duckdb.sql(f"SELECT sample_id FROM read_parquet({snapshot.files!r})").fetchall()
    assert _ids(r[0] for r in rows) == EXPECTED_IDS


def test_duckdb_sees_nested_messages(snapshot):
    import duckdb

    files = snapshot.files
    role = duckdb.sql(f"SELECT messages[2].role FROM read_parquet({files!r}) LIMIT 1").fetchall()[0][0]
    assert role == "assistant"


def test_hf_datasets_reads_all_rows(snapshot, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    loaded = datasets.load_dataset("parquet", data_files=snapshot.files, split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert _ids(loaded["sample_id"]) == EXPECTED_IDS
    assert loaded[0]["messages"][1]["role"] == "assistant"


def test_verify_accepts_an_intact_snapshot(snapshot):
    snapshot.verify()


def _flip_byte(path: str) -> None:
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _truncate(path: str) -> None:
    os.truncate(path, os.path.getsize(path) - 1)


@pytest.mark.parametrize("damage, symptom", [
    (_flip_byte, "sha256 differs"),
    (_truncate, "bytes, manifest says"),
    (os.unlink, "missing"),
])
def test_verify_detects_corruption(tmp_path, damage, symptom):
    snapshot = commit_rows(SnapshotStore(str(tmp_path), "demo", SMALL_FILES), ROWS)
    damage(snapshot.files[1])
    with pytest.raises(CorruptSnapshot, match=symptom) as caught:
        snapshot.verify()
    assert caught.value.problems[0].startswith("part-00001.parquet")
