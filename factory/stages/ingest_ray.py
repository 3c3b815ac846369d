"""Ingest of large JSONL / Parquet prompt files in Ray Data tasks: the file is read and validated in
parallel, and the prompt text never passes through the driver.

Contract:
- :func:`plan_chunks` (driver) splits a file into chunks from its layout alone: a plain JSONL file into
  byte ranges of about ``chunk_bytes`` that begin at line starts (the driver reads a few bytes around
  each boundary), a ``.gz`` file into one chunk (a gzip stream cannot be split), a Parquet file into
  runs of row groups (from its footer). A Parquet file whose footer cannot be read raises
  :class:`Unreadable`.
- True row numbers: Parquet chunks know their first row from the footer's row counts; JSONL chunks
  get theirs from a first Ray Data pass that counts the newlines of every byte range (no parsing), so
  every problem names the file's own 1-based line number, as on the driver path.
- :func:`read_source` validates every chunk in a Ray Data task with the same per-row rules
  (:func:`factory.stages.ingest_rows.convert`) and materializes the result in the object store
  (``PROMPT_SCHEMA`` plus a ``problem`` column: null for an accepted row, else the reason, the row's
  other columns null). Why it materializes: with ``on_bad_row: fail`` no teacher compute may start
  before the whole set is validated, duplicate ids are a global question, and the flow needs the
  prompt count; the rows stay in the object store (spilled to disk when large), not on the driver.
- What comes to the driver: three narrow columns per row, ``prompt_id``, ``source_row`` and
  ``problem`` (:func:`keys`), i.e. O(N x id), for the duplicate-id step and the problem list
  (:func:`factory.stages.ingest.ingest`); never the prompt text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from factory.schema import PROMPT_SCHEMA
from factory.stages.ingest_rows import READ_BATCH_ROWS, Unreadable, convert, open_table, rows_batches, rows_jsonl

if TYPE_CHECKING:
    import ray.data

    from factory.stages.ingest import PromptSource

CHUNK_BYTES = 32 * 2**20
"""Target bytes per chunk (one Ray Data task each): a JSONL byte range, or Parquet row groups' data."""
PROBLEM = pa.field("problem", pa.string())
CHECKED_SCHEMA = pa.schema([field.with_nullable(True) for field in PROMPT_SCHEMA] + [PROBLEM])
"""What a validation task returns: prompt rows plus the reason a row is bad (null when accepted)."""


