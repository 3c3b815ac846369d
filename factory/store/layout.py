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
      LATEST                        "v000001\\n", rewritten after every publish

Local (POSIX) filesystems only: the commit relies on ``os.link`` failing when the target
exists, and on ``os.rename`` of a directory being atomic within one filesystem.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass

VERSION = re.compile(r"^v(\d{6,})$")
MANIFEST = "_manifest.json"
CARD = "README.md"
SIDE = "_side"


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
    """Paths of one dataset under a store root."""

    root: str
    dataset: str

    @property
    def base(self) -> str:
        return os.path.join(self.root, self.dataset)

    @property
    def snapshots(self) -> str:
        return os.path.join(self.base, "snapshots")

    @property
    def staging(self) -> str:
        return os.path.join(self.base, "_staging")

    @property
    def claims(self) -> str:
        return os.path.join(self.base, "_claims")

    @property
    def latest_file(self) -> str:
        return os.path.join(self.base, "LATEST")

    def snapshot_dir(self, version: str) -> str:
        return os.path.join(self.snapshots, version)

    def claim_path(self, version: str) -> str:
        return os.path.join(self.claims, version)

    def ensure(self) -> None:
        for path in (self.snapshots, self.staging, self.claims):
            os.makedirs(path, exist_ok=True)

    def published_versions(self) -> list[str]:
        """Versions whose snapshot dir holds a manifest, oldest first."""
        names = _versions_in(self.snapshots)
        return [v for v in names if os.path.isfile(os.path.join(self.snapshot_dir(v), MANIFEST))]

    def claimed_versions(self) -> list[str]:
        """Versions with a commit record, oldest first (published or about to be)."""
        return _versions_in(self.claims)


def _versions_in(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted((n for n in names if VERSION.match(n)), key=version_number)


def fsync_dir(path: str) -> None:
    """Make a rename/creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: str, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a part."""
    directory = os.path.dirname(path)
    tmp = _write_temp(directory, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_dir(directory)


def create_exclusive(path: str, data: bytes) -> bool:
    """Create ``path`` with ``data`` only if it does not exist; True if this call created it.

    ``os.link`` of a complete temp file is atomic and fails with EEXIST when the target exists,
    so the winner's file is never seen empty or half-written (unlike O_EXCL then write)."""
    directory = os.path.dirname(path)
    tmp = _write_temp(directory, data)
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


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
