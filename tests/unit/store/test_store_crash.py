"""Crash safety: a writer killed (``os._exit``) at each step of a commit leaves either nothing
visible or a complete snapshot, and a rerun never duplicates rows."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from store_data import commit_rows, dataset_rows

from factory.store import SnapshotStore

WRITER = os.path.join(os.path.dirname(__file__), "store_writer.py")


def run_writer(root: str, crash_at: str, rows: int = 10, start: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, WRITER, root, str(rows), str(start), crash_at],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("crash_at", ["staged", "claim"])
def test_crash_before_the_commit_point_leaves_nothing_visible(store, crash_at):
    done = run_writer(store.layout.root, crash_at)
    assert done.returncode == 3, done.stderr
    assert store.versions() == [] and store.latest() is None
    assert not os.path.exists(store.layout.latest_file)


@pytest.mark.parametrize("crash_at", ["staged", "claim"])
def test_rerun_after_crash_commits_each_row_once(store, crash_at):
    run_writer(store.layout.root, crash_at)
    snapshot = commit_rows(store, 10)
    ids = snapshot.read(columns=["sample_id"]).column("sample_id").to_pylist()
    assert snapshot.version == "v000001" and sorted(ids) == sorted(set(ids)) and len(ids) == 10


def test_crash_after_claim_is_rolled_forward_by_the_next_writer(store):
    assert run_writer(store.layout.root, "publish").returncode == 3
    assert store.versions() == []
    store.begin().abort()
    assert store.versions() == ["v000001"] and store.get("v000001").read().num_rows == 10


def test_crash_before_latest_leaves_a_complete_snapshot_and_next_commit_fixes_latest(store):
    assert run_writer(store.layout.root, "latest").returncode == 3
    store.get("v000001").verify()
    assert not os.path.exists(store.layout.latest_file)
    commit_rows(store, 1, start=50)
    with open(store.layout.latest_file) as handle:
        assert handle.read() == "v000002\n"


def test_gc_staging_removes_a_crashed_writers_dir(store):
    run_writer(store.layout.root, "staged")
    assert len(os.listdir(store.layout.staging)) == 1
    removed = SnapshotStore(store.layout.root, "demo").gc_staging(older_than_s=0)
    assert len(removed) == 1 and os.listdir(store.layout.staging) == []


def test_gc_staging_keeps_recent_dirs(store):
    staged = store.begin()
    staged.write_table(dataset_rows(2))
    assert store.gc_staging(older_than_s=3600) == []
    assert os.path.isdir(staged.path)
