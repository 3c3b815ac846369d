"""Data helpers for the snapshot-store tests: small dataset tables and a store commit of them.
(Not in conftest.py: test modules import these by name, and a module named conftest would clash
with the suite's top-level conftest.)"""

from __future__ import annotations

import json

import pyarrow as pa

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


def commit_rows(store: SnapshotStore, n: int, start: int = 0, parent: str | None = "latest"):
    with store.begin(parent=parent, schema=DATASET_SCHEMA) as staged:
        staged.write_table(dataset_rows(n, start))
        return staged.commit(MANIFEST)


BUCKET = "factory-test"


def object_keys(store: SnapshotStore, directory: str) -> list[str]:
    """Every object (not directory marker) under ``directory`` of an object-storage store, relative
    to it, listed through pyarrow rather than the store's own backend."""
    import pyarrow.fs as pafs

    base = store.files.arrow_path(directory)
    infos = store.files.arrow_fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(info.path[len(base) + 1:] for info in infos if info.type == pafs.FileType.File and info.size)