def plan_chunks(source: "PromptSource", path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[dict]:
    """The chunks of one file (module docstring); JSONL chunks' ``first_row`` is filled in by
    :func:`read_source`."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        try:
            metadata = pq.ParquetFile(path).metadata
        except Exception as e:  # not Parquet: the whole source is unreadable
            raise Unreadable(f"unreadable_source: {type(e).__name__}: {e}") from e
        chunks, groups, size, first_row, row = [], [], 0, 1, 1
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            if groups and size + group.total_byte_size > chunk_bytes:
                chunks.append({"row_groups": groups, "first_row": first_row})
                groups, size, first_row = [], 0, row
            groups.append(index)
            size += group.total_byte_size
            row += group.num_rows
        return chunks + ([{"row_groups": groups, "first_row": first_row}] if groups else [])
    if path.suffix == ".gz":
        return [{"start": 0, "stop": None, "first_row": 1}]
    total = os.path.getsize(path)
    starts = [0]
    with open(path, "rb") as f:
        while starts[-1] + chunk_bytes < total:
            f.seek(starts[-1] + chunk_bytes)
            f.readline()  # to the start of the next line
            if f.tell() >= total:
                break
            starts.append(f.tell())
    return [{"start": start, "stop": stop, "first_row": None} for start, stop in zip(starts, starts[1:] + [total])]


def _count_lines(chunk: dict, path: str) -> dict:
    """A JSONL byte range's newline count (no parsing): the first pass."""
    count, position = 0, chunk["start"]
    with open(path, "rb") as f:
        f.seek(position)
        while position < chunk["stop"]:
            block = f.read(min(8 * 2**20, chunk["stop"] - position))
            if not block:
                break
            count += block.count(b"\n")
            position += len(block)
    return {**chunk, "newlines": count}


def _validate(chunks: pa.Table, source: "PromptSource", path: str) -> pa.Table:
    """Ray Data task: read and validate the chunks of one batch (:data:`CHECKED_SCHEMA` rows)."""
    out: list[pa.RecordBatch] = []
    rows: list[dict] = []
    for chunk in chunks.to_pylist():
        if source.kind == "parquet":
            records = rows_batches(open_table(source, Path(path), chunk["row_groups"]), chunk["first_row"])
        else:
            records = rows_jsonl(Path(path), chunk["start"], chunk.get("stop"), chunk["first_row"])
        number = chunk["first_row"] - 1
        try:
            for number, record in records:
                row = convert(source, number, record)
                rows.append(row if isinstance(row, dict) else {"source": source.name, "source_row": number,
                                                               "problem": row})
                if len(rows) == READ_BATCH_ROWS:
                    out.append(pa.RecordBatch.from_pylist(rows, schema=CHECKED_SCHEMA))
                    rows = []
        except Unreadable as unreadable:  # a row of its own: the driver raises, naming where it broke
            rows.append({"source": source.name, "source_row": number + 1, "problem": str(unreadable)})
    out.append(pa.RecordBatch.from_pylist(rows, schema=CHECKED_SCHEMA))
    return pa.Table.from_batches(out, schema=CHECKED_SCHEMA)


def read_source(source: "PromptSource", path: Path, chunk_bytes: int = CHUNK_BYTES) -> "ray.data.Dataset":
    """Every row of one file, validated in Ray Data tasks and materialized (:data:`CHECKED_SCHEMA`)."""
    import ray

    chunks = plan_chunks(source, path, chunk_bytes)
    if source.kind == "jsonl" and path.suffix != ".gz":
        counted = ray.data.from_items(chunks, override_num_blocks=len(chunks)).map(
            _count_lines, fn_kwargs={"path": str(path)}).take_all()
        by_start = {row["start"]: row["newlines"] for row in counted}  # map does not promise the order
        first_row = 1
        for chunk in chunks:
            chunk["first_row"] = first_row
            first_row += by_start[chunk["start"]]
    chunks = [{key: value for key, value in chunk.items() if value is not None} for chunk in chunks]
    return ray.data.from_items(chunks, override_num_blocks=len(chunks)).map_batches(
        _validate, batch_size=1, batch_format="pyarrow", fn_kwargs={"source": source, "path": str(path)},
    ).materialize()


def keys(checked: "ray.data.Dataset") -> Iterator[tuple[int, str | None, str | None]]:
    """(row number, prompt id, problem) of every row in row order: the only per-row data the driver holds."""
    from factory.rows import collect

    narrow = collect(checked.select_columns(["source_row", "prompt_id", "problem"]))
    if not narrow.num_columns:  # an empty file
        return
    for batch in narrow.sort_by("source_row").to_batches(max_chunksize=2**16):  # Python objects for one slice
        yield from zip(batch["source_row"].to_pylist(), batch["prompt_id"].to_pylist(), batch["problem"].to_pylist())


def accepted(checked: "ray.data.Dataset", rejected_rows: list[int]) -> "ray.data.Dataset":
    """The accepted rows as ``PROMPT_SCHEMA`` (lazy over the materialized blocks): no problem, and not one of
    ``rejected_rows`` (duplicate ids, found on the driver)."""
    import ray

    rejected = ray.put(pa.array(rejected_rows, pa.int64()))

    def keep(batch: pa.Table) -> pa.Table:
        mask = pc.and_(pc.is_null(batch["problem"]),
                       pc.invert(pc.is_in(batch["source_row"], value_set=ray.get(rejected))))
        return batch.filter(mask).drop_columns(["problem"]).cast(PROMPT_SCHEMA)

    return checked.map_batches(keep, batch_format="pyarrow")
