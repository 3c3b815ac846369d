"""Verify stage: rule-based verdicts (math, logic, code) and the format check on sample rows.

Contract:
- Input rows follow ``factory.schema.SAMPLE_SCHEMA``; the stage reads ``task``, ``prompt``,
  ``completion``, ``answer``, ``reference``, ``tests``, ``entry_point``, ``gen_status`` and adds
  ``verdict``, ``verifier`` (``name@version``), ``verdict_detail`` and ``format_ok``; one row out per
  row in (checked).
- Rows with ``gen_status != "ok"`` are not scored: all four columns are null.
- ``logic`` rows whose prompt lists options (or whose reference is a bare option letter) go to the
  multiple-choice verifier (:mod:`factory.verifiers.choice`); other ``logic`` rows and ``math`` rows
  go to ``MathVerifier`` (math-verify in a child process with a per-sample limit); ``code`` rows run
  their tests in the sandbox, through the configured backend
  (``sandbox_backend``): ``local`` runs ``factory.verifiers.sandbox`` as subprocesses of the worker (needs
  root and bubblewrap; at most ``max_parallel_sandboxes`` at a time), ``service`` sends the programs to the
  sandbox service over HTTP (``factory.verifiers.sandbox_client``: bounded concurrency, timeouts,
  retries). A task with no verifier gets verdict ``error``. Timeouts and infrastructure failures are
  ``timeout``/``error`` verdicts, never ``wrong``.
- Start-up check: :func:`check_code_sandbox` runs canary programs through the configured backend and
  raises :class:`SandboxUnavailable` saying why and how to fix it; the flow calls it before generation
  when the prompts hold code tasks.
- Circuit breaker: the stage raises :class:`SandboxCircuitOpen` once the share of ``sandbox_error`` over
  the last ``circuit_breaker.window`` sandbox runs exceeds ``circuit_breaker.max_error_share`` (with at
  least ``min_runs`` runs in the window), instead of dropping the samples. The window is one small Ray
  actor per stage, shared by all verify tasks: a task sees one block, too few runs for a window, and Ray
  does not promise that a worker process outlives a task; one actor call per batch with code rows costs
  far less than the batch. Called without the stage, :class:`Verify` keeps an in-process window.
- ``VerifyConfig.verdict_settings()`` is the part of the config that can change a verdict (all but the
  ``EXECUTION_FIELDS``: service address and client settings, breaker, parallelism, batching, uids).
- :class:`VerifyStage` runs the callable as Ray tasks (not actors) with ``num_cpus_per_task`` each;
  every batch logs its rows and samples/s; its stats count sandbox runs and ``sandbox_error`` results.
Not covered: retries of a whole batch (an ``error`` verdict is final for this run; rerun the stage), GPU checks.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from factory.pipeline import Stage, StageOutput
from factory.sections import Section
from factory.verifiers.sandbox import SandboxLimits
from factory.verifiers.sandbox_breaker import ErrorWindow, SandboxCircuitOpen
from factory.verifiers.sandbox_canary import SandboxUnavailable, check_local, check_service

log = logging.getLogger(__name__)
OUTPUT_FIELDS = [
    pa.field("verdict", pa.string()),
    pa.field("verifier", pa.string()),
    pa.field("verdict_detail", pa.string()),
    pa.field("format_ok", pa.bool_()),
]
INPUT_COLUMNS = ("task", "prompt", "completion", "answer", "reference", "tests", "entry_point", "gen_status")
_UIDS_PER_PROCESS_SLOT = 10000
__all__ = ["EXECUTION_FIELDS", "SandboxCircuitOpen", "SandboxUnavailable", "Verify", "VerifyConfig", "VerifyStage",
           "check_code_sandbox"]


class SandboxServiceConfig(Section):
    """How the verify stage calls the sandbox service (``sandbox_backend: service``)."""

    url: str = Field(pattern=r"^https?://[^/\s]+/?$")
    """Base URL of the service; on Kubernetes the ClusterIP Service of cluster/k8s/sandbox-service.yaml."""
    concurrency: int = Field(8, ge=1)
    """Requests one verify task keeps in flight; the service's slots should cover tasks x this."""
    connect_timeout_s: float = Field(5.0, gt=0)
    """Limit for opening a connection; a dead endpoint fails fast and is retried."""
    timeout_margin_s: float = Field(30.0, gt=0)
    """Added to code_limits.timeout_s per attempt: queueing at the service, sandbox start and teardown."""
    retries: int = Field(3, ge=0)
    """Further attempts after a connection failure, timeout or 5xx; after them the verdict is error."""
    backoff_s: float = Field(0.5, gt=0)
    """First retry delay, doubling per attempt with jitter, so restarting replicas are not stampeded."""


