"""The local (POSIX) backend of the commit protocol: one filesystem, atomic ``os.link`` and
``os.rename``.

Covered: a local disk or a mount with POSIX semantics for ``link``/``rename`` (NFSv3+ provide
both). The operations are the ones :mod:`factory.store.object_files` provides for object storage,
so :mod:`factory.store.commit` runs the same protocol on either:

- ``create`` (the version claim): ``os.link`` of a complete temp file, which fails when the target exists;
- ``swap`` (``LATEST``): compare-and-swap under an exclusive ``lockf`` on a hidden lock file next
  to the target, the token being the target's (inode, mtime, size);
- ``place`` renames a staged part to its final name at once, and ``publish`` renames the whole
  staging dir into ``snapshots/`` — readers see all of it or nothing.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil

from factory.store.errors import StoreError
from factory.atomic import fsync_dir, write_atomic
from factory.store.layout import CHUNK, MANIFEST, create_exclusive


class LocalFiles:
    """Store files under the absolute directory ``root``; see the module docstring."""

    scheme = "local"
    arrow_fs = None
    storage_options = None
    io_threads = 1

    def __init__(self, root: str):
        self.root = root

    def join(self, base: str, *parts: str) -> str:
        return os.path.join(base, *parts)

    def relative(self, path: str, base: str) -> str:
        return os.path.relpath(path, base)

    def arrow_path(self, path: str) -> str:
        return path

    def ensure_dirs(self, *paths: str) -> None:
        for path in paths:
            os.makedirs(path, exist_ok=True)

    def names(self, directory: str) -> list[str]:
        """Names directly under ``directory`` ([] when it does not exist)."""
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return []

    def exists(self, path: str) -> bool:
        return os.path.isfile(path)

    def size(self, path: str) -> int:
        """Bytes of ``path``; FileNotFoundError when it is missing."""
        return os.path.getsize(path)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def walk(self, directory: str) -> list[str]:
        """Files under ``directory`` as sorted relative paths, skipping "." and "_" directories."""
        found = []
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
            found.extend(os.path.relpath(os.path.join(dirpath, name), directory) for name in filenames)
        return sorted(found)

    def sha256(self, path: str, sync: bool = False) -> str:
        """sha256 read in 1 MiB chunks; ``sync`` also fsyncs, so the checksum describes durable bytes."""
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
            if sync:
                os.fsync(handle.fileno())
        return digest.hexdigest()

    def write(self, path: str, data: bytes) -> None:
        write_atomic(path, data)

    def create(self, path: str, data: bytes) -> bool:
        return create_exclusive(path, data)

    def read_versioned(self, path: str) -> tuple[bytes | None, object]:
        """(content, token) of ``path``, or (None, None) when it does not exist."""
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                return handle.read(), (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            return None, None

    def swap(self, path: str, data: bytes, token: object) -> bool:
        """Replace ``path`` with ``data`` if it is still the version ``token`` names (None: only if
        it does not exist); False, changing nothing, otherwise."""
        lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            if self.read_versioned(path)[1] != token:
                return False
            write_atomic(path, data)
            return True
        finally:
            os.close(fd)  # closing releases the lock

    def check_conditional_puts(self, directory: str) -> None:
        """Nothing to check: ``link`` and ``lockf`` are atomic on the filesystems this backend covers."""

    def place(self, source: str, target: str) -> bool:
        """Move a staged file to its final name inside the staging dir now (True: it moved)."""
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(source, target)
        return True

    def publish(self, staged_dir: str, target: str, moves: dict[str, str]) -> None:
        """Rename the complete staging dir to ``target`` (idempotent: succeeds if a concurrent
        roll-forward already did). ``moves`` is always empty here: ``place`` moved every part."""
        try:
            os.rename(staged_dir, target)
        except FileNotFoundError:
            if not os.path.isfile(os.path.join(target, MANIFEST)):
                raise StoreError(f"claimed staging dir {staged_dir} vanished before {target} was published") from None
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise StoreError(
                    f"{target} already exists although it was claimed for {staged_dir}: "
                    "the store was modified outside the commit protocol"
                ) from None
            raise
        fsync_dir(os.path.dirname(target))

    def remove_tree(self, directory: str) -> None:
        shutil.rmtree(directory, ignore_errors=True)

    def newest_mtime(self, directory: str) -> float:
        """Newest modification time of ``directory`` or anything inside it."""
        newest = os.path.getmtime(directory)
        for dirpath, dirnames, filenames in os.walk(directory):
            for name in dirnames + filenames:
                try:
                    newest = max(newest, os.path.getmtime(os.path.join(dirpath, name)))
                except FileNotFoundError:
                    continue
        return newest
