"""Parquet snapshot store: versioned, atomically committed dataset snapshots with manifests.

``ROOT/DATASET/snapshots/VERSION/part-*.parquet`` + ``_manifest.json`` + ``README.md``, and a
``LATEST`` pointer written last. Writers stage into a private dir and commit (see
:mod:`factory.store.commit` for the protocol and :mod:`factory.store.staging` for the parent
check); readers use :class:`Snapshot`, which reads only manifest-listed files.
"""

from factory.store.code_revision import code_version
from factory.store.config import StoreConfig
from factory.store.errors import CommitConflict, CorruptSnapshot, SnapshotNotFound, StoreError
from factory.store.parts import WriteOptions
from factory.store.snapshot import Snapshot
from factory.store.staging import StagedSnapshot
from factory.store.store import SnapshotStore

__all__ = [
    "CommitConflict",
    "CorruptSnapshot",
    "Snapshot",
    "SnapshotNotFound",
    "SnapshotStore",
    "StagedSnapshot",
    "StoreConfig",
    "StoreError",
    "WriteOptions",
    "code_version",
]
