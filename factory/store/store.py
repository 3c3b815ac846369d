"""``SnapshotStore``: versioned, atomically committed Parquet snapshots of one dataset.

Readers (``versions``, ``latest``, ``get``) only look at published snapshot dirs; they never
write and never see staging dirs or half-committed versions. Writers (``begin``) and
``gc_staging`` first roll forward any version a crashed writer had claimed but not renamed
(see :mod:`factory.store.commit`). ``latest()`` is the newest published version; the LATEST
file is the same name for tools that do not list directories, written after each publish.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid

import pyarrow as pa

from factory.store import commit as protocol
from factory.store.config import DATASET_NAME, StoreConfig
from factory.store.errors import SnapshotNotFound
from factory.store.layout import Layout, version_number
from factory.store.parts import WriteOptions
from factory.store.snapshot import Snapshot
from factory.store.staging import StagedSnapshot


class SnapshotStore:
    """Snapshots of dataset ``dataset`` under ``root`` (created on first write)."""

    def __init__(self, root: str, dataset: str, options: WriteOptions = WriteOptions(),
                 gc_staging_after_s: float | None = None):
        if not DATASET_NAME.match(dataset):
            raise ValueError(f"dataset {dataset!r} must match {DATASET_NAME.pattern}")
        self.dataset = dataset
        self.layout = Layout(os.path.abspath(root), dataset)
        self.options = options
        self.gc_staging_after_s = gc_staging_after_s

    @classmethod
    def from_config(cls, config: StoreConfig) -> "SnapshotStore":
        options = WriteOptions(config.rows_per_file, config.row_group_rows, config.compression,
                               config.compression_level)
        return cls(config.root, config.dataset, options, config.gc_staging_after_s)

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        return self.layout.published_versions()

    def latest(self) -> Snapshot | None:
        """The newest published snapshot, or None if there is none."""
        versions = self.versions()
        return Snapshot.open(self.layout.snapshot_dir(versions[-1])) if versions else None

    def get(self, version: str) -> Snapshot:
        """The published snapshot ``version`` (e.g. "v000003"); SnapshotNotFound otherwise."""
        version_number(version)
        if version not in self.versions():
            raise SnapshotNotFound(f"{self.dataset} has no published snapshot {version} (has {self.versions()})")
        return Snapshot.open(self.layout.snapshot_dir(version))

    def begin(self, parent: str | None = "latest", schema: pa.Schema | None = None) -> StagedSnapshot:
        """Start a staged snapshot. ``parent``: "latest" (the newest version now, or an empty
        store), an explicit published version, or None for "append without a parent check".
        ``schema``: if given, driver writes are conformed to it and every data file must match it."""
        self.layout.ensure()
        protocol.roll_forward(self.layout)
        if self.gc_staging_after_s is not None:
            self.gc_staging(self.gc_staging_after_s)
        if parent == "latest":
            versions = self.versions()
            parent = versions[-1] if versions else None
            check = True
        elif parent is None:
            check = False
        else:
            self.get(parent)
            check = True
        staging_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return StagedSnapshot(self, staging_id, parent, check, schema)

    def gc_staging(self, older_than_s: float) -> list[str]:
        """Delete staging dirs not modified (anywhere inside) for ``older_than_s`` seconds,
        after rolling forward claimed ones; returns the paths removed. A live writer idle for
        longer than that loses its staging dir, so pick a threshold well above a run's length."""
        protocol.roll_forward(self.layout)
        keep = protocol.pending_stagings(self.layout)
        try:
            names = os.listdir(self.layout.staging)
        except FileNotFoundError:
            return []
        cutoff = time.time() - older_than_s
        removed = []
        for name in sorted(names):
            path = os.path.join(self.layout.staging, name)
            if name not in keep and _newest_mtime(path) < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed


def _newest_mtime(path: str) -> float:
    newest = os.path.getmtime(path)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, name)))
            except FileNotFoundError:
                continue
    return newest
