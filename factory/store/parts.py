"""Parquet part files: driver-side writing, and the commit-time step that gives whatever was
written into a staging dir (by the driver or by Ray's ``write_parquet``) deterministic names
and records each file's row count, size and sha256.

Covered: files ending in ``.parquet`` anywhere under the incoming dir; names starting with "."
or "_" (``_SUCCESS``, ``.crc`` and similar writer droppings) are ignored; any other file is an
error rather than silently left out of the snapshot. The commit never rewrites or sorts data and
never holds more than one file's footer and one 1–2 MiB read buffer per I/O thread: it lists
names, reads each footer (row count, schema) and streams each file once for its sha256.
Not covered: re-encoding files another writer produced, so their codec and row-group sizes are
that writer's choice (use :meth:`StagedSnapshot.ray_write_kwargs` to make Ray match the store's settings).
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from factory.store.errors import StoreError


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


def write_split(table: pa.Table, directory: str, stem: str, options: WriteOptions, files) -> list[str]:
    """Write ``table`` as ``stem-00000.parquet`` … of at most ``rows_per_file`` rows each through
    the store backend ``files``; a zero-row table still writes one file so its schema is kept.
    Returns the paths (or URIs) written."""
    files.ensure_dirs(directory)
    starts = range(0, max(table.num_rows, 1), options.rows_per_file)
    paths = []
    for index, start in enumerate(starts):
        path = files.join(directory, f"{stem}-{index:05d}.parquet")
        pq.write_table(table.slice(start, options.rows_per_file), files.arrow_path(path),
                       filesystem=files.arrow_fs, **options.parquet_kwargs())
        paths.append(path)
    return paths


def incoming_files(directory: str, files) -> list[str]:
    """Parquet files under ``directory`` in a stable order (sorted relative paths); StoreError
    for a file that is neither Parquet nor hidden ("." or "_" prefix)."""
    found = []
    for rel in files.walk(directory):
        name = rel.rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            continue
        if not name.endswith(".parquet"):
            raise StoreError(f"{files.join(directory, rel)}: only .parquet files can be committed")
        found.append(files.join(directory, rel))
    return found


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
    incoming: str, target_dir: str, base: str, schema: pa.Schema | None, options: WriteOptions, files
) -> tuple[pa.Schema, list[dict], dict[str, str]]:
    """Give the Parquet files under ``incoming`` the names ``target_dir/part-NNNNN.parquet`` and describe them.

    ``schema`` (or, if None, the first file's schema) is what every file must match by column
    names, order and types (nullability is not compared: writers do not all preserve it).
    Returns (schema, entries, moves): entries ``{"path", "rows", "bytes", "sha256"}`` with ``path``
    relative to ``base`` (the snapshot dir), and ``moves`` {entry path: staged source relative to
    ``base``} for the files the backend leaves in place until publish (object storage; locally
    each file is renamed now and ``moves`` is empty). Raises StoreError if there are no files and
    no schema, or a file's columns differ."""
    sources = incoming_files(incoming, files)
    if not sources:
        if schema is None:
            raise StoreError(f"nothing to commit in {incoming}: no Parquet files and no schema given")
        sources = write_split(schema.empty_table(), incoming, "empty", options, files)
    if schema is None:
        schema = pq.read_schema(files.arrow_path(sources[0]), filesystem=files.arrow_fs).remove_metadata()
    targets = [files.join(target_dir, f"part-{index:05d}.parquet") for index in range(len(sources))]
    with ThreadPoolExecutor(files.io_threads) as pool:
        described = list(pool.map(lambda pair: _describe(*pair, schema, files), zip(sources, targets)))
    entries, moves = [], {}
    for source, target, (location, rows, size, digest) in zip(sources, targets, described):
        path = files.relative(target, base)
        entries.append({"path": path, "rows": rows, "bytes": size, "sha256": digest})
        if location != target:
            moves[path] = files.relative(source, base)
    return schema.remove_metadata(), entries, moves


def _describe(source: str, target: str, schema: pa.Schema, files) -> tuple[str, int, int, str]:
    """Check one file's columns from its footer, place it, and checksum it (one streamed read);
    returns (where it is now, rows, bytes, sha256)."""
    metadata = pq.read_metadata(files.arrow_path(source), filesystem=files.arrow_fs)
    _check_columns(source, metadata.schema.to_arrow_schema(), schema)
    placed = files.place(source, target)
    location = target if placed else source
    return location, metadata.num_rows, files.size(location), files.sha256(location, sync=placed)
