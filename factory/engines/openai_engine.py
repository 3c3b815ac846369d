"""OpenAI-compatible HTTP backend (``/v1/completions``), e.g. a ``vllm serve`` fleet behind a router.

The stage renders and tokenizes the prompt locally and sends token ids, so the forced "<think>\\n"
and special tokens are exactly what the local chat template produced (no server-side template).
Covered: ``n`` samples per request, a per-actor concurrency limit, per-request timeouts, bounded
retries with exponential backoff on timeouts / 429 / 5xx, an API key read from the environment
variable named in the config. A 4xx other than 429 is the prompt's fault: ``engine_error`` at once.
A server that stays unreachable through all retries raises ``EngineDead`` (a run must not record
every prompt as failed because the endpoint is down). Not covered: streaming, chat endpoints.
"""

from __future__ import annotations

import asyncio
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
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class OpenAIEngine:
    """``factory.engines.base.Engine`` over HTTP."""

    backend = "openai"

    def __init__(self, cfg: EngineConfig, model_dir: str):
        import aiohttp

        self._cfg = cfg
        self._model = cfg.served_model_name or model_dir
        self._url = cfg.base_url.rstrip("/") + "/completions"
        self._headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ValueError(f"engine.api_key_env: environment variable {cfg.api_key_env} is not set")
            self._headers["Authorization"] = f"Bearer {key}"
        self.version = f"openai-http (aiohttp {aiohttp.__version__})"
        self.max_model_len = cfg.max_model_len
        self._session = None
        self._loop = None
        self._limit = None

    def _ensure_session(self):
        import aiohttp

        if self._session is None:
            self._loop = asyncio.get_running_loop()
            self._limit = asyncio.Semaphore(self._cfg.max_concurrency)
            timeout = aiohttp.ClientTimeout(total=self._cfg.request_timeout_s)
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout)
        return self._session

    async def generate(self, request: PromptRequest) -> PromptResult:
        import aiohttp

        session = self._ensure_session()
        spec = request.sampling
        greedy = spec.temperature == 0
        body = {
            "model": self._model,
            "prompt": request.prompt_token_ids,
            "n": 1 if greedy else spec.n,  # servers refuse n > 1 when greedy: the draws would be equal
            "temperature": spec.temperature,
            "top_p": spec.top_p,
            "max_tokens": spec.max_tokens,
            "logprobs": 0,
            "skip_special_tokens": True,
        }
        if spec.seed is not None:
            body["seed"] = spec.seed
        last_error = ""
        unreachable = False
        for attempt in range(self._cfg.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._cfg.retry_backoff_s * 2 ** (attempt - 1))
            try:
                async with self._limit, session.post(self._url, json=body) as resp:
                    payload = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientConnectionError, ConnectionError) as exc:
                last_error, unreachable = f"connection failed: {exc!r}", True
                continue
            except (asyncio.TimeoutError, aiohttp.ClientError, ValueError) as exc:
                last_error, unreachable = f"request failed: {exc!r}", False
                continue
            unreachable = False
            if status == 200:
                return _result(request, payload, copies=spec.n if greedy else 1)
            last_error = f"HTTP {status}: {str(payload)[:1000]}"
            if status not in RETRYABLE_STATUS:
                break
        if unreachable:
            raise EngineDead(f"endpoint {self._url} unreachable after retries: {last_error}")
        log.warning("request %s failed: %s", request.request_id, last_error)
        return PromptResult(request.request_id, STATUS_ENGINE_ERROR, error=last_error[:2000])

    def close(self) -> None:
        if self._session is None or self._session.closed or self._loop.is_closed():
            return  # a closed loop took its connections with it
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(timeout=10)
        else:
            self._loop.run_until_complete(self._session.close())


def _result(request: PromptRequest, payload: dict, copies: int) -> PromptResult:
    """Samples from a /v1/completions response, ordered by choice index; ``copies`` > 1 repeats
    the single greedy choice n times."""
    choices = sorted(payload.get("choices", []), key=lambda c: c.get("index", 0)) * copies
    if len(choices) != request.sampling.n:
        error = f"server returned {len(choices)} of {request.sampling.n} choices"
        return PromptResult(request.request_id, STATUS_ENGINE_ERROR, error=error)
    samples = []
    for choice in choices:
        token_logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
        samples.append(
            Sample(
                text=choice.get("text", ""),
                completion_tokens=len(token_logprobs) if token_logprobs is not None else None,
                finish_reason=choice.get("finish_reason"),
                cumulative_logprob=sum(token_logprobs) if token_logprobs else None,
            )
        )
    return PromptResult(request.request_id, STATUS_OK, samples)
