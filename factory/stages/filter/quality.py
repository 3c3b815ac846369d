"""Reasoning-trace quality filters: small pure checks, composed row by row in :class:`QualityFilter`.

Each check takes a row's values and returns a drop reason or ``None``. :class:`QualityFilter` runs,
for each row whose ``drop_reason`` is still null (rows an upstream stage failed on were already
dropped by :mod:`factory.stages.filter.infra`), the quality checks (``drop_stage = "quality"``),
first reason wins, in this order: ``truncated`` (``finish_reason == "length"``), think format
(:func:`factory.think.format_problem`: ``unopened_think``, ``unclosed_think``, ``bad_think_format``,
``empty_reasoning``), ``missing_answer``, length bounds (``too_short`` / ``too_long``),
``word_repetition`` / ``char_repetition``. Language mixing is its own stage
(:mod:`factory.stages.filter.language`).

Length outliers use fixed per-row bounds on ``completion_tokens``, not k MADs of the run: a row's
fate then depends only on the row and the config, so partial reruns and incremental snapshots
decide it the same way.
Not covered: semantic quality, answer correctness (verifiers), style.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
from pydantic import field_validator, model_validator

from factory.pipeline import Stage, StageOutput
from factory.rows import mark_drops, values
from factory.sections import Section
from factory.think import format_problem, split_completion

class QualityConfig(Section):
    """Reasoning-trace quality filters; a ``None`` threshold turns that check off."""

    drop_truncated: bool = True
    """A generation cut at max_tokens has no finished reasoning or answer to learn from."""
    check_think_format: bool = True
    """The student learns the <think>…</think> format; malformed traces teach it wrong."""
    require_answer: bool = True
    """A trace with nothing after </think> teaches reasoning that never concludes."""
    min_completion_tokens: int | None = None
    """Suspiciously short traces (no real reasoning) are dropped below this many tokens."""
    max_completion_tokens: int | None = None
    """Overlong traces (rambling, costly to train on) are dropped above this many tokens."""
    word_ngram: int = 4
    """Word n-gram size of the repetition check."""
    max_repeated_word_ngram_share: float | None = 0.5
    """Degenerate loops repeat the same phrases: drop when this share of word n-grams are repeats."""
    char_ngram: int = 10
    """Character n-gram size; catches loops in text without spaces (CJK, formulas)."""
    max_repeated_char_ngram_share: float | None = 0.7
    """Drop when this share of character n-grams are repeats (set above the word check: prose reuses substrings)."""

    @field_validator("word_ngram", "char_ngram")
    @classmethod
    def _positive(cls, value: int, info) -> int:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be > 0")
        return value

    @field_validator("max_repeated_word_ngram_share", "max_repeated_char_ngram_share")
    @classmethod
    def _share(cls, value: float | None, info) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{info.field_name} must be within [0, 1]")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> "QualityConfig":
        low, high = self.min_completion_tokens, self.max_completion_tokens
        if low is not None and high is not None and low > high:
            raise ValueError("min_completion_tokens must be <= max_completion_tokens")
        return self


def truncated(finish_reason: str | None) -> str | None:
    """``truncated`` when generation stopped at the token limit."""
    return "truncated" if finish_reason == "length" else None


def length_outlier(completion_tokens: int | None, low: int | None, high: int | None) -> str | None:
    """``too_short``/``too_long`` against fixed bounds (either may be ``None``; null counts pass)."""
    if completion_tokens is None:
        return None
    if low is not None and completion_tokens < low:
        return "too_short"
    if high is not None and completion_tokens > high:
        return "too_long"
    return None


@functools.cache
def word_characters() -> np.ndarray:
    """Every code point but those ``str.isspace`` (and so ``str.split()``) treats as whitespace (none lies above
    U+3000), as the kernel's word table; built on first use, once per process."""
    table = np.ones(0x110000, dtype=np.bool_)
    table[:0x3001] = [not chr(c).isspace() for c in range(0x3001)]
    return table


def repeated_shares(text: str, word_ngram: int, char_ngram: int) -> tuple[float, float]:
    """The share of the word n-grams (``str.split()``'s words) and of the character n-grams of ``text`` that
    repeat an earlier one, each 0 for an n of 0 or fewer than n units: one numba pass with hash sets
    (:mod:`factory.stages.filter.repetition_kernel`; ``benchmarks/bench_quality.py`` measures it against the
    exact set of n-gram tuples)."""
    from factory.stages.filter.repetition_kernel import repeated_shares as kernel  # numba: not at `import factory`

    return kernel(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), word_characters(), word_ngram, char_ngram)


class QualityFilter:
    """Callable for ``map_batches(batch_format="pyarrow")``: marks quality drops (see the module
    docstring); one row out per row in, no row removed."""

    def __init__(self, cfg: QualityConfig, think_prefilled: bool = True):
        self.cfg = cfg
        self.think_prefilled = think_prefilled

    def quality_reason(self, completion: str, finish_reason, completion_tokens) -> str | None:
        """First quality reason for one row, or ``None`` if it passes every enabled check."""
        cfg = self.cfg
        if cfg.drop_truncated and (reason := truncated(finish_reason)):
            return reason
        problem = format_problem(completion, self.think_prefilled)
        if cfg.check_think_format and problem not in (None, "missing_answer"):
            return problem
        if cfg.require_answer and not split_completion(completion)[1]:
            return "missing_answer"
        if reason := length_outlier(completion_tokens, cfg.min_completion_tokens, cfg.max_completion_tokens):
            return reason
        word_limit, char_limit = cfg.max_repeated_word_ngram_share, cfg.max_repeated_char_ngram_share
        if word_limit is None and char_limit is None:
            return None
        word_share, char_share = repeated_shares(completion, cfg.word_ngram if word_limit is not None else 0,
                                                 cfg.char_ngram if char_limit is not None else 0)
        if word_limit is not None and word_share > word_limit:
            return "word_repetition"
        if char_limit is not None and char_share > char_limit:
            return "char_repetition"
        return None

    def __call__(self, table: pa.Table) -> pa.Table:
        out = table
        columns = zip(
            values(out, "drop_reason"),
            values(out, "completion"),
            values(out, "finish_reason"),
            values(out, "completion_tokens"),
            strict=True,
        )
        reasons = [
            None if dropped is not None else self.quality_reason(completion or "", finish, tokens)
            for dropped, completion, finish, tokens in columns
        ]
        out = mark_drops(out, reasons, Quality.name)
        if out.num_rows != table.num_rows:
            raise RuntimeError(f"quality filter returned {out.num_rows} rows for {table.num_rows}")
        return out


class Quality(Stage):
    """Per-row quality checks of the reasoning trace (module docstring)."""

    name = "quality"
    section = "filter.quality"
    requires = ("completion", "finish_reason", "completion_tokens", "drop_reason", "drop_stage")
    adds = ("drop_reason", "drop_stage")

    def apply(self, ds) -> StageOutput:
        check = QualityFilter(self.config, self.cfg.generation.prompting.force_think)
        return StageOutput(self.map_batches(ds, check, udf_modifying_row_count=False))
