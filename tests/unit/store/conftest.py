"""Fixtures for the snapshot-store tests: small dataset tables, a store with tiny files, and a
real S3-compatible server (moto's server mode) on 127.0.0.1 for the object-storage tests."""

from __future__ import annotations

import json
import logging
import os
import uuid

import pyarrow as pa
import pytest

from factory.schema import DATASET_SCHEMA, conform
from factory.store import SnapshotStore, WriteOptions

SMALL_FILES = WriteOptions(rows_per_file=4, row_group_rows=2)


def dataset_rows(n: int, start: int = 0) -> pa.Table:
    """``n`` DATASET_SCHEMA rows with unique sample ids ``s{start}`` … (two samples per prompt)."""
    ids = list(range(start, start + n))
    prompts = [f"What is {i // 2}+1?" for i in ids]
    answers = [f"\\boxed{{{i // 2 + 1}}}" for i in ids]
    table = pa.table({
        "prompt_id": [f"p{i // 2}" for i in ids],
        "task": ["math"] * n,
        "prompt": prompts,
        "reference": [str(i // 2 + 1) for i in ids],
        "source": ["synthetic"] * n,
        "source_row": [i // 2 + 1 for i in ids],
        "sample_index": pa.array([i % 2 for i in ids], pa.int32()),
        "sample_id": [f"s{i}" for i in ids],
        "gen_key": [f"key{i // 2}" for i in ids],
        "reasoning": [f"{i // 2}+1={i // 2 + 1}" for i in ids],
        "answer": answers,
        "completion_tokens": pa.array([10 + i for i in ids], pa.int32()),
        "gen_status": ["ok"] * n,
        "teacher_model": ["tiny-teacher"] * n,
        "teacher_revision": ["rev1"] * n,
        "sampling_json": [json.dumps({"temperature": 0.6})] * n,
        "verdict": ["correct"] * n,
        "reward": [0.5 + i / 1000 for i in ids],
        "pass_rate": [1.0] * n,
        "messages": [[{"role": "user", "content": p}, {"role": "assistant", "content": a}]
                     for p, a in zip(prompts, answers)],
    })
    return conform(table, DATASET_SCHEMA)


MANIFEST = {
    "lineage": {"teacher_revision": "rev1", "reward_revision": "rm1", "verifiers": ["math@1"]},
    "counts": {"generated": 12, "kept": 10},
    "drops": {"wrong": 2},
}


@pytest.fixture
def store(tmp_path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "store"), "demo", SMALL_FILES)


def commit_rows(store: SnapshotStore, n: int, start: int = 0, parent: str | None = "latest"):
    with store.begin(parent=parent, schema=DATASET_SCHEMA) as staged:
        staged.write_table(dataset_rows(n, start))
        return staged.commit(MANIFEST)


BUCKET = "factory-test"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",  # moto accepts any credentials; set so that no client looks further
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata address for credentials
}


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 (free port) with bucket ``BUCKET``, stopped after the module.
    The environment names it (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP), so writer subprocesses reach it too."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    saved = dict(os.environ)
    os.environ.update(S3_ENV)  # before any client exists
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"})
        pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True).create_dir(BUCKET)
        yield endpoint
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def s3_root(s3_endpoint) -> str:
    """A fresh prefix in the test bucket."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_store(s3_root) -> SnapshotStore:
    return SnapshotStore(s3_root, "demo", SMALL_FILES)


def object_keys(store: SnapshotStore, directory: str) -> list[str]:
    """Every object (not directory marker) under ``directory`` of an object-storage store, relative
    to it, listed through pyarrow rather than the store's own backend."""
    import pyarrow.fs as pafs

    base = store.files.arrow_path(directory)
    infos = store.files.arrow_fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(info.path[len(base) + 1:] for info in infos if info.type == pafs.FileType.File and info.size)
