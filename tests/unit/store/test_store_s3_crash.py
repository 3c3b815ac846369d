"""Crash safety on object storage: a writer process killed (``os._exit``) at a chosen step of its
commit, against a real S3-compatible server on 127.0.0.1, leaves nothing visible before the claim,
nothing visible mid-publish, and a complete snapshot once the next writer rolls it forward."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from store_data import commit_rows, object_keys

WRITER = os.path.join(os.path.dirname(__file__), "store_writer.py")


def run_writer(root: str, crash_at: str, rows: int = 10) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, WRITER, root, str(rows), "0", crash_at],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("crash_at", ["staged", "claim"])
def test_crash_between_data_and_commit_leaves_nothing_visible(s3_store, crash_at):
    done = run_writer(s3_store.layout.root, crash_at)
    assert done.returncode == 3, done.stderr
    assert object_keys(s3_store, s3_store.layout.staging)  # the data was written …
    assert s3_store.versions() == [] and s3_store.latest() is None  # … and none of it is visible
    assert object_keys(s3_store, s3_store.layout.snapshots) == []
    assert not s3_store.files.exists(s3_store.layout.latest_file)


def test_crash_mid_publish_shows_no_version(s3_store):
    assert run_writer(s3_store.layout.root, "copy").returncode == 3
    copied = object_keys(s3_store, s3_store.layout.snapshot_dir("v000001"))
    assert copied and "_manifest.json" not in copied  # parts copied, the manifest (copied last) not
    assert s3_store.versions() == [] and s3_store.latest() is None


def test_crash_mid_publish_is_rolled_forward_by_the_next_writer(s3_store):
    run_writer(s3_store.layout.root, "copy")
    s3_store.begin().abort()
    snapshot = s3_store.get("v000001")
    snapshot.verify()
    assert snapshot.read().num_rows == 10
    assert object_keys(s3_store, s3_store.layout.staging) == []


def test_rerun_after_a_crash_before_the_claim_commits_each_row_once(s3_store):
    run_writer(s3_store.layout.root, "claim")
    ids = commit_rows(s3_store, 10).read(columns=["sample_id"]).column("sample_id").to_pylist()
    assert s3_store.versions() == ["v000001"] and sorted(ids) == sorted(set(ids)) and len(ids) == 10


def test_crash_before_latest_leaves_a_complete_snapshot_and_next_commit_fixes_latest(s3_store):
    assert run_writer(s3_store.layout.root, "latest").returncode == 3
    s3_store.get("v000001").verify()
    assert not s3_store.files.exists(s3_store.layout.latest_file)
    commit_rows(s3_store, 1, start=50)
    assert s3_store.files.read_bytes(s3_store.layout.latest_file) == b"v000002\n"


def test_gc_staging_removes_a_crashed_writers_objects(s3_store):
    run_writer(s3_store.layout.root, "staged")
    assert len(s3_store.gc_staging(older_than_s=0)) == 1
    assert object_keys(s3_store, s3_store.layout.staging) == []
