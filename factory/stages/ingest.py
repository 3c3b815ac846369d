"""Prompt ingestion: JSONL(.gz) / Parquet / local HF ``datasets`` directories / the synthetic task
→ one validated Arrow table (``factory.schema.PROMPT_SCHEMA``) with stable ids.

Contract:
- ``prompt_id`` is the id the file gives (``id_field``) or ``"p-" + sha1(task, prompt)[:16]``, so the
  same prompt gets the same id in every run and every refresh.
- No input crashes ingestion. Every bad row is collected with the source name, its 1-based row
  number and a reason that names the problem and the field (:data:`ROW_PROBLEMS`):
  ``invalid_utf8`` / ``invalid_json`` (the line is not UTF-8 JSON), ``not_object`` (valid JSON that
  is not an object), ``missing_field`` (the configured field is absent, or null where a value is
  required: prompt, id, a code task's tests), ``not_text`` (a number, boolean, list, object or
  bytes where text belongs), ``invalid_text`` (text that is not valid Unicode: a lone surrogate
  such as JSON's ``"\\ud800"``), ``empty_prompt`` / ``empty_field`` (blank text), ``bad_reference``
  (a ``gsm8k`` reference without ``####``), ``duplicate_id``. Texts are ``str``; an id or reference
  may also be an integer (and a reference a finite float), taken as its decimal text.
- A UTF-8 byte-order mark at the start of a JSONL file is skipped (as pandas and DuckDB do);
  blank lines are skipped but counted in row numbers.
- With ``on_bad_row: fail`` the run stops before any Ray work with a :class:`PromptValidationError`
  listing the bad rows; with ``skip`` they are left out and counted per reason
  (``ingest:<reason>``) for the manifest. A source that cannot be read at all (not Parquet, a
  corrupt gzip stream, a UTF-16 file, not a ``save_to_disk`` directory) raises :class:`PromptValidationError` in
  either mode (``unreadable_source``), with the row it broke at: skipping the rest of a source is
  never silent. A missing path raises FileNotFoundError naming the source.
- Ingestion runs on the driver, streaming each file once in batches: Parquet and HF sources are
  read one record batch at a time (only the configured columns), and accepted rows are packed into
  Arrow batches as they come, so Python objects exist for one batch at a time. Nothing is written.
Not covered: running ingestion itself in Ray Data (the result is one in-memory Arrow table).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import pyarrow as pa
from pydantic import model_validator

from factory.data_files import resolve
from factory.schema import PROMPT_SCHEMA
from factory.sections import Section

TaskType = Literal["math", "code", "logic"]
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)
ROW_PROBLEMS = ("invalid_utf8", "invalid_json", "not_object", "missing_field", "not_text", "invalid_text",
                "empty_prompt", "empty_field", "bad_reference", "duplicate_id")
"""Every reason a single row can be rejected for (the ``ingest:<reason>`` counter keys)."""
READ_BATCH_ROWS = 8192
"""Rows per record batch read from a Parquet/HF source and per packed batch of accepted rows."""


class PromptSource(Section):
    """One prompt set."""

    name: str
    """Recorded in each row's ``source`` column and in error messages."""
    kind: Literal["jsonl", "parquet", "hf_disk", "synthetic"]
    """File format; ``hf_disk`` is a directory written by ``datasets.save_to_disk``."""
    path: str | None = None
    """File or directory (relative to the working directory) or ``pkg:<package>/<file>``; unused for synthetic."""
    task: TaskType = "math"
    """Decides which verifier scores the samples."""
    prompt_field: str = "prompt"
    """Column holding the problem text."""
    id_field: str | None = None
    """Column with a stable id; when absent the id is a content hash."""
    reference_field: str | None = None
    """Column with the reference answer (math/logic)."""
    reference_format: Literal["raw", "gsm8k"] = "raw"
    """``gsm8k`` takes the text after ``####`` as the reference answer."""
    tests_field: str | None = None
    """Code tasks: column with the test source run against the candidate."""
    entry_point_field: str | None = None
    """Code tasks: column naming the function the tests call."""
    limit: int | None = None
    """Read at most this many rows (for demos and smoke runs)."""
    synthetic_n: int = 0
    """Synthetic source: number of problems to generate."""
    synthetic_split: Literal["train", "heldout"] = "train"
    """Synthetic source: which disjoint split to draw from."""
    synthetic_seed: int = 0
    """Synthetic source: generator seed."""
    synthetic_reword: bool = False
    """Synthetic source: each problem in other words (same operands): with the held-out split and the
    eval set's seed, a planted contamination that decontamination must remove."""

    @model_validator(mode="after")
    def _check(self) -> "PromptSource":
        if self.kind == "synthetic":
            if self.synthetic_n <= 0:
                raise ValueError("synthetic_n must be > 0 for a synthetic source")
        elif not self.path:
            raise ValueError(f"path is required for a {self.kind} source")
        if self.limit is not None and self.limit <= 0:
            raise ValueError("limit must be > 0")
        return self

    def fields(self) -> list[str]:
        """The configured columns, without repeats."""
        names = [self.prompt_field, self.id_field, self.reference_field, self.tests_field, self.entry_point_field]
        return list(dict.fromkeys(name for name in names if name))


