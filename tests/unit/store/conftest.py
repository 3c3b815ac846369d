"""Fixtures for the snapshot-store tests: a store with tiny files, and a real S3-compatible server
(moto's server mode) on 127.0.0.1 for the object-storage tests."""

from __future__ import annotations

import uuid

import pytest
from s3_server import moto_s3
from store_data import BUCKET, SMALL_FILES

from factory.store import SnapshotStore


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"), "demo", SMALL_FILES)


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 with bucket ``BUCKET`` for the module (see s3_server.py)."""
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def s3_root(s3_endpoint) -> str:
    """A fresh prefix in the test bucket."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_store(s3_root) -> SnapshotStore:
    return SnapshotStore(s3_root, "demo", SMALL_FILES)
