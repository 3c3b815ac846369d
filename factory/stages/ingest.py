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
- Where it runs. A JSONL or Parquet file of at least ``ray_min_bytes`` (:data:`RAY_MIN_BYTES`), read
  while Ray is up and without ``limit``, is read and validated in Ray Data tasks
  (:mod:`factory.stages.ingest_ray`): its rows stay in the object store, and the driver holds only
  ``prompt_id``, row number and problem per row (O(N x id): the duplicate-id step below and the
  problem list need them). Every other source (small files, ``limit`` — a prefix, read until it is
  full —, HF ``save_to_disk`` directories, the synthetic task, or no Ray) is read on the driver,
  streaming the file once in batches, accepted rows packed into Arrow batches as they come. Both
  paths apply the same per-row rules (:mod:`factory.stages.ingest_rows`) and name the same rows.
- Duplicate ids are one global step on the driver, in source order then row order: the first
  accepted row of an id wins, later ones are ``duplicate_id`` naming it. Nothing is written.
Not covered: a prompt set too large for one driver's id dictionary (~150 B per prompt: ~1.5 GB at
10M prompts) — the duplicate step would become a Ray Data groupby by ``prompt_id``.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import pyarrow as pa
from pydantic import model_validator

from factory.data_files import resolve
from factory.schema import PROMPT_SCHEMA
from factory.sections import Section
from factory.stages.ingest_rows import (READ_BATCH_ROWS, ROW_PROBLEMS, Unreadable, content_id, convert, open_table,
                                        rows_batches, rows_jsonl)

__all__ = ["READ_BATCH_ROWS", "RAY_MIN_BYTES", "ROW_PROBLEMS", "IngestResult", "PromptSource", "PromptValidationError",
           "PromptsConfig", "content_id", "heldout_prompts", "ingest"]
TaskType = Literal["math", "code", "logic"]
RAY_MIN_BYTES = 64 * 2**20
"""Files at least this large are read and validated in Ray Data tasks (module docstring)."""


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
    synthetic_context_chars: int = 0
    """Synthetic source: characters of unrelated prose before each question (a long document makes a long
    prompt): near the engine's ``max_model_len`` the chain has too little room left and is cut."""

    @model_validator(mode="after")
    def _check(self) -> "PromptSource":
        if self.kind == "synthetic":
            if self.synthetic_n <= 0:
                raise ValueError("synthetic_n must be > 0 for a synthetic source")
            if self.synthetic_context_chars < 0:
                raise ValueError("synthetic_context_chars must be >= 0")
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


@dataclass
class IngestResult:
    """The validated prompts plus what was skipped and why."""

    parts: list = field(default_factory=list)
    """One per source with rows: a pyarrow Table (read on the driver) or a Ray Dataset (read in Ray Data)."""
    num_rows: int = 0
    tasks: set = field(default_factory=set)
    """The task types of the accepted rows (each source has one)."""
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def data(self):
        """All prompts: a pyarrow Table when every source was read on the driver, else one Ray Dataset."""
        tables = [part for part in self.parts if isinstance(part, pa.Table)]
        if len(tables) == len(self.parts):
            return pa.concat_tables(tables) if tables else PROMPT_SCHEMA.empty_table()
        import ray

        datasets = [ray.data.from_arrow(part) if isinstance(part, pa.Table) else part for part in self.parts]
        return datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]

    @property
    def table(self) -> pa.Table:
        """All prompts as one in-memory table, in source then row order (for small sets: held-out sets,
        tests; the flow uses :attr:`data`)."""
        from factory.rows import collect

        tables = [part if isinstance(part, pa.Table) else collect(part).sort_by("source_row") for part in self.parts]
        return pa.concat_tables(tables).cast(PROMPT_SCHEMA) if tables else PROMPT_SCHEMA.empty_table()


class _Ledger:
    """The global part of validation, in source then row order: the first accepted row of every id, the
    problems in order and the skip counts. Holds one small int per accepted id, never text."""

    def __init__(self, names: list[str]):
        self.names, self.seen, self.problems, self.skipped = names, {}, [], Counter()

    def admit(self, index: int, number: int, prompt_id: str | None, problem: str | None) -> bool:
        """Whether row ``number`` of source ``index`` is accepted (``problem``: its own, or None)."""
        if problem is None and prompt_id in self.seen:
            first = self.seen[prompt_id]
            problem = f"duplicate_id: {prompt_id} (first at {self.names[first >> 40]} row {first & (2**40 - 1)})"
        if problem is not None:
            self.problems.append(f"{self.names[index]} row {number}: {problem}")
            self.skipped["ingest:" + problem.split(":", 1)[0]] += 1
            return False
        self.seen[prompt_id] = index << 40 | number
        return True


