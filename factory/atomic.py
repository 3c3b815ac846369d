"""The one way this package replaces a file: readers see the old or the new content, never a part.

``write_atomic(path, data)`` writes ``data`` (bytes, or a callable that writes a file at the temp path
it is given, e.g. a Parquet writer) to a temp file in the same directory, fsyncs it, renames it over
``path`` and fsyncs the directory, so the replacement also survives a crash. The file gets the mode
``open()`` would give it under the umask. Local (POSIX) files only; object stores replace whole
objects by themselves (:mod:`factory.store`).
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable


def fsync_dir(path: str) -> None:
    """Make a rename or creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the process's umask (mkstemp's files are 0600,
    which would leave manifests and reports unreadable to the other users of a shared dataset)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_temp(directory: str, data: bytes | Callable[[str], None]) -> str:
    """A complete, fsynced temp file in ``directory`` holding ``data``, with the mode a plain ``open()``
    would give it; returns its path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, _file_mode())
        if callable(data):
            os.close(fd)
            data(tmp)
            fd = os.open(tmp, os.O_RDONLY)
        else:
            os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def write_atomic(path: str, data: bytes | Callable[[str], None]) -> None:
    """Replace ``path`` with ``data`` atomically and durably (module docstring); creates the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = write_temp(directory, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_dir(directory)