class PromptsConfig(Section):
    """Where prompts come from and what to do with bad rows."""

    sources: list[PromptSource]
    """All prompt sets of the run; ids must be unique across them."""
    on_bad_row: Literal["fail", "skip"] = "fail"
    """``fail`` stops before generation; ``skip`` drops bad rows with a counted reason."""

    @model_validator(mode="after")
    def _check(self) -> "PromptsConfig":
        if not self.sources:
            raise ValueError("at least one prompt source is required")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return self


class PromptValidationError(ValueError):
    """Raised before any generation when bad rows are found and ``on_bad_row`` is ``fail``, or when a
    source cannot be read at all (either mode)."""

    def __init__(self, problems: list[str]):
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad prompt row(s):\n  {shown}{more}")
        self.problems = problems


class _Unreadable(Exception):
    """A source's reader failed part-way; ``args[0]`` says where and why."""


@dataclass
class IngestResult:
    """The validated prompts plus what was skipped and why."""

    table: pa.Table
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


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


def _rows_jsonl(path: Path) -> Iterator[tuple[int, dict | str]]:
    """Yield (row number, record) or (row number, reason) without stopping at a bad line."""
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if number == 1 and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise _Unreadable("unreadable_source: the file is UTF-16 (its byte-order mark says so); "
                                      "re-encode it as UTF-8")
                if number == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                if raw.strip():
                    yield number, _parse_line(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise _Unreadable(f"unreadable_source: {type(e).__name__}: {e} (after row {number})") from e


def _rows_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, dict | str]]:
    number = 0
    try:
        for batch in batches:
            for record in batch.to_pylist():
                number += 1
                yield number, record
    except Exception as e:  # any failure of the file reader means the rest of the source is lost
        raise _Unreadable(f"unreadable_source: {type(e).__name__}: {e} (after row {number})") from e


def _records(source: PromptSource) -> Iterator[tuple[int, dict | str]]:
    if source.kind == "synthetic":
        from factory import synthetic

        problems = synthetic.make_problems(source.synthetic_n, source.synthetic_seed, source.synthetic_split)
        if source.synthetic_reword:
            for row in problems:
                row["prompt"] = synthetic.reword(row["prompt"], source.synthetic_seed)
                row["prompt_id"] = synthetic.prompt_id(row["prompt"])
        return _rows_batches(iter(pa.Table.from_pylist(problems).to_batches()))
    path = resolve(source.path)
    if not path.exists():
        raise FileNotFoundError(f"prompt source {source.name!r}: {path} does not exist")
    if source.kind == "jsonl":
        return _rows_jsonl(path)
    try:
        batches = _open_table(source, path)
    except Exception as e:  # not Parquet / not a save_to_disk directory: the whole source is unreadable
        raise _Unreadable(f"unreadable_source: {type(e).__name__}: {e}") from e
    return _rows_batches(batches)


