"""Errors raised by the snapshot store. Every store error subclasses :class:`StoreError`."""

from __future__ import annotations


class StoreError(Exception):
    """A snapshot-store operation failed; the message says which dataset, version or file."""


class CommitConflict(StoreError):
    """Another writer won the version this commit needed (or the parent it was built on is no
    longer the latest). Nothing of the losing commit is visible; its staging dir is removed."""


class SnapshotNotFound(StoreError, LookupError):
    """No published snapshot has the requested version."""


class CorruptSnapshot(StoreError):
    """A snapshot's files do not match its manifest (missing, wrong size or wrong sha256)."""

    def __init__(self, version: str, problems: list[str]):
        self.version = version
        self.problems = problems
        super().__init__(f"snapshot {version} is corrupt: " + "; ".join(problems))