class CircuitBreakerConfig(Section):
    """When the verify stage stops a run because its sandbox is failing (module doc)."""

    max_error_share: float = Field(0.01, ge=0, le=1)
    """Largest tolerated share of sandbox_error among recent sandbox runs; 1 disables the breaker."""
    window: int = Field(1000, ge=1)
    """How many of the most recent sandbox runs the share is taken over."""
    min_runs: int = Field(200, ge=1)
    """Runs the window must hold before it can open, so one early error does not stop a run."""

    @model_validator(mode="after")
    def _min_runs_fit_the_window(self):
        if self.min_runs > self.window:
            raise ValueError(f"min_runs ({self.min_runs}) must be <= window ({self.window})")
        return self


class VerifyConfig(Section):
    """Rule-based verification of teacher samples."""

    math_timeout_s: float = Field(5.0, gt=0)
    """Per-sample limit for math-verify; sympy can hang on adversarial expressions (e.g. towers of powers)."""
    code_limits: SandboxLimits = SandboxLimits()
    """Limits of one sandboxed test run (wall clock, CPU, memory, processes, file size, scratch)."""
    sandbox_backend: Literal["local", "service"] = "local"
    """Where code runs: local subprocesses (needs root and bubblewrap), or the sandbox service over HTTP."""
    sandbox_service: SandboxServiceConfig | None = None
    """The service to call; required with sandbox_backend: service."""
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    """Stops the stage when too many recent sandbox runs are sandbox_error, instead of dropping samples."""
    sandbox: Literal["auto", "bwrap", "unshare"] = "auto"
    """Local backend's isolation tool; auto prefers bwrap, falls back to unshare (the service has its own)."""
    sandbox_python: str | None = None
    """Local backend's interpreter for candidate code (stdlib only); default: the venv's base Python."""
    sandbox_uid_base: int = Field(61000, ge=1)
    """Local backend's first sandbox uid; RLIMIT_NPROC only binds non-root uids, one per parallel slot."""
    max_parallel_sandboxes: int = Field(2, ge=1)
    """Local backend's sandboxes per task at once; a sandbox uses about one core."""
    num_cpus_per_task: float = Field(1.0, gt=0)
    """CPUs Ray reserves per verify task; raise with max_parallel_sandboxes on code-heavy data (local)."""
    max_concurrent_tasks: int | None = Field(None, ge=1)
    """Cap on verify tasks at once (None: as many as CPUs allow); bounds the load on the sandbox service."""
    batch_size: int = Field(64, ge=1)
    """Rows per Ray task; larger batches amortise the math worker start (~0.5 s) per task."""

    def verdict_settings(self) -> dict:
        """The settings that can change a verdict (what a refresh compares to decide whether carried rows are
        re-verified): every field except where and how fast code runs (``EXECUTION_FIELDS``)."""
        return self.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))

    @model_validator(mode="after")
    def _service_needs_its_address(self):
        if self.sandbox_backend == "service" and self.sandbox_service is None:
            raise ValueError("verify.sandbox_service (with its url) is required when verify.sandbox_backend "
                             "is 'service'")
        return self


EXECUTION_FIELDS = ("sandbox_service", "circuit_breaker", "sandbox_uid_base", "max_parallel_sandboxes",
                    "num_cpus_per_task", "max_concurrent_tasks", "batch_size")
"""VerifyConfig fields that decide where and how fast code runs, never a verdict."""


def check_code_sandbox(cfg: VerifyConfig) -> None:
    """Start-up check: run canary programs through ``cfg``'s sandbox backend; raise
    :class:`SandboxUnavailable` (why, and how to fix it) if code cannot be verified. Call it before
    generation whenever code rows are expected."""
    if cfg.sandbox_backend == "service":
        mode = check_service(_client(cfg), cfg.code_limits)
        where = cfg.sandbox_service.url
    else:
        mode = check_local(cfg.code_limits, cfg.sandbox, cfg.sandbox_python, cfg.sandbox_uid_base)
        where = "this process"
    log.info("verify: code sandbox ready (%s backend, %s isolation in %s)", cfg.sandbox_backend, mode, where)


def _client(cfg: VerifyConfig):
    from factory.verifiers.sandbox_client import SandboxClient

    service = cfg.sandbox_service
    return SandboxClient(service.url, service.concurrency, service.connect_timeout_s, service.timeout_margin_s,
                         service.retries, service.backoff_s)


