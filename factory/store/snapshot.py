"""A published, immutable snapshot and the read API over it.

Contract: readers use only the files the manifest lists (never a glob of the directory), so a
stray file in the snapshot dir can never leak into a read. :meth:`Snapshot.verify` compares
every listed file's size and sha256 with the manifest; reads do not verify implicitly.
"""

from __future__ import annotations

import os

import pyarrow as pa

from factory.store.errors import CorruptSnapshot, StoreError
from factory.store.layout import MANIFEST, read_json
from factory.store.parts import file_sha256, schema_from_record


class Snapshot:
    """One committed version of a dataset: ``version``, ``path``, ``manifest`` and its files."""

    def __init__(self, path: str, manifest: dict):
        self.path = os.path.abspath(path)
        self.manifest = manifest
        self.version: str = manifest["version"]

    @classmethod
    def open(cls, path: str) -> "Snapshot":
        """Load the snapshot in ``path`` from its ``_manifest.json``."""
        manifest_path = os.path.join(path, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise StoreError(f"{path} is not a snapshot: it has no {MANIFEST}")
        return cls(path, read_json(manifest_path))

    def __repr__(self) -> str:
        return f"Snapshot({self.version!r}, rows={self.num_rows}, path={self.path!r})"

    @property
    def num_rows(self) -> int:
        return self.manifest["num_rows"]

    @property
    def schema(self) -> pa.Schema:
        return schema_from_record(self.manifest["schema"])

    @property
    def files(self) -> list[str]:
        """Absolute paths of the data files, in manifest order."""
        return [os.path.join(self.path, entry["path"]) for entry in self.manifest["files"]]

    def side_tables(self) -> list[str]:
        """Names of the side tables this snapshot carries (e.g. "dropped")."""
        return sorted(self.manifest.get("side_tables", {}))

    def _side(self, name: str) -> dict:
        tables = self.manifest.get("side_tables", {})
        if name not in tables:
            raise KeyError(f"snapshot {self.version} has no side table {name!r} (has {sorted(tables)})")
        return tables[name]

    def side_files(self, name: str) -> list[str]:
        """Absolute paths of side table ``name``'s files; [] if the snapshot has no such table
        (a writer that had nothing to put in it, e.g. no dropped rows, leaves it out)."""
        if name not in self.manifest.get("side_tables", {}):
            return []
        return [os.path.join(self.path, entry["path"]) for entry in self._side(name)["files"]]

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The data rows as one Arrow table (files in manifest order)."""
        return _read(self.files, self.schema, columns)

    def read_side(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Side table ``name`` as one Arrow table; KeyError if the snapshot has no such table."""
        side = self._side(name)
        return _read(self.side_files(name), schema_from_record(side["schema"]), columns)

    def to_ray(self, **read_parquet_kwargs):
        """A Ray Dataset over the listed data files (``ray.data.read_parquet``)."""
        import ray.data

        return ray.data.read_parquet(self.files, **read_parquet_kwargs)

    def verify(self) -> None:
        """Raise :class:`CorruptSnapshot` listing every data or side file that is missing or whose
        size or sha256 differs from the manifest; return None if all match."""
        entries = list(self.manifest["files"])
        for side in self.manifest.get("side_tables", {}).values():
            entries.extend(side["files"])
        problems = [p for entry in entries if (p := _check_file(self.path, entry))]
        if problems:
            raise CorruptSnapshot(self.version, problems)


def _read(files: list[str], schema: pa.Schema, columns: list[str] | None) -> pa.Table:
    import pyarrow.dataset as ds

    return ds.dataset(files, schema=schema, format="parquet").to_table(columns=columns)


def _check_file(base: str, entry: dict) -> str | None:
    path = os.path.join(base, entry["path"])
    if not os.path.isfile(path):
        return f"{entry['path']}: missing"
    size = os.path.getsize(path)
    if size != entry["bytes"]:
        return f"{entry['path']}: {size} bytes, manifest says {entry['bytes']}"
    if file_sha256(path) != entry["sha256"]:
        return f"{entry['path']}: sha256 differs from the manifest"
    return None
