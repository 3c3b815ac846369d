"""Prompt ingestion: JSONL(.gz) / Parquet / local HF ``datasets`` directories / the synthetic task
→ one validated Arrow table (``factory.schema.PROMPT_SCHEMA``) with stable ids.

Contract:
- ``prompt_id`` is the id the file gives (``id_field``) or ``"p-" + sha1(task, prompt)[:16]``, so the
  same prompt gets the same id in every run and every refresh.
- Bad rows (invalid UTF-8 or JSON, empty prompt, missing field, duplicate id) are collected with the
  source name and 1-based row number. With ``on_bad_row: fail`` the run stops before any Ray work
  with a :class:`PromptValidationError` listing them; with ``skip`` they are left out and counted
  per reason (``ingest:<reason>``) for the manifest.
- Ingestion runs on the driver, streaming each file once; it is meant for prompt sets up to a few
  million rows (prompts are small). Nothing is written by this stage.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import pyarrow as pa
from pydantic import model_validator

from factory.schema import PROMPT_SCHEMA
from factory.sections import Section

TaskType = Literal["math", "code", "logic"]
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


class PromptSource(Section):
    """One prompt set."""

    name: str
    """Recorded in each row's ``source`` column and in error messages."""
    kind: Literal["jsonl", "parquet", "hf_disk", "synthetic"]
    """File format; ``hf_disk`` is a directory written by ``datasets.save_to_disk``."""
    path: str | None = None
    """File or directory (relative paths resolve against the working directory); unused for synthetic."""
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
    """Raised before any generation when bad rows are found and ``on_bad_row`` is ``fail``."""

    def __init__(self, problems: list[str]):
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad prompt row(s):\n  {shown}{more}")
        self.problems = problems


@dataclass
class IngestResult:
    """The validated prompts plus what was skipped and why."""

    table: pa.Table
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def content_id(task: str, prompt: str) -> str:
    """Stable id of a prompt that has none: a hash of its task and text."""
    return "p-" + hashlib.sha1(f"{task}\0{prompt}".encode()).hexdigest()[:16]


def _rows_jsonl(path: Path) -> Iterator[tuple[int, dict | str]]:
    """Yield (row number, record) or (row number, error text) without stopping at a bad line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield number, f"invalid_utf8: {e.reason} at byte {e.start}"
                continue
            except json.JSONDecodeError as e:
                yield number, f"invalid_json: {e.msg}"
                continue
            yield number, record if isinstance(record, dict) else "invalid_json: not an object"


def _rows_table(table: pa.Table) -> Iterator[tuple[int, dict | str]]:
    for number, record in enumerate(table.to_pylist(), start=1):
        yield number, record


def _records(source: PromptSource) -> Iterator[tuple[int, dict | str]]:
    if source.kind == "synthetic":
        from factory import synthetic

        problems = synthetic.make_problems(source.synthetic_n, source.synthetic_seed, source.synthetic_split)
        return _rows_table(pa.Table.from_pylist(problems))
    path = Path(source.path)
    if not path.exists():
        raise FileNotFoundError(f"prompt source {source.name!r}: {path} does not exist")
    if source.kind == "jsonl":
        return _rows_jsonl(path)
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        return _rows_table(pq.read_table(path))
    from datasets import load_from_disk  # hf_disk

    return _rows_table(load_from_disk(str(path)).data.table)


def _text(record: dict, name: str | None) -> str | None:
    value = record.get(name) if name else None
    return None if value is None else str(value)


def _convert(source: PromptSource, number: int, record: dict) -> dict | str:
    """One record → a prompt row, or the reason it is bad."""
    if source.kind == "synthetic":  # the generator's own field names
        source = source.model_copy(update={"id_field": "prompt_id", "reference_field": "reference"})
    if source.prompt_field not in record:
        return f"missing_field: {source.prompt_field}"
    prompt = record[source.prompt_field]
    if not isinstance(prompt, str) or not prompt.strip():
        return f"empty_prompt: {source.prompt_field}"
    reference = _text(record, source.reference_field)
    if source.reference_field and source.reference_field not in record:
        return f"missing_field: {source.reference_field}"
    if reference is not None and source.reference_format == "gsm8k":
        match = _GSM8K_ANSWER.search(reference)
        if not match:
            return f"bad_reference: no '####' in {source.reference_field}"
        reference = match.group(1).replace(",", "")
    if source.task == "code" and source.tests_field and source.tests_field not in record:
        return f"missing_field: {source.tests_field}"
    given_id = _text(record, source.id_field)
    if source.id_field and not given_id:
        return f"missing_field: {source.id_field}"
    return {
        "prompt_id": given_id or content_id(source.task, prompt),
        "task": source.task,
        "prompt": prompt,
        "reference": reference,
        "tests": _text(record, source.tests_field),
        "entry_point": _text(record, source.entry_point_field),
        "source": source.name,
        "source_row": number,
    }


def ingest(cfg: PromptsConfig) -> IngestResult:
    """Read and validate every source. Raises PromptValidationError (mode ``fail``) or skips bad
    rows with counted reasons (mode ``skip``)."""
    rows: list[dict] = []
    seen: dict[str, str] = {}
    problems: list[str] = []
    skipped: Counter = Counter()
    for source in cfg.sources:
        taken = 0
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
            rows.append(row)
            taken += 1
    if problems and cfg.on_bad_row == "fail":
        raise PromptValidationError(problems)
    table = pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA)
    return IngestResult(table=table, skipped=skipped, problems=problems)