class Verify:
    """``map_batches`` callable (``batch_format="pyarrow"``): adds the verdict columns (module doc).

    ``breaker``: the stage's shared ``ErrorWindow`` actor; without one, an in-process window."""

    def __init__(self, cfg: VerifyConfig, think_prefilled: bool = True, breaker=None):
        self.cfg = cfg
        self.think_prefilled = think_prefilled
        self._breaker = breaker
        bounds = cfg.circuit_breaker
        self._window = (ErrorWindow(bounds.max_error_share, bounds.window, bounds.min_runs) if breaker is None
                        else None)
        self._math = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_math": None}  # the math worker process stays with its owner

    def __call__(self, table: pa.Table) -> pa.Table:
        from factory.think import format_ok, split_completion
        from factory.verifiers import VerdictResult, choice

        started = time.monotonic()
        rows = table.select(list(INPUT_COLUMNS)).to_pylist()
        verdicts: list[VerdictResult | None] = [None] * len(rows)
        code_rows, math_rows = [], []
        for index, row in enumerate(rows):
            if row["gen_status"] != "ok":
                continue
            if row["answer"] is None and row["completion"] is not None:
                row["answer"] = split_completion(row["completion"])[1]
            if row["task"] == "code":
                code_rows.append(index)
            elif row["task"] == "logic" and choice.applies(row["prompt"], row["reference"]):
                verdicts[index] = choice.judge_choice(row["answer"], row["reference"], row["prompt"])
            elif row["task"] in ("math", "logic"):
                math_rows.append(index)
            else:
                verdicts[index] = VerdictResult("error", "none", "0", f"no verifier for task {row['task']!r}")
        if math_rows:  # one pipelined call per batch: the math worker never waits between rows
            judged = self._math_verifier().judge_many([(rows[i]["answer"], rows[i]["reference"]) for i in math_rows])
            for index, verdict in zip(math_rows, judged, strict=True):
                verdicts[index] = verdict
        for index, verdict in zip(code_rows, self._run_code([rows[i] for i in code_rows])):
            verdicts[index] = verdict
        self._check_breaker([verdicts[i] for i in code_rows])
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
        """Verdicts of code rows: programs built here, run by the configured backend."""
        from factory.verifiers.code_verifier import prepare_program, verdict_of_run

        prepared = [prepare_program(row["answer"], row["tests"], row["entry_point"], row["prompt"]) for row in rows]
        to_run = [index for index, item in enumerate(prepared) if isinstance(item, str)]
        if not to_run:
            return prepared
        programs = [prepared[index] for index in to_run]
        if self.cfg.sandbox_backend == "service":
            results = _client(self.cfg).run_many(programs, self.cfg.code_limits)
        else:
            results = self._run_local(programs)
        for index, result in zip(to_run, results):
            prepared[index] = verdict_of_run(result)
        return prepared

    def _run_local(self, programs: list[str]) -> list:
        """``max_parallel_sandboxes`` local sandboxes at a time, each on its own uid."""
        from factory.verifiers.sandbox import run_sandboxed

        cfg = self.cfg
        # distinct uid ranges for concurrent worker processes on one node (pids are unique per node)
        uid_base = cfg.sandbox_uid_base + (os.getpid() % _UIDS_PER_PROCESS_SLOT) * cfg.max_parallel_sandboxes
        free_slots: queue.Queue = queue.Queue()
        for slot in range(cfg.max_parallel_sandboxes):
            free_slots.put(slot)

        def run_one(program: str):
            slot = free_slots.get()
            try:
                return run_sandboxed(program, cfg.code_limits, cfg.sandbox, cfg.sandbox_python, uid_base, slot)
            finally:
                free_slots.put(slot)

        with ThreadPoolExecutor(max_workers=cfg.max_parallel_sandboxes) as pool:
            return list(pool.map(run_one, programs))

    def _check_breaker(self, code_verdicts: list) -> None:
        """Record this batch's sandbox runs in the window; raise :class:`SandboxCircuitOpen` if it is open."""
        errors = [v.code_status == "sandbox_error" for v in code_verdicts if v.code_status is not None]
        if not errors:
            return
        last_error = next((v.detail for v in reversed(code_verdicts) if v.code_status == "sandbox_error"), "")
        if self._breaker is not None:
            import ray

            opened = ray.get(self._breaker.record.remote(errors, last_error))
        else:
            opened = self._window.record(errors, last_error)
        if opened:
            raise SandboxCircuitOpen(f"verify: {opened}")

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

    @classmethod
    def enabled(cls, cfg) -> bool:
        return not cfg.generation.adaptive_mode  # adaptive sampling verified every sample inside its loop

    def apply(self, ds) -> StageOutput:
        import ray

        cfg = self.config
        limits = cfg.circuit_breaker
        breaker = ray.remote(num_cpus=0, max_restarts=0)(ErrorWindow).remote(
            limits.max_error_share, limits.window, limits.min_runs)
        verifier = Verify(cfg, self.cfg.generation.prompting.force_think, breaker)
        extra = {"concurrency": cfg.max_concurrent_tasks} if cfg.max_concurrent_tasks else {}
        out = self.map_batches(ds, verifier, batch_size=cfg.batch_size, num_cpus=cfg.num_cpus_per_task,
                               udf_modifying_row_count=False, **extra)
        return StageOutput(out, _BreakerStats(breaker, cfg.sandbox_backend))


class _BreakerStats:
    """The stage's stats, read from the breaker once the dataset has executed: sandbox runs and errors."""

    def __init__(self, breaker, backend: str):
        self._breaker, self._backend, self._stats = breaker, backend, None

    def __call__(self) -> dict:
        if self._stats is None:
            import ray

            self._stats = {"sandbox_backend": self._backend, **ray.get(self._breaker.summary.remote())}
        return self._stats
