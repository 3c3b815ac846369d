"""``TeacherGeneration``: the ``map_batches`` callable turning a prompts batch into samples (fixed n).

Input: a ``pyarrow.Table`` with PROMPT_SCHEMA's columns. Output: PROMPT_FIELDS + GENERATION_FIELDS,
exactly ``n`` rows per input prompt (sample_index 0..n-1, ``sample_round`` 0), grouped by prompt in
input order. A prompt already in the checkpoint (same gen_key) is served from it; the others are
rendered with the chat template, length-checked, and sent to the engine all at once (the engine
batches them continuously). Per-prompt failures are statuses on the prompt's rows
(``prompt_too_long``, ``engine_error``, with null completion fields); an ``EngineDead`` ends the
actor's process (``os._exit``) so Ray restarts it within ``resources.max_actor_restarts``. The
engine is loaded by the first batch that has a prompt to generate, so a rerun served from the
checkpoint loads none. The request and row building here are shared with the adaptive loop
(:mod:`factory.stages.generate.adaptive`): sample ``i`` of a prompt is drawn with seed
``prompt seed + i`` whichever request draws it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc

from factory import schema
from factory.engines.base import (
    STATUS_OK,
    STATUS_PROMPT_TOO_LONG,
    EngineDead,
    PromptRequest,
    PromptResult,
    Sample,
    SamplingSpec,
    prompt_seed,
)
from factory.prompting import render_prompt
from factory.stages.generate.config import GenerationConfig, gen_key, generation_config_hash
from factory.stages.generate.metrics import device_bytes, peak_rss_bytes
from factory.think import split_completion

log = logging.getLogger(__name__)
SAMPLE_SCHEMA = schema.SAMPLE_SCHEMA


class TeacherGeneration:
    """Callable class for ``map_batches(batch_format="pyarrow")``; one engine per instance."""

    def __init__(self, cfg: GenerationConfig, checkpoint=None, progress=None):
        from transformers import AutoTokenizer

        from factory.models import resolve_model

        self._cfg = cfg
        self._checkpoint = checkpoint
        self._progress = progress
        self._config_hash = generation_config_hash(cfg)
        self._sampling_json = json.dumps(cfg.sampling.model_dump(mode="json"), sort_keys=True)
        model_dir = resolve_model(cfg.engine.model)
        revision = cfg.engine.revision if model_dir == cfg.engine.model else None
        self._tokenizer = AutoTokenizer.from_pretrained(
            model_dir, revision=revision, trust_remote_code=cfg.engine.trust_remote_code
        )
        self._model_dir = model_dir
        # Opened by the first batch with a prompt to generate: a rerun served wholly from the
        # checkpoint (e.g. after a later stage failed) never loads the teacher.
        self._engine = None
        self._engine_start_s: float | None = None  # reported once, with the batch after the start
        self._actor = f"{socket.gethostname()}:{os.getpid()}"
        self._placement = _placement()

    def _open_engine(self) -> None:
        """Load the engine if not yet loaded (synchronous: concurrent batches wait for it)."""
        from factory.engines import open_engine

        if self._engine is None:
            started = time.perf_counter()
            self._engine = open_engine(self._cfg.engine, self._model_dir)
            self._engine_start_s = time.perf_counter() - started

    async def __call__(self, batch: pa.Table) -> pa.Table:
        prompts = schema.conform(batch, schema.PROMPT_SCHEMA).to_pylist()
        keys = [gen_key(self._config_hash, p["prompt"]) for p in prompts]
        todo = [i for i, p in enumerate(prompts) if not self._is_done(p["prompt_id"], keys[i])]
        texts = {i: self._render(prompts[i]) for i in todo}
        if todo:
            self._open_engine()
        started_at = time.time()
        try:
            results = await asyncio.gather(*(self._fixed(prompts[i], keys[i], texts[i]) for i in todo))
        except EngineDead as exc:
            self._engine_dead(exc)
        timing = request_timing(started_at, [(result, latency) for _, result, latency in results]) if todo else {}
        n = self._cfg.sampling.n
        new_rows = {i: self._rows(prompts[i], keys[i], texts[i], tokens, result, n)
                    for i, (tokens, result, _) in zip(todo, results)}
        fresh = pa.Table.from_pylist([r for i in todo for r in new_rows[i]], schema=SAMPLE_SCHEMA)
        if self._checkpoint is not None and fresh.num_rows:
            self._checkpoint.write_shard(fresh)
        parts = [
            pa.Table.from_pylist(new_rows[i], schema=SAMPLE_SCHEMA)
            if i in new_rows
            else self._resumed(prompts[i], keys[i])
            for i in range(len(prompts))
        ]
        out = pa.concat_tables(parts) if parts else SAMPLE_SCHEMA.empty_table()
        self._report(len(prompts), len(prompts) - len(todo), fresh, timing)
        return out

    def _resumed(self, prompt: dict, key: str, schema_: pa.Schema = SAMPLE_SCHEMA) -> pa.Table:
        """A prompt's saved samples, with the prompt columns of *this* run (its reference, source or
        row number may have changed; the gen_key guarantees the same prompt text). Rows saved before
        ``sample_round`` existed are round 0 (a fixed n draws one round)."""
        saved = self._checkpoint.read_prompt(prompt["prompt_id"], key)
        names = [f.name for f in schema.PROMPT_FIELDS]
        generated = saved.drop_columns([n for n in names if n in saved.column_names])
        for field in reversed(schema.PROMPT_FIELDS):
            generated = generated.add_column(0, field, pa.array([prompt[field.name]] * generated.num_rows, field.type))
        out = schema.conform(generated, schema_)
        rounds = out["sample_round"]
        if rounds.null_count:
            out = out.set_column(out.column_names.index("sample_round"), "sample_round",
                                 pc.fill_null(rounds, pa.scalar(0, pa.int32())))
        return out

    def _is_done(self, prompt_id: str, key: str) -> bool:
        return self._checkpoint is not None and self._checkpoint.done(prompt_id, key)

    def _render(self, prompt: dict) -> str:
        return render_prompt(self._tokenizer, prompt["prompt"], prompt["task"], self._cfg.prompting)

    def _token_ids(self, text: str) -> list[int]:
        return self._tokenizer(text, add_special_tokens=False)["input_ids"]

    def _too_long(self, token_ids: list[int], key: str) -> PromptResult | None:
        """A ``prompt_too_long`` result when the prompt leaves no room in the context, else None."""
        limit = self._engine.max_model_len
        if limit is not None and len(token_ids) >= limit:
            return PromptResult(key, STATUS_PROMPT_TOO_LONG, error=f"prompt has {len(token_ids)} tokens, "
                                                                     f"max_model_len is {limit}")
        return None

    def _base_seed(self, prompt: dict, key: str) -> int | None:
        return prompt_seed(self._cfg.sampling.seed, f"{prompt['prompt_id']}:{key}")

    async def _fixed(self, prompt: dict, key: str, text: str) -> tuple[int, PromptResult, float | None]:
        """(prompt tokens, result, seconds the engine took for the request; None if not sent)."""
        token_ids = self._token_ids(text)
        too_long = self._too_long(token_ids, key)
        if too_long is not None:
            return len(token_ids), too_long, None
        result, latency = await self._sample(prompt, key, token_ids, self._cfg.sampling.n, 0)
        return len(token_ids), result, latency

    async def _sample(self, prompt: dict, key: str, token_ids: list[int], n: int,
                      first_index: int) -> tuple[PromptResult, float]:
        """Samples ``first_index .. first_index + n - 1`` of a prompt (one request; the engine draws
        sample j of it with seed + j, so the seed offset makes sample i's seed prompt seed + i)."""
        sampling = self._cfg.sampling
        base = self._base_seed(prompt, key)
        spec = SamplingSpec(n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                            max_tokens=sampling.max_tokens, seed=None if base is None else base + first_index)
        request_id = f"{prompt['prompt_id']}:{key[:12]}:{first_index}:{uuid.uuid4().hex[:8]}"
        sent = time.perf_counter()
        result = await self._engine.generate(PromptRequest(request_id, token_ids, spec))
        return result, time.perf_counter() - sent

    def _rows(self, prompt: dict, key: str, text: str, prompt_tokens: int, result: PromptResult, n: int,
              first_index: int = 0, sample_round: int = 0) -> list[dict]:
        """The ``n`` rows of one request: samples ``first_index ..``, or its failure status on each."""
        base_seed = self._base_seed(prompt, key)
        samples = result.samples if result.status == STATUS_OK else [None] * n
        rows = []
        for offset, sample in enumerate(samples):
            index = first_index + offset
            row = dict(prompt)
            row.update(self._generation_fields(key, index, text, prompt_tokens, result, sample))
            row["sample_id"] = f"{prompt['prompt_id']}:{key[:12]}:{index}"
            row["seed"] = None if base_seed is None else base_seed + index
            row["sample_round"] = sample_round
            rows.append(row)
        return rows

    def _generation_fields(
        self, key: str, index: int, text: str, prompt_tokens: int, result: PromptResult, sample: Sample | None
    ) -> dict:
        engine = self._engine
        fields = {
            "sample_index": index,
            "gen_key": key,
            "prompt_text": text,
            "prompt_tokens": prompt_tokens,
            "gen_status": result.status,
            "gen_error": result.error,
            "teacher_model": self._cfg.engine.model,
            "teacher_revision": self._cfg.engine.revision,
            "backend": engine.backend,
            "backend_version": engine.version,
            "sampling_json": self._sampling_json,
        }
        if sample is not None:
            reasoning, answer = split_completion(sample.text)
            fields.update(
                completion=sample.text,
                reasoning=reasoning,
                answer=answer,
                completion_tokens=sample.completion_tokens,
                finish_reason=sample.finish_reason,
                cumulative_logprob=sample.cumulative_logprob,
            )
        return fields

    def _engine_dead(self, exc: EngineDead) -> None:
        log.error("engine dead, exiting actor so Ray replaces it: %s", exc)
        _exit_process()

    def _report(self, prompts: int, resumed: int, fresh: pa.Table, timing: dict, **extra) -> None:
        if self._progress is None:
            return
        self._progress.report.remote({**batch_report(prompts, resumed, fresh), **self._actor_report(), **timing,
                                      **extra})
        self._engine_start_s = None

    def _actor_report(self) -> dict:
        return {"actor": self._actor, "engine_start_s": self._engine_start_s, "peak_rss_bytes": peak_rss_bytes(),
                "device_bytes": device_bytes(), "placement": self._placement}


def batch_report(prompts: int, resumed: int, fresh: pa.Table) -> dict:
    """The counts of one batch for the progress actor (newly generated rows in ``fresh``)."""
    ok = fresh.filter(pc.equal(fresh["gen_status"], STATUS_OK)) if fresh.num_rows else fresh
    statuses: dict[str, int] = {}
    for status in fresh["gen_status"].to_pylist():
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "prompts": prompts,
        "resumed": resumed,
        "samples": ok.num_rows,
        "output_tokens": int(pc.sum(ok["completion_tokens"]).as_py() or 0) if ok.num_rows else 0,
        "prompt_tokens": int(pc.sum(fresh["prompt_tokens"]).as_py() or 0) if fresh.num_rows else 0,
        "statuses": statuses,
    }


def _placement() -> dict | None:
    """Where this actor runs and what Ray gave it (node, resources, GPU ids); None outside a Ray worker
    (not initialised, or the driver itself, e.g. a test that builds the UDF in its own process)."""
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return None
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "resources": context.get_assigned_resources(),
            "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()]}


def request_timing(started_at: float, sent: list[tuple[PromptResult, float | None]]) -> dict:
    """A batch's span and its requests' latencies, whole and per decode step (latency over the
    longest sample's tokens: n samples decode in parallel), for the progress report."""
    sent = [(result, latency) for result, latency in sent if latency is not None]
    steps = [(latency, max((s.completion_tokens for s in result.samples), default=0)) for result, latency in sent]
    return {
        "started_at": started_at,
        "finished_at": time.time(),
        "latencies_s": [latency for _, latency in sent],
        "token_latencies_s": [latency / tokens for latency, tokens in steps if tokens],
    }


def _exit_process() -> None:
    """Hard exit: Ray sees the actor die unexpectedly and restarts it (bounded by max_restarts)."""
    logging.shutdown()
    os._exit(1)
