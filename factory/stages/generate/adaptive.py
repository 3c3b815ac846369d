"""``AdaptiveGeneration``: the ``map_batches`` callable of adaptive sampling ("sample until k verified").

Each prompt of a batch runs its own loop inside the actor (asyncio): draw a round, verify it with
the factory's verifiers (:class:`factory.stages.verify.Verify`: math-verify in its worker process,
code in the sandbox), then decide from the verdicts so far (:mod:`factory.stages.generate.policy`)
whether to stop (k verified-correct samples, the per-prompt cap, the run's token budget, a
generation failure) or how many to draw next. There is no barrier between rounds: a prompt is
re-queued as soon as its round is verified, while the engine goes on decoding every other prompt's
requests (of this batch and of the other batches in flight), so it never idles waiting for the
slowest prompt. Rounds of all prompts queued while the verifier is busy are verified together
(:class:`VerifyQueue`, one verifier thread per actor).

Output: PROMPT_FIELDS + GENERATION_FIELDS + the verify columns, every sample drawn for each prompt
(sample_index 0.. in draw order, ``sample_round`` its round), grouped by prompt in input order, each
row with the prompt's ``pass_rate_estimate``. Sample ``i`` is drawn with seed ``prompt seed + i``
whatever the rounds, so rounds drawn again after a crash are the same samples.

Exactly-once resume: finished (verified) rounds are written to the checkpoint at least every
``checkpoint.flush_every_s`` and at the end of each batch; a prompt found there resumes from its
stored rounds (a restarted actor first indexes the shards its predecessor wrote), and the output
holds every stored or new (prompt_id, sample_index) once. Rounds lost with a killed actor are
drawn again with the same seeds. A prompt stopped by the token budget continues in a rerun while
budget is left (resumed rows count against it). Not covered: verifier verdicts that differ between
runs (a math-verify timeout under load) change later round sizes, so with the transformers backend
(whose draws depend on the round's size) a rerun may draw different later samples.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from factory import schema
from factory.engines.base import EngineDead, PromptResult
from factory.stages.generate.config import GenerationConfig, gen_key
from factory.stages.generate.policy import STOP_BUDGET, PromptState, next_round_size, pass_rate_estimate, stop_reason
from factory.stages.generate.udf import TeacherGeneration, request_timing
from factory.stages.verify import OUTPUT_FIELDS, Verify, VerifyConfig

ADAPTIVE_SCHEMA = pa.schema(list(schema.SAMPLE_SCHEMA) + OUTPUT_FIELDS)
"""Rows of the adaptive stage (and of its checkpoint shards): samples with their verdicts."""
_BUDGET_RETRY_S = 0.2


class VerifyQueue:
    """One :class:`Verify` for all of an actor's prompts, on one thread (its math worker serves one
    caller at a time); rounds queued while it runs are verified together by the next call."""

    def __init__(self, verify: Verify):
        self._verify = verify
        self._queue: list[tuple[pa.Table, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")

    async def __call__(self, table: pa.Table) -> pa.Table:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((table, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            items, self._queue = self._queue, []
            try:
                verified = await loop.run_in_executor(
                    self._thread, self._verify, pa.concat_tables([table for table, _ in items]))
            except Exception as exc:  # an infrastructure failure fails the rounds, never scores them
                for _, future in items:
                    future.set_exception(exc)
                continue
            offset = 0
            for table, future in items:
                future.set_result(verified.slice(offset, table.num_rows))
                offset += table.num_rows


class AdaptiveGeneration(TeacherGeneration):
    """Callable class for ``map_batches(batch_format="pyarrow")``: adaptive sampling (module docstring)."""

    def __init__(self, cfg: GenerationConfig, verify: VerifyConfig, checkpoint=None, progress=None):
        super().__init__(cfg, checkpoint, progress)
        self._policy = cfg.adaptive
        self._verify = VerifyQueue(Verify(verify, cfg.prompting.force_think))
        self._pending: list[pa.Table] = []  # verified rounds not yet in the checkpoint
        self._flushed_at = time.monotonic()
        if checkpoint is not None:
            checkpoint.refresh()  # a restarted actor resumes the rounds its predecessor stored

    async def __call__(self, batch: pa.Table) -> pa.Table:
        prompts = schema.conform(batch, schema.PROMPT_SCHEMA).to_pylist()
        keys = [gen_key(self._config_hash, p["prompt"]) for p in prompts]
        started_at = time.time()
        try:
            outcomes = await asyncio.gather(*(self._prompt(p, key) for p, key in zip(prompts, keys)))
        except EngineDead as exc:
            self._flush()  # the rounds verified so far are valid: a restart resumes from them
            self._engine_dead(exc)
        self._flush()
        tables = [outcome.rows for outcome in outcomes]
        out = pa.concat_tables(tables) if tables else ADAPTIVE_SCHEMA.empty_table()
        fresh = [part for outcome in outcomes for part in outcome.fresh]
        fresh_table = pa.concat_tables(fresh) if fresh else ADAPTIVE_SCHEMA.empty_table()
        sent = [request for outcome in outcomes for request in outcome.sent]
        rounds: dict[int, Counter] = {}
        for part in fresh:
            figures = rounds.setdefault(part["sample_round"][0].as_py(), Counter())
            correct = pc.sum(pc.equal(part["verdict"], "correct")).as_py() or 0
            figures.update(prompts=1, samples=part.num_rows, correct=correct,
                           output_tokens=pc.sum(part["completion_tokens"]).as_py() or 0)
        resumed = sum(outcome.resumed and not outcome.fresh for outcome in outcomes)
        self._report(len(prompts), resumed, fresh_table, request_timing(started_at, sent) if sent else {},
                     rounds={n: dict(c) for n, c in rounds.items()},
                     stop_reasons=dict(Counter(outcome.reason for outcome in outcomes)))
        return out

    async def _prompt(self, prompt: dict, key: str) -> "_Outcome":
        """One prompt's loop, from its stored rounds (if any) until :func:`stop_reason` (or the budget)."""
        stored = self._resumed(prompt, key, ADAPTIVE_SCHEMA) if self._is_done(prompt["prompt_id"], key) else None
        parts = [] if stored is None else [stored]
        state = _state(stored)
        reason = stop_reason(state, self._policy)
        fresh, sent = [], []
        too_long = None
        if reason is None:
            self._open_engine()
            text = self._render(prompt)
            token_ids = self._token_ids(text)
            too_long = self._too_long(token_ids, key)
        while reason is None:
            size = next_round_size(state, self._policy)
            if too_long is not None:
                result, latency = too_long, None
            else:
                size = await self._grant(size)
                if size == 0:
                    reason = STOP_BUDGET
                    break
                result, latency = await self._sample(prompt, key, token_ids, size, state.next_index)
                await self._settle(size, result)
            rows = self._rows(prompt, key, text, len(token_ids), result, size, state.next_index, state.rounds)
            verified = schema.conform(await self._verify(pa.Table.from_pylist(rows, schema=schema.SAMPLE_SCHEMA)),
                                      ADAPTIVE_SCHEMA)
            self._keep(verified)
            parts.append(verified)
            fresh.append(verified)
            sent.append((result, latency))
            state = _state(pa.concat_tables(parts))
            reason = stop_reason(state, self._policy)
        return _Outcome(self._with_estimate(parts), fresh, sent, reason, stored is not None)

    def _with_estimate(self, parts: list[pa.Table]) -> pa.Table:
        """The prompt's rows with its pass-rate estimate on each (null without a scored sample)."""
        table = pa.concat_tables(parts) if parts else ADAPTIVE_SCHEMA.empty_table()
        estimate = pass_rate_estimate(table["verdict"].to_pylist(), self._policy.k)
        column = table.column_names.index("pass_rate_estimate")
        return table.set_column(column, "pass_rate_estimate", pa.array([estimate] * table.num_rows, pa.float64()))

    async def _grant(self, size: int) -> int:
        """Samples the token budget allows for this round (0: spent); waits while only in-flight
        rounds' reservations are in the way."""
        if self._policy.token_budget is None:
            return size
        while True:
            granted = await self._progress.reserve.remote(size, self._cfg.sampling.max_tokens)
            if granted >= 0:
                return granted
            await asyncio.sleep(_BUDGET_RETRY_S)

    async def _settle(self, size: int, result: PromptResult) -> None:
        if self._policy.token_budget is not None:
            used = sum(s.completion_tokens or 0 for s in result.samples)
            await self._progress.settle.remote(size, self._cfg.sampling.max_tokens, used)

    def _keep(self, verified: pa.Table) -> None:
        """Queue a verified round for the checkpoint; write the queue when it is due."""
        if self._checkpoint is None:
            return
        self._pending.append(verified)
        if time.monotonic() - self._flushed_at >= self._cfg.checkpoint.flush_every_s:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._flushed_at = time.monotonic()
        if pending and self._checkpoint is not None:
            self._checkpoint.write_shard(pa.concat_tables(pending))


@dataclass
class _Outcome:
    rows: pa.Table
    """All the prompt's rows (stored and new), with its estimate."""
    fresh: list[pa.Table]
    """The rounds drawn by this call."""
    sent: list[tuple[PromptResult, float | None]]
    """Their engine results and latencies (None: not sent)."""
    reason: str
    resumed: bool
    """Whether the prompt had stored rounds."""


def _state(rows: pa.Table | None) -> PromptState:
    if rows is None or rows.num_rows == 0:
        return PromptState()
    return PromptState.of(rows["verdict"].to_pylist(), rows["gen_status"].to_pylist(),
                          rows["sample_round"].to_pylist(), rows["sample_index"].to_pylist())
