"""On-disk layout of one dataset and the small atomic file primitives the commit relies on.

::

    ROOT/DATASET/
      snapshots/v000001/            published snapshot (appears by one atomic rename)
        part-00000.parquet …        data, one row per kept sample, listed in the manifest
        _side/NAME/part-00000.parquet …   side tables ("dropped", "signatures", …)
        README.md                   dataset card
        _manifest.json              written last inside the snapshot
      _claims/v000001               commit record: which staging dir owns the version (never removed)
      _staging/<unique>/            private work dirs of writers; ignored by readers
        _incoming/…                 what the writer (driver or Ray) wrote, before the commit
        _moves.json                 object storage only: which staged object becomes which part
      LATEST                        "v000001\\n", rewritten after every publish

The same layout on a local path and under an object-store prefix: :class:`Layout` names the
paths (or URIs) and lists versions through its ``files`` backend (:mod:`factory.store.local_files`
or :mod:`factory.store.object_files`). ``create_exclusive`` below is the local backend's
create-once primitive; its replace-in-place is :func:`factory.atomic.write_atomic`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from factory.atomic import fsync_dir, write_temp

VERSION = re.compile(r"^v(\d{6,})$")
MANIFEST = "_manifest.json"
CARD = "README.md"
SIDE = "_side"
INCOMING = "_incoming"
MOVES = "_moves.json"
CHUNK = 1 << 20


def format_version(number: int) -> str:
    """1 → "v000001"."""
    return f"v{number:06d}"


def version_number(version: str) -> int:
    """"v000001" → 1; ValueError for anything else."""
    match = VERSION.match(version)
    if not match:
        raise ValueError(f"not a snapshot version: {version!r} (expected like 'v000001')")
    return int(match.group(1))


@dataclass(frozen=True)
class Layout:
    """Paths (or URIs) of one dataset under a store root, and the version listings."""

    root: str
    dataset: str
    files: Any = field(compare=False, repr=False)
    """The backend: a LocalFiles or ObjectFiles rooted at ``root``."""
    _seen_published: set = field(default_factory=set, compare=False, repr=False)
    """Versions already seen with a manifest: a published snapshot is never unpublished, so each
    is checked once per process (one HEAD per version on object storage, not one per listing)."""

    def _join(self, *parts: str) -> str:
        return self.files.join(self.root, self.dataset, *parts)

    @property
    def base(self) -> str:
        return self._join()

    @property
    def snapshots(self) -> str:
        return self._join("snapshots")

    @property
    def staging(self) -> str:
        return self._join("_staging")

    @property
    def claims(self) -> str:
        return self._join("_claims")

    @property
    def latest_file(self) -> str:
        return self._join("LATEST")

    def snapshot_dir(self, version: str) -> str:
        return self.files.join(self.snapshots, version)

    def claim_path(self, version: str) -> str:
        return self.files.join(self.claims, version)

    def ensure(self) -> None:
        self.files.ensure_dirs(self.snapshots, self.staging, self.claims)

    def published_versions(self) -> list[str]:
        """Versions whose snapshot dir holds a manifest, oldest first."""
        names = self._versions_in(self.snapshots)
        for version in names:
            if version in self._seen_published:
                continue
            if self.files.exists(self.files.join(self.snapshot_dir(version), MANIFEST)):
                self._seen_published.add(version)
        return [v for v in names if v in self._seen_published]

    def claimed_versions(self) -> list[str]:
        """Versions with a commit record, oldest first (published or about to be)."""
        return self._versions_in(self.claims)

    def read_json(self, path: str) -> dict:
        return json.loads(self.files.read_bytes(path))

    def _versions_in(self, directory: str) -> list[str]:
        return sorted((n for n in self.files.names(directory) if VERSION.match(n)), key=version_number)


def create_exclusive(path: str, data: bytes) -> bool:
    """Create ``path`` with ``data`` only if it does not exist; True if this call created it.

    ``os.link`` of a complete temp file is atomic and fails with EEXIST when the target exists,
    so the winner's file is never seen empty or half-written (unlike O_EXCL then write)."""
    directory = os.path.dirname(path)
    tmp = write_temp(directory, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    fsync_dir(directory)
    return True


def dump_json(value: object) -> bytes:
    """Canonical, human-readable JSON bytes (sorted keys, trailing newline)."""
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
