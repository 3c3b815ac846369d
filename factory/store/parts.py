"""Parquet part files: driver-side writing, and the commit-time step that renames whatever was
written into a staging dir (by the driver or by Ray's ``write_parquet``) to deterministic names
and records each file's row count, size and sha256.

Covered: files ending in ``.parquet`` anywhere under the incoming dir; names starting with "."
or "_" (``_SUCCESS``, ``.crc`` and similar writer droppings) are ignored; any other file is an
error rather than silently left out of the snapshot. Not covered: re-encoding
files another writer produced, so their codec and row-group sizes are that writer's choice
(use :meth:`StagedSnapshot.ray_write_kwargs` to make Ray match the store's settings).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from factory.store.errors import StoreError

CHUNK = 1 << 20


@dataclass(frozen=True)
class WriteOptions:
    """How the store encodes Parquet it writes itself."""

    rows_per_file: int = 100_000
    row_group_rows: int = 4_096
    compression: str = "zstd"
    compression_level: int | None = None

    def parquet_kwargs(self) -> dict:
        """Keyword arguments for ``pyarrow.parquet.write_table``."""
        kwargs: dict = {"compression": self.compression, "row_group_size": self.row_group_rows}
        if self.compression_level is not None:
            kwargs["compression_level"] = self.compression_level
        return kwargs


def write_split(table: pa.Table, directory: str, stem: str, options: WriteOptions) -> list[str]:
    """Write ``table`` as ``stem-00000.parquet`` … of at most ``rows_per_file`` rows each; a
    zero-row table still writes one file so its schema is kept. Returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    starts = range(0, max(table.num_rows, 1), options.rows_per_file)
    paths = []
    for index, start in enumerate(starts):
        path = os.path.join(directory, f"{stem}-{index:05d}.parquet")
        pq.write_table(table.slice(start, options.rows_per_file), path, **options.parquet_kwargs())
        paths.append(path)
    return paths


def incoming_files(directory: str) -> list[str]:
    """Parquet files under ``directory`` in a stable order (sorted relative paths); StoreError
    for a file that is neither Parquet nor hidden ("." or "_" prefix)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in filenames:
            if name.startswith((".", "_")):
                continue
            if not name.endswith(".parquet"):
                raise StoreError(f"{os.path.join(dirpath, name)}: only .parquet files can be committed")
            found.append(os.path.relpath(os.path.join(dirpath, name), directory))
    return [os.path.join(directory, rel) for rel in sorted(found)]


def file_sha256(path: str, sync: bool = False) -> str:
    """sha256 of a file; ``sync`` also fsyncs it, so the checksum describes durable bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
        if sync:
            os.fsync(handle.fileno())
    return digest.hexdigest()


def schema_record(schema: pa.Schema) -> dict:
    """JSON form of a schema: readable fields plus the exact Arrow IPC bytes."""
    schema = schema.remove_metadata()
    return {
        "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
        "arrow_ipc_base64": base64.b64encode(schema.serialize().to_pybytes()).decode(),
    }


def schema_from_record(record: dict) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(record["arrow_ipc_base64"])))


def _check_columns(path: str, found: pa.Schema, expected: pa.Schema) -> None:
    got = [(f.name, f.type) for f in found]
    want = [(f.name, f.type) for f in expected]
    if got != want:
        missing = [n for n, _ in want if n not in found.names]
        extra = [n for n, _ in got if n not in expected.names]
        retyped = [n for n, t in got if n in expected.names and expected.field(n).type != t]
        raise StoreError(
            f"{path}: columns differ from the snapshot schema "
            f"(missing {missing}, unexpected {extra}, other type {retyped}, or another order)"
        )


def finalize(
    incoming: str, target_dir: str, base: str, schema: pa.Schema | None, options: WriteOptions
) -> tuple[pa.Schema, list[dict]]:
    """Move the Parquet files under ``incoming`` to ``target_dir/part-NNNNN.parquet`` and describe them.

    ``schema`` (or, if None, the first file's schema) is what every file must match by column
    names, order and types (nullability is not compared: writers do not all preserve it).
    Returns (schema, entries) with entries ``{"path", "rows", "bytes", "sha256"}`` where ``path``
    is relative to ``base`` (the snapshot dir). Raises StoreError if there are no files and no
    schema, or a file's columns differ."""
    sources = incoming_files(incoming)
    if not sources:
        if schema is None:
            raise StoreError(f"nothing to commit in {incoming}: no Parquet files and no schema given")
        sources = write_split(schema.empty_table(), incoming, "empty", options)
    if schema is None:
        schema = pq.read_schema(sources[0]).remove_metadata()
    os.makedirs(target_dir, exist_ok=True)
    entries = []
    for index, source in enumerate(sources):
        metadata = pq.read_metadata(source)
        _check_columns(source, metadata.schema.to_arrow_schema(), schema)
        target = os.path.join(target_dir, f"part-{index:05d}.parquet")
        os.rename(source, target)
        entries.append({
            "path": os.path.relpath(target, base),
            "rows": metadata.num_rows,
            "bytes": os.path.getsize(target),
            "sha256": file_sha256(target, sync=True),
        })
    return schema.remove_metadata(), entries
