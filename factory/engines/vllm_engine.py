"""vLLM backend: one ``AsyncLLM`` per actor, many prompts in flight (continuous batching).

Each prompt is its own request with vLLM's native ``n`` (the n samples share the prompt's prefill
and, with prefix caching, its KV blocks); requests of every batch the actor holds are decoded
together, so one long chain of thought never holds back others. A request vLLM rejects becomes
``engine_error`` for that prompt only; ``EngineDeadError`` (the engine core process died) raises
``EngineDead``. Not covered: multi-node PP placement beyond what vLLM's Ray executor does itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from factory.engines.base import (
    STATUS_ENGINE_ERROR,
    STATUS_OK,
    EngineDead,
    PromptRequest,
    PromptResult,
    Sample,
)
from factory.engines.config import EngineConfig

log = logging.getLogger(__name__)


def engine_kwargs(cfg: EngineConfig, model_dir: str) -> dict:
    """vLLM engine arguments for ``cfg``; shared with the benchmark's raw ``vllm.LLM`` baseline.

    On CPU, chunked prefill is turned off: vLLM 0.32's CPU worker kills the engine ("CPU Generator
    does not use offset") when a prefill of a seeded request is split across steps."""
    from vllm.platforms import current_platform

    return dict(
        enable_chunked_prefill=False if current_platform.is_cpu() else None,
        model=model_dir,
        revision=cfg.revision if model_dir == cfg.model else None,
        trust_remote_code=cfg.trust_remote_code,
        dtype=cfg.dtype,
        tensor_parallel_size=cfg.tensor_parallel_size,
        pipeline_parallel_size=cfg.pipeline_parallel_size,
        distributed_executor_backend="uni" if cfg.num_devices == 1 else "ray",
        max_model_len=cfg.max_model_len,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        max_num_seqs=cfg.max_num_seqs,
        enable_prefix_caching=cfg.enable_prefix_caching,
        enforce_eager=cfg.enforce_eager,
    )


def start_async_llm(args):
    """Start an ``AsyncLLM`` for ``args`` (``AsyncEngineArgs``); its engine core runs in its own process.

    On CPU, vLLM 0.32 turns the one-device ``uni`` executor into ``mp`` (a further worker process
    spawned by the engine core, with its own imports, its OpenMP threads bound to every core of the
    node but one whatever Ray granted, and a shared-memory hop per step) unless
    ``VLLM_ENABLE_V1_MULTIPROCESSING`` is 0. ``AsyncLLM`` runs its engine core in a separate process
    whatever that variable says, so it is 0 only while the engine is configured and its core process
    spawned: the worker then runs inside the engine core, as it does on GPU, with ``OMP_NUM_THREADS``
    threads (Ray sets it to the actor's CPUs; outside Ray, unset, it is taken as the usable cores
    less one, as vLLM's own binding reserves). ``benchmarks/bench_engine_start.py``: start 26 -> 13 s and
    decoding 1.2x on the tiny teacher."""
    from vllm.platforms import current_platform
    from vllm.utils.torch_utils import available_cpu_count
    from vllm.v1.engine.async_llm import AsyncLLM

    from factory.runtime import scoped_environ

    if not (current_platform.is_cpu() and args.distributed_executor_backend == "uni"):
        return AsyncLLM.from_engine_args(args)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, available_cpu_count() - 1))
    with scoped_environ({"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": threads}):
        return AsyncLLM.from_engine_args(args)


class VllmEngine:
    """``factory.engines.base.Engine`` on vLLM's async engine."""

    backend = "vllm"

    def __init__(self, cfg: EngineConfig, model_dir: str):
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs

        self.version = vllm.__version__
        self._llm = start_async_llm(AsyncEngineArgs(**engine_kwargs(cfg, model_dir), disable_log_stats=True))
        self.max_model_len = self._llm.model_config.max_model_len

    async def generate(self, request: PromptRequest) -> PromptResult:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError

        spec = request.sampling
        greedy = spec.temperature == 0
        final = None
        try:
            params = SamplingParams(
                n=1 if greedy else spec.n,  # vLLM refuses n > 1 when greedy: the draws would be equal
                temperature=spec.temperature,
                top_p=spec.top_p,
                max_tokens=spec.max_tokens,
                seed=spec.seed,
                logprobs=0,
                output_kind=RequestOutputKind.FINAL_ONLY,
            )
            stream = self._llm.generate(
                {"prompt_token_ids": request.prompt_token_ids}, params, request.request_id
            )
            async for output in stream:
                final = output
        except EngineDeadError as exc:
            raise EngineDead(f"vLLM engine died: {exc}") from exc
        except Exception as exc:  # a request the engine rejected: this prompt only
            if self._llm.errored:
                raise EngineDead(f"vLLM engine errored: {exc!r}") from exc
            log.warning("vLLM rejected request %s: %r", request.request_id, exc)
            return PromptResult(request.request_id, STATUS_ENGINE_ERROR, error=repr(exc)[:2000])
        if final is None or len(final.outputs) != params.n:
            got = 0 if final is None else len(final.outputs)
            return PromptResult(
                request.request_id, STATUS_ENGINE_ERROR, error=f"vLLM returned {got} of {params.n} samples"
            )
        samples = [
            Sample(
                text=out.text,
                completion_tokens=len(out.token_ids),
                finish_reason=out.finish_reason,
                cumulative_logprob=out.cumulative_logprob,
            )
            for out in sorted(final.outputs, key=lambda o: o.index)
        ]
        if greedy:
            samples = samples * spec.n
        return PromptResult(request.request_id, STATUS_OK, samples)

    def close(self) -> None:
        """Stop the engine once (later calls do nothing). Dropping it here also keeps its
        ``__del__`` from shutting down again at interpreter exit, when its module globals are gone."""
        llm, self._llm = self._llm, None
        if llm is not None:
            shutdown_async_llm(llm)


def shutdown_async_llm(llm) -> None:
    """Shut an ``AsyncLLM`` down quietly: vLLM 0.32's ``shutdown`` stops the engine core before its
    output task, which then logs a spurious EngineDeadError traceback, so the task is cancelled first."""
    _cancel_and_wait(getattr(llm, "output_handler", None))
    llm.shutdown()


def _cancel_and_wait(task: "asyncio.Task | None", timeout_s: float = 5.0) -> None:
    """Cancel ``task`` and, when its loop runs in another thread, wait until it has stopped."""
    if task is None or task.done():
        return
    loop = task.get_loop()
    try:
        running_here = asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop in this thread
        running_here = False
    if running_here or not loop.is_running():
        task.cancel()
        return

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with contextlib.suppress(Exception):  # best effort: shutdown proceeds either way
        asyncio.run_coroutine_threadsafe(cancel(), loop).result(timeout=timeout_s)
