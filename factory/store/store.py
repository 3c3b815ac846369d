"""``SnapshotStore``: versioned, atomically committed Parquet snapshots of one dataset, under a
local directory or an object-store prefix (``s3://bucket/prefix``, ``gs://…``; see
:mod:`factory.store.location`).

Readers (``versions``, ``latest``, ``get``) only look at published snapshot dirs; they never
write and never see staging dirs or half-committed versions. Writers (``begin``) and
``gc_staging`` first roll forward any version a crashed writer had claimed but not renamed
(see :mod:`factory.store.commit`). ``latest()`` is the newest published version; the LATEST
file is the same name for tools that do not list directories, written after each publish.
"""

from __future__ import annotations

import os
import time
import uuid

import pyarrow as pa

from factory.store import commit as protocol
from factory.store.config import DATASET_NAME, StoreConfig
from factory.store.errors import SnapshotNotFound
from factory.store.layout import Layout, version_number
from factory.store.local_files import LocalFiles
from factory.store.location import ObjectSettings, parse_root
from factory.store.parts import WriteOptions
from factory.store.snapshot import Snapshot
from factory.store.staging import StagedSnapshot


class SnapshotStore:
    """Snapshots of dataset ``dataset`` under ``root`` (a path or URI; created on first write).
    ``object_settings`` says how to reach an object store (ignored for a local root)."""

    def __init__(self, root: str, dataset: str, options: WriteOptions = WriteOptions(),
                 gc_staging_after_s: float | None = None, object_settings: ObjectSettings = ObjectSettings()):
        if not DATASET_NAME.match(dataset):
            raise ValueError(f"dataset {dataset!r} must match {DATASET_NAME.pattern}")
        self.dataset = dataset
        files = _open_files(root, object_settings)
        self.layout = Layout(files.root, dataset, files)
        self.options = options
        self.gc_staging_after_s = gc_staging_after_s

    @classmethod
    def from_config(cls, config: StoreConfig) -> "SnapshotStore":
        options = WriteOptions(config.rows_per_file, config.row_group_rows, config.compression,
                               config.compression_level)
        settings = ObjectSettings(config.endpoint_url, config.region, config.allow_http)
        return cls(config.root, config.dataset, options, config.gc_staging_after_s, settings)

    @property
    def files(self):
        """The storage backend (LocalFiles or ObjectFiles): paths, ``arrow_fs``, ``storage_options``."""
        return self.layout.files

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        return self.layout.published_versions()

    def latest(self) -> Snapshot | None:
        """The newest published snapshot, or None if there is none."""
        versions = self.versions()
        return Snapshot.open(self.layout.snapshot_dir(versions[-1]), self.files) if versions else None

    def get(self, version: str) -> Snapshot:
        """The published snapshot ``version`` (e.g. "v000003"); SnapshotNotFound otherwise."""
        version_number(version)
        if version not in self.versions():
            raise SnapshotNotFound(f"{self.dataset} has no published snapshot {version} (has {self.versions()})")
        return Snapshot.open(self.layout.snapshot_dir(version), self.files)

    def begin(self, parent: str | None = "latest", schema: pa.Schema | None = None) -> StagedSnapshot:
        """Start a staged snapshot. ``parent``: "latest" (the newest version now, or an empty
        store), an explicit published version, or None for "append without a parent check".
        ``schema``: if given, driver writes are conformed to it and every data file must match it."""
        self.layout.ensure()
        self.files.check_conditional_puts(self.layout.staging)
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
        cutoff = time.time() - older_than_s
        removed = []
        for name in sorted(self.files.names(self.layout.staging)):
            path = self.files.join(self.layout.staging, name)
            try:
                stale = name not in keep and self.files.newest_mtime(path) < cutoff
            except FileNotFoundError:  # removed meanwhile (a publish, another gc)
                continue
            if stale:
                self.files.remove_tree(path)
                removed.append(path)
        return removed


def _open_files(root: str, settings: ObjectSettings):
    """The storage backend for ``root``: LocalFiles, or ObjectFiles for ``s3://`` / ``gs://``."""
    location = parse_root(root)
    if location.is_local:
        return LocalFiles(location.root)
    from factory.store.object_files import ObjectFiles

    return ObjectFiles(location, settings)