def _open_table(source: PromptSource, path: Path) -> Iterator[pa.RecordBatch]:
    """Record batches of the configured columns that the file has (an absent one is a per-row problem)."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        columns = [name for name in source.fields() if name in parquet.schema_arrow.names]
        return parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns)
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


def _text(record: dict, name: str | None, *, required: bool, numbers: tuple[type, ...] = ()) -> str | None:
    """The text of field ``name`` (None when unconfigured, or null and not ``required``)."""
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
    return value


def _convert(source: PromptSource, number: int, record: dict) -> dict | str:
    """One record → a prompt row, or the reason it is bad."""
    if source.kind == "synthetic":  # the generator's own field names
        source = source.model_copy(update={"id_field": "prompt_id", "reference_field": "reference"})
    try:
        prompt = _text(record, source.prompt_field, required=True)
        if not prompt.strip():
            raise _Bad(f"empty_prompt: {source.prompt_field}")
        given_id = _text(record, source.id_field, required=True, numbers=(int,))
        if given_id is not None and not given_id.strip():
            raise _Bad(f"empty_field: {source.id_field}")
        reference = _text(record, source.reference_field, required=False, numbers=(int, float))
        if reference is not None and source.reference_format == "gsm8k":
            match = _GSM8K_ANSWER.search(reference)
            if not match:
                raise _Bad(f"bad_reference: no '####' in {source.reference_field}")
            reference = match.group(1).replace(",", "")
        tests = _text(record, source.tests_field, required=source.task == "code")
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


def ingest(cfg: PromptsConfig) -> IngestResult:
    """Read and validate every source (see the module docstring). Raises PromptValidationError
    (mode ``fail``, or an unreadable source) or skips bad rows with counted reasons (mode ``skip``)."""
    batches: list[pa.RecordBatch] = []
    pending: list[dict] = []
    seen: dict[str, str] = {}
    problems: list[str] = []
    skipped: Counter = Counter()
    for source in cfg.sources:
        taken = 0
        try:
            for number, record in _records(source):
                if source.limit is not None and taken >= source.limit:
                    break
                row = record if isinstance(record, str) else _convert(source, number, record)
                if isinstance(row, dict) and row["prompt_id"] in seen:
                    row = f"duplicate_id: {row['prompt_id']} (first at {seen[row['prompt_id']]})"
                if isinstance(row, str):
                    problems.append(f"{source.name} row {number}: {row}")
                    skipped["ingest:" + row.split(":", 1)[0]] += 1
                    continue
                seen[row["prompt_id"]] = f"{source.name} row {number}"
                pending.append(row)
                taken += 1
                if len(pending) == READ_BATCH_ROWS:
                    batches.append(pa.RecordBatch.from_pylist(pending, schema=PROMPT_SCHEMA))
                    pending = []
        except _Unreadable as unreadable:
            raise PromptValidationError(problems + [f"{source.name}: {unreadable}"]) from unreadable.__cause__
    if problems and cfg.on_bad_row == "fail":
        raise PromptValidationError(problems)
    batches.append(pa.RecordBatch.from_pylist(pending, schema=PROMPT_SCHEMA))
    return IngestResult(table=pa.Table.from_batches(batches, schema=PROMPT_SCHEMA), skipped=skipped, problems=problems)


def heldout_prompts(cfg) -> pa.Table:
    """The rows of a run's held-out eval sets (``cfg.eval.heldout``), validated like any prompt set:
    what evaluation scores and what decontamination keeps out of training."""
    return ingest(PromptsConfig(sources=cfg.eval.heldout, on_bad_row=cfg.prompts.on_bad_row)).table
