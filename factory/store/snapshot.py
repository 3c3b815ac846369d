"""A published, immutable snapshot and the read API over it, on a local path or object storage.

Contract: readers use only the files the manifest lists (never a glob of the directory), so a
stray file in the snapshot dir can never leak into a read. ``files`` are absolute paths (local)
or URIs (``s3://…``); ``filesystem`` is the pyarrow filesystem to read them with (None locally)
and ``storage_options`` the fsspec equivalent (pandas, HF ``datasets``). Reads stream from the
files (pyarrow datasets, Ray); :meth:`Snapshot.verify` compares every listed file's size and
sha256 with the manifest, streaming each file once; reads do not verify implicitly.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from factory.store.errors import CorruptSnapshot, StoreError
from factory.store.layout import CARD, MANIFEST
from factory.store.local_files import LocalFiles
from factory.store.parts import schema_from_record


class Snapshot:
    """One committed version of a dataset: ``version``, ``path``, ``manifest`` and its files."""

    def __init__(self, path: str, manifest: dict, files=None):
        if files is None:
            path = os.path.abspath(path)
        self.store_files = files if files is not None else LocalFiles(path)
        self.path = path
        self.manifest = manifest
        self.version: str = manifest["version"]

    @classmethod
    def open(cls, path: str, files=None) -> "Snapshot":
        """Load the snapshot in ``path`` (a local dir, or a URI with its store backend ``files``)
        from its ``_manifest.json``."""
        files = files if files is not None else LocalFiles(path)
        try:
            manifest = json.loads(files.read_bytes(files.join(path, MANIFEST)))
        except FileNotFoundError:
            raise StoreError(f"{path} is not a snapshot: it has no {MANIFEST}") from None
        return cls(path, manifest, files)

    def __repr__(self) -> str:
        return f"Snapshot({self.version!r}, rows={self.num_rows}, path={self.path!r})"

    @property
    def num_rows(self) -> int:
        return self.manifest["num_rows"]

    @property
    def schema(self) -> pa.Schema:
        return schema_from_record(self.manifest["schema"])

    @property
    def filesystem(self):
        """pyarrow filesystem for ``files`` (S3FileSystem / GcsFileSystem), or None for a local
        snapshot. Ray takes it with the URIs (``ray.data.read_parquet(files, filesystem=…)``);
        pyarrow itself wants the paths without the scheme (``arrow_paths``)."""
        return self.store_files.arrow_fs

    @property
    def storage_options(self) -> dict | None:
        """fsspec ``storage_options`` for ``files`` (pandas, HF ``datasets``); None for a local snapshot."""
        return self.store_files.storage_options

    @property
    def files(self) -> list[str]:
        """Absolute paths (local) or URIs (object storage) of the data files, in manifest order."""
        return [self.store_files.join(self.path, entry["path"]) for entry in self.manifest["files"]]

    def arrow_paths(self, files: list[str] | None = None) -> list[str]:
        """``files`` (default: the data files) in the form ``filesystem`` takes: no ``s3://``
        (unchanged locally)."""
        return [self.store_files.arrow_path(f) for f in (self.files if files is None else files)]

    def side_tables(self) -> list[str]:
        """Names of the side tables this snapshot carries (e.g. "dropped")."""
        return sorted(self.manifest.get("side_tables", {}))

    def _side(self, name: str) -> dict:
        tables = self.manifest.get("side_tables", {})
        if name not in tables:
            raise KeyError(f"snapshot {self.version} has no side table {name!r} (has {sorted(tables)})")
        return tables[name]

    def side_files(self, name: str) -> list[str]:
        """Paths or URIs of side table ``name``'s files; [] if the snapshot has no such table
        (a writer that had nothing to put in it, e.g. no dropped rows, leaves it out)."""
        if name not in self.manifest.get("side_tables", {}):
            return []
        return [self.store_files.join(self.path, entry["path"]) for entry in self._side(name)["files"]]

    def to_arrow_dataset(self, side: str | None = None):
        """A lazy ``pyarrow.dataset.Dataset`` over the data files (or side table ``side``):
        scan it in batches (``to_batches``) to stream, or ``to_table(columns=…)`` to load."""
        import pyarrow.dataset as ds

        files, schema = (self.files, self.schema) if side is None else (
            self.side_files(side), schema_from_record(self._side(side)["schema"]))
        return ds.dataset(self.arrow_paths(files), schema=schema, format="parquet", filesystem=self.filesystem)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The data rows as one Arrow table (files in manifest order)."""
        return self.to_arrow_dataset().to_table(columns=columns)

    def read_side(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Side table ``name`` as one Arrow table; KeyError if the snapshot has no such table."""
        return self.to_arrow_dataset(side=name).to_table(columns=columns)

    def write_file(self, name: str, data: bytes) -> str:
        """Write ``name`` (a plain file name, e.g. "run_summary.json", "report.html") beside the
        manifest, atomically (readers see the old or the new bytes); returns its path or URI.
        Such files are not part of the data: not listed, not checksummed, never read by readers.
        The manifest, the card and the listed files cannot be replaced this way."""
        listed = {entry["path"] for entry in self.manifest["files"]}
        if "/" in name or name in (MANIFEST, CARD, "", ".", "..") or name in listed:
            raise ValueError(f"{name!r} is not a free file name beside {MANIFEST} in snapshot {self.version}")
        path = self.store_files.join(self.path, name)
        self.store_files.write(path, data)
        return path

    def read_file(self, name: str) -> bytes:
        """The bytes of file ``name`` beside the manifest (FileNotFoundError when absent)."""
        return self.store_files.read_bytes(self.store_files.join(self.path, name))

    def to_ray(self, **read_parquet_kwargs):
        """A Ray Dataset over the listed data files (``ray.data.read_parquet``, with the
        snapshot's filesystem unless one is given)."""
        import ray.data

        if self.filesystem is not None:
            read_parquet_kwargs.setdefault("filesystem", self.filesystem)
        return ray.data.read_parquet(self.files, **read_parquet_kwargs)

    def verify(self) -> None:
        """Raise :class:`CorruptSnapshot` listing every data or side file that is missing or whose
        size or sha256 differs from the manifest; return None if all match."""
        entries = list(self.manifest["files"])
        for side in self.manifest.get("side_tables", {}).values():
            entries.extend(side["files"])
        with ThreadPoolExecutor(self.store_files.io_threads) as pool:
            problems = [p for p in pool.map(self._check_file, entries) if p]
        if problems:
            raise CorruptSnapshot(self.version, problems)

    def _check_file(self, entry: dict) -> str | None:
        path = self.store_files.join(self.path, entry["path"])
        try:
            size = self.store_files.size(path)
        except FileNotFoundError:
            return f"{entry['path']}: missing"
        if size != entry["bytes"]:
            return f"{entry['path']}: {size} bytes, manifest says {entry['bytes']}"
        if self.store_files.sha256(path) != entry["sha256"]:
            return f"{entry['path']}: sha256 differs from the manifest"
        return None
