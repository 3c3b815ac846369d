"""Reading and validating prompt rows, one source at a time: the per-row rules of
:mod:`factory.stages.ingest`, shared by the driver path and the Ray Data tasks
(:mod:`factory.stages.ingest_ray`), so both name the same problems the same way.

Contract:
- Readers yield ``(row number, record)`` or ``(row number, reason)`` and never stop at a bad row;
  a reader that cannot go on raises :class:`Unreadable` saying where and why.
- A reader can start part-way into a file (a JSONL byte range beginning after a newline, a run of
  Parquet row groups) when told the true number of its first row, so row numbers are always the
  source file's own 1-based line / row numbers (blank lines are counted, not yielded).
- :func:`convert` turns one record into a ``PROMPT_SCHEMA`` row dict or the reason it is bad; it
  depends only on the source's settings and the record, never on other rows (duplicates are the
  caller's global step).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import math
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa

if TYPE_CHECKING:
    from factory.stages.ingest import PromptSource

_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)
ROW_PROBLEMS = ("invalid_utf8", "invalid_json", "not_object", "missing_field", "not_text", "invalid_text",
                "empty_prompt", "empty_field", "bad_reference", "duplicate_id")
"""Every reason a single row can be rejected for (the ``ingest:<reason>`` counter keys)."""
READ_BATCH_ROWS = 8192
"""Rows per record batch read from a Parquet/HF source and per packed batch of accepted rows."""


class Unreadable(Exception):
    """A source's reader failed part-way; ``args[0]`` says where and why."""


def content_id(task: str, prompt: str) -> str:
    """Stable id of a prompt that has none: a hash of its task and text."""
    return "p-" + hashlib.sha1(f"{task}\0{prompt}".encode()).hexdigest()[:16]


def _parse_line(raw: bytes) -> dict | str:
    """One JSONL line → its object, or the reason it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid_utf8: {e.reason} at byte {e.start}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        return f"invalid_json: {e.msg} at column {e.colno}"
    except RecursionError:
        return "invalid_json: nested too deeply"
    except ValueError as e:  # e.g. an integer literal past Python's digit limit
        return f"invalid_json: {e}"
    return record if isinstance(record, dict) else f"not_object: the row has type {_kind(record)}, not object"


def rows_jsonl(path: Path, start: int = 0, stop: int | None = None,
               first_row: int = 1) -> Iterator[tuple[int, dict | str]]:
    """Yield (row number, record) or (row number, reason) for the lines of ``path`` that begin in the
    byte range ``[start, stop)`` (``start`` at a line start; a ``.gz`` file is read whole), numbered
    from ``first_row``, without stopping at a bad line."""
    opener = gzip.open if path.suffix == ".gz" else open
    number, position = first_row - 1, start
    try:
        with opener(path, "rb") as f:
            if start:
                f.seek(start)
            for number, raw in enumerate(f, start=first_row):
                if stop is not None and position >= stop:
                    break
                position += len(raw)
                if number == 1:
                    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                        raise Unreadable("unreadable_source: the file is UTF-16 (its byte-order mark says so); "
                                         "re-encode it as UTF-8")
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                if raw.strip():
                    yield number, _parse_line(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise Unreadable(f"unreadable_source: {type(e).__name__}: {e} (after row {number})") from e


def rows_batches(batches: Iterator[pa.RecordBatch], first_row: int = 1) -> Iterator[tuple[int, dict | str]]:
    """Yield (row number, record) over record batches, numbered from ``first_row``."""
    number = first_row - 1
    try:
        for batch in batches:
            for record in batch.to_pylist():
                number += 1
                yield number, record
    except Exception as e:  # any failure of the file reader means the rest of the source is lost
        raise Unreadable(f"unreadable_source: {type(e).__name__}: {e} (after row {number})") from e


def open_table(source: "PromptSource", path: Path, row_groups: list[int] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of the configured columns that the file has (an absent one is a per-row problem);
    ``row_groups``: only those of a Parquet file."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        columns = [name for name in source.fields() if name in parquet.schema_arrow.names]
        return parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns, row_groups=row_groups)
    from datasets import Dataset, load_from_disk  # hf_disk

    dataset = load_from_disk(str(path))
    if not isinstance(dataset, Dataset):
        raise ValueError(f"{path} holds a {type(dataset).__name__}; point path at one split's directory")
    table = dataset.data.table
    table = table.select([name for name in source.fields() if name in table.column_names])
    return iter(table.to_batches(max_chunksize=READ_BATCH_ROWS))


def _kind(value: Any) -> str:
    """A value's type in the words of the file formats (JSON's, else Python's)."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    return type(value).__name__


class _Bad(Exception):
    """A row's problem (the reason text); raised by the field readers, caught per row."""


def _text(record: dict, name: str | None, *, required: bool, numbers: tuple[type, ...] = (),
          blank_ok: bool = True) -> str | None:
    """The text of field ``name`` (None when unconfigured, or null and not ``required``); with
    ``blank_ok=False`` a value of only whitespace is an ``empty_field``."""
    if not name:
        return None
    if name not in record:
        raise _Bad(f"missing_field: {name}")
    value = record[name]
    if value is None:
        if required:
            raise _Bad(f"missing_field: {name} is null")
        return None
    finite = not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, numbers) and not isinstance(value, bool) and finite:
        value = str(value)
    if not isinstance(value, str):
        raise _Bad(f"not_text: {name} has type {_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _Bad(f"invalid_text: {name} has an unpaired surrogate U+{ord(value[e.start]):04X} at character {e.start}")
    if not blank_ok and not value.strip():
        raise _Bad(f"empty_field: {name}")
    return value


def convert(source: "PromptSource", number: int, record: dict | str) -> dict | str:
    """One record (or a reader's reason) → a prompt row, or the reason it is bad."""
    if isinstance(record, str):
        return record
    if source.kind == "synthetic":  # the generator's own field names
        source = source.model_copy(update={"id_field": "prompt_id", "reference_field": "reference"})
    try:
        prompt = _text(record, source.prompt_field, required=True)
        if not prompt.strip():
            raise _Bad(f"empty_prompt: {source.prompt_field}")
        given_id = _text(record, source.id_field, required=True, numbers=(int,), blank_ok=False)
        reference = _text(record, source.reference_field, required=False, numbers=(int, float))
        if reference is not None and source.reference_format == "gsm8k":
            match = _GSM8K_ANSWER.search(reference)
            if not match:
                raise _Bad(f"bad_reference: no '####' in {source.reference_field}")
            reference = match.group(1).replace(",", "")
        code = source.task == "code"  # blank tests could never verify a code sample
        tests = _text(record, source.tests_field, required=code, blank_ok=not code)
        entry_point = _text(record, source.entry_point_field, required=False)
    except _Bad as bad:
        return str(bad)
    return {
        "prompt_id": given_id or content_id(source.task, prompt),
        "task": source.task,
        "prompt": prompt,
        "reference": reference,
        "tests": tests,
        "entry_point": entry_point,
        "source": source.name,
        "source_row": number,
    }