def _records(source: PromptSource, path: Path | None) -> Iterator[tuple[int, dict | str]]:
    if source.kind == "synthetic":
        from factory import synthetic

        problems = synthetic.make_problems(source.synthetic_n, source.synthetic_seed, source.synthetic_split)
        for row in problems:  # ids follow the final text (unchanged text: the same id)
            if source.synthetic_reword:
                row["prompt"] = synthetic.reword(row["prompt"], source.synthetic_seed)
            if source.synthetic_context_chars:
                row["prompt"] = synthetic.with_context(row["prompt"], source.synthetic_context_chars, source.synthetic_seed)
            row["prompt_id"] = synthetic.prompt_id(row["prompt"])
        return rows_batches(iter(pa.Table.from_pylist(problems).to_batches()))
    if source.kind == "jsonl":
        return rows_jsonl(path)
    try:
        batches = open_table(source, path)
    except Exception as e:  # not Parquet / not a save_to_disk directory: the whole source is unreadable
        raise Unreadable(f"unreadable_source: {type(e).__name__}: {e}") from e
    return rows_batches(batches)


def _on_driver(source: PromptSource, index: int, path: Path | None, ledger: _Ledger) -> tuple[pa.Table, int]:
    """Read and validate one source in this process (small files, prefixes, HF, synthetic)."""
    batches: list[pa.RecordBatch] = []
    pending: list[dict] = []
    taken = 0
    for number, record in _records(source, path):
        if source.limit is not None and taken >= source.limit:
            break
        row = convert(source, number, record)
        problem = row if isinstance(row, str) else None
        if not ledger.admit(index, number, None if problem else row["prompt_id"], problem):
            continue
        pending.append(row)
        taken += 1
        if len(pending) == READ_BATCH_ROWS:
            batches.append(pa.RecordBatch.from_pylist(pending, schema=PROMPT_SCHEMA))
            pending = []
    batches.append(pa.RecordBatch.from_pylist(pending, schema=PROMPT_SCHEMA))
    return pa.Table.from_batches(batches, schema=PROMPT_SCHEMA), taken


def _in_ray(source: PromptSource, index: int, path: Path, ledger: _Ledger, chunk_bytes: int):
    """Read and validate one large file in Ray Data tasks; only ids, row numbers and problems come here."""
    from factory.stages import ingest_ray

    checked = ingest_ray.read_source(source, path, chunk_bytes)
    rejected, taken = [], 0
    for number, prompt_id, problem in ingest_ray.keys(checked):
        if problem is not None and problem.startswith("unreadable_source"):
            raise Unreadable(problem)
        if ledger.admit(index, number, prompt_id, problem):
            taken += 1
        elif problem is None:
            rejected.append(number)  # a duplicate id: the task could not know
    return ingest_ray.accepted(checked, rejected), taken


def _uses_ray(source: PromptSource, path: Path | None, ray_min_bytes: float) -> bool:
    if source.kind not in ("jsonl", "parquet") or source.limit is not None:
        return False
    if "ray" not in sys.modules or path.stat().st_size < ray_min_bytes:
        return False
    import ray

    return ray.is_initialized()


def ingest(cfg: PromptsConfig, *, ray_min_bytes: float | None = None, chunk_bytes: int | None = None) -> IngestResult:
    """Read and validate every source (see the module docstring). Raises PromptValidationError
    (mode ``fail``, or an unreadable source) or skips bad rows with counted reasons (mode ``skip``).
    ``ray_min_bytes``: None is :data:`RAY_MIN_BYTES` (read at call time), ``math.inf`` reads every source
    on the driver; ``chunk_bytes``: bytes per Ray Data task (None: ``ingest_ray.CHUNK_BYTES``)."""
    from factory.stages.ingest_ray import CHUNK_BYTES

    ray_min_bytes = RAY_MIN_BYTES if ray_min_bytes is None else ray_min_bytes
    ledger = _Ledger([source.name for source in cfg.sources])
    result = IngestResult(skipped=ledger.skipped, problems=ledger.problems)
    for index, source in enumerate(cfg.sources):
        path = None
        if source.kind != "synthetic":
            path = resolve(source.path)
            if not path.exists():
                raise FileNotFoundError(f"prompt source {source.name!r}: {path} does not exist")
        try:
            if _uses_ray(source, path, ray_min_bytes):
                part, taken = _in_ray(source, index, path, ledger, chunk_bytes or CHUNK_BYTES)
            else:
                part, taken = _on_driver(source, index, path, ledger)
        except Unreadable as unreadable:
            raise PromptValidationError(ledger.problems + [f"{source.name}: {unreadable}"]) from unreadable.__cause__
        if taken:
            result.parts.append(part)
            result.num_rows += taken
            result.tasks.add(source.task)
    if ledger.problems and cfg.on_bad_row == "fail":
        raise PromptValidationError(ledger.problems)
    return result


def heldout_prompts(cfg) -> pa.Table:
    """The rows of a run's held-out eval sets (``cfg.eval.heldout``), validated like any prompt set:
    what evaluation scores and what decontamination keeps out of training."""
    return ingest(PromptsConfig(sources=cfg.eval.heldout, on_bad_row=cfg.prompts.on_bad_row)).table
