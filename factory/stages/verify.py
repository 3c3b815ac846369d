"""Verify stage: rule-based verdicts (math, logic, code) and the format check on sample rows.

Contract:
- Input rows follow ``factory.schema.SAMPLE_SCHEMA``; the stage reads ``task``, ``prompt``,
  ``completion``, ``answer``, ``reference``, ``tests``, ``entry_point``, ``gen_status`` and adds
  ``verdict``, ``verifier`` (``name@version``), ``verdict_detail`` and ``format_ok``; one row out per
  row in (checked).
- Rows with ``gen_status != "ok"`` are not scored: all four columns are null.
- ``math`` and ``logic`` rows go to ``MathVerifier`` (math-verify in a child process with a per-sample
  limit); ``code`` rows run their tests in the sandbox (``factory.verifiers.sandbox``), as subprocesses
  of the worker, at most ``max_parallel_sandboxes`` at a time, never inside the Ray worker itself.
  A task with no verifier gets verdict ``error``. Timeouts and infrastructure failures are
  ``timeout``/``error`` verdicts, never ``wrong``.
- :class:`VerifyStage` runs the callable as Ray tasks (not actors) with ``num_cpus_per_task`` each;
  every batch logs its rows and samples/s.
Not covered: retries (an ``error`` verdict is final for this run; rerun the stage), GPU checks.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pyarrow as pa
from pydantic import field_validator

from factory.pipeline import Stage, StageOutput
from factory.verifiers.sandbox import SandboxLimits
from factory.sections import Section

log = logging.getLogger(__name__)
OUTPUT_FIELDS = [
    pa.field("verdict", pa.string()),
    pa.field("verifier", pa.string()),
    pa.field("verdict_detail", pa.string()),
    pa.field("format_ok", pa.bool_()),
]
INPUT_COLUMNS = ("task", "prompt", "completion", "answer", "reference", "tests", "entry_point", "gen_status")
_UIDS_PER_PROCESS_SLOT = 10000


class VerifyConfig(Section):
    """Rule-based verification of teacher samples."""

    math_timeout_s: float = 5.0
    """Per-sample limit for math-verify; sympy can hang on adversarial expressions (e.g. towers of powers)."""
    code_limits: SandboxLimits = SandboxLimits()
    """Limits of one sandboxed test run (wall clock, CPU, memory, processes, file size, scratch)."""
    sandbox: Literal["auto", "bwrap", "unshare"] = "auto"
    """Isolation tool; auto prefers bwrap, falls back to unshare; none working makes every code verdict error."""
    sandbox_python: str | None = None
    """Interpreter for candidate code (stdlib only); default: the base Python of the running venv."""
    sandbox_uid_base: int = 61000
    """First uid sandboxes run as; RLIMIT_NPROC only binds non-root uids, one per parallel slot."""
    max_parallel_sandboxes: int = 2
    """Sandboxes one task runs at once; a sandbox uses about one core."""
    num_cpus_per_task: float = 1.0
    """CPUs Ray reserves per verify task; raise with max_parallel_sandboxes on code-heavy data."""
    batch_size: int = 64
    """Rows per Ray task; larger batches amortise the math worker start (~0.5 s) per task."""

    @field_validator("math_timeout_s", "num_cpus_per_task")
    @classmethod
    def _positive_float(cls, value: float, info) -> float:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be > 0")
        return value

    @field_validator("max_parallel_sandboxes", "batch_size", "sandbox_uid_base")
    @classmethod
    def _positive_int(cls, value: int, info) -> int:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be > 0")
        return value


class Verify:
    """``map_batches`` callable (``batch_format="pyarrow"``): adds the verdict columns (module doc)."""

    def __init__(self, cfg: VerifyConfig, think_prefilled: bool = True):
        self.cfg = cfg
        self.think_prefilled = think_prefilled
        self._math = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_math": None}  # the math worker process stays with its owner

    def __call__(self, table: pa.Table) -> pa.Table:
        from factory.think import format_ok, split_completion
        from factory.verifiers import VerdictResult

        started = time.monotonic()
        rows = table.select(list(INPUT_COLUMNS)).to_pylist()
        verdicts: list[VerdictResult | None] = [None] * len(rows)
        code_rows = []
        for index, row in enumerate(rows):
            if row["gen_status"] != "ok":
                continue
            if row["answer"] is None and row["completion"] is not None:
                row["answer"] = split_completion(row["completion"])[1]
            if row["task"] == "code":
                code_rows.append(index)
            elif row["task"] in ("math", "logic"):
                verdicts[index] = self._math_verifier()(row["answer"], row["reference"])
            else:
                verdicts[index] = VerdictResult("error", "none", "0", f"no verifier for task {row['task']!r}")
        for index, verdict in zip(code_rows, self._run_code([rows[i] for i in code_rows])):
            verdicts[index] = verdict
        columns = {
            "verdict": [v.status if v else None for v in verdicts],
            "verifier": [v.verifier_id if v else None for v in verdicts],
            "verdict_detail": [_detail(v) if v else None for v in verdicts],
            "format_ok": [format_ok(r["completion"], self.think_prefilled) if v else None
                          for r, v in zip(rows, verdicts)],
        }
        out = table
        for field in OUTPUT_FIELDS:
            array = pa.array(columns[field.name], field.type)
            if field.name in out.column_names:
                out = out.set_column(out.column_names.index(field.name), field, array)
            else:
                out = out.append_column(field, array)
        if out.num_rows != table.num_rows:
            raise RuntimeError(f"verify stage returned {out.num_rows} rows for {table.num_rows}")
        elapsed = time.monotonic() - started
        log.info("verify: %d rows (%d math/logic, %d code) in %.2fs, %.1f samples/s", table.num_rows,
                 sum(v is not None for v in verdicts) - len(code_rows), len(code_rows), elapsed,
                 table.num_rows / max(elapsed, 1e-9))
        return out

    def _math_verifier(self):
        if self._math is None:
            from factory.verifiers import MathVerifier

            self._math = MathVerifier(self.cfg.math_timeout_s)
        return self._math

    def _run_code(self, rows: list[dict]) -> list:
        """Verdicts of code rows, ``max_parallel_sandboxes`` sandboxes at a time, each on its own uid."""
        if not rows:
            return []
        from factory.verifiers import verify_code

        cfg, limits = self.cfg, self.cfg.code_limits
        # distinct uid ranges for concurrent worker processes on one node (pids are unique per node)
        uid_base = cfg.sandbox_uid_base + (os.getpid() % _UIDS_PER_PROCESS_SLOT) * cfg.max_parallel_sandboxes
        free_slots: queue.Queue = queue.Queue()
        for slot in range(cfg.max_parallel_sandboxes):
            free_slots.put(slot)

        def run_one(row: dict):
            slot = free_slots.get()
            try:
                return verify_code(row["answer"], row["tests"], row["entry_point"], prompt=row["prompt"],
                                   limits=limits, mode=cfg.sandbox, python=cfg.sandbox_python,
                                   uid_base=uid_base, slot=slot)
            finally:
                free_slots.put(slot)

        with ThreadPoolExecutor(max_workers=cfg.max_parallel_sandboxes) as pool:
            return list(pool.map(run_one, rows))

    def __del__(self) -> None:
        if self._math is not None:
            self._math.close()


def _detail(verdict) -> str:
    return f"[{verdict.code_status}] {verdict.detail}" if verdict.code_status else verdict.detail


class VerifyStage(Stage):
    """Rule-based verdicts and the format check, as Ray tasks (see the module docstring)."""

    name = "verify"
    section = "verify"
    requires = INPUT_COLUMNS
    adds = tuple(field.name for field in OUTPUT_FIELDS)

    def apply(self, ds) -> StageOutput:
        cfg = self.config
        verifier = Verify(cfg, self.cfg.generation.prompting.force_think)
        return StageOutput(self.map_batches(ds, verifier, batch_size=cfg.batch_size, num_cpus=cfg.num_cpus_per_task,
                                            udf_modifying_row_count=False))
