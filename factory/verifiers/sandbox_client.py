"""HTTP client of the sandbox service (``sandbox_service.py``): the service backend of the verify stage.

Contract: ``run_many`` returns one ``SandboxResult`` per program, in order, with the statuses of the local
sandbox. At most ``concurrency`` requests are in flight per call. Each attempt may take the run's
wall-clock limit plus ``timeout_margin_s`` (queueing at the service, sandbox start and teardown).
Connection failures, timeouts and 5xx answers (service restarting, busy, without isolation) are retried
``retries`` times with exponential backoff and full jitter; retrying is safe because a run has no effect
outside its sandbox. When the service cannot give an answer — retries spent, a 4xx, or an answer that is
not a result — the run is ``sandbox_error`` with the reason: an infrastructure failure, never ``fail``.
Not covered: authentication and TLS (the service is cluster-internal, behind a NetworkPolicy).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass

import aiohttp

from factory.verifiers.sandbox import SANDBOX_STATUSES, SandboxLimits, SandboxResult


@dataclass(frozen=True)
class SandboxClient:
    """Calls one sandbox service (a URL, usually a Kubernetes Service in front of several replicas)."""

    url: str
    """Base URL, e.g. ``http://distill-factory-sandbox:8080``."""
    concurrency: int = 8
    """Requests in flight at once per ``run_many`` call."""
    connect_timeout_s: float = 5.0
    """Limit for opening a connection."""
    timeout_margin_s: float = 30.0
    """Added to a run's ``timeout_s`` for one attempt."""
    retries: int = 3
    """Attempts after the first one for retryable failures."""
    backoff_s: float = 0.5
    """First retry delay; doubles per attempt (full jitter)."""

    def run_many(self, sources: list[str], limits: SandboxLimits) -> list[SandboxResult]:
        """Run every program in ``sources`` in the service (blocking; see module doc)."""
        if not sources:
            return []
        return asyncio.run(self._run_all(sources, limits))

    def health(self) -> tuple[int | None, dict]:
        """``GET /healthz`` with the same retries: (HTTP status, body), or (None, {"error": why}) when
        the service could not be reached."""
        return asyncio.run(self._health())

    def _timeout(self, limits: SandboxLimits | None) -> aiohttp.ClientTimeout:
        total = (limits.timeout_s if limits else 0.0) + self.timeout_margin_s
        return aiohttp.ClientTimeout(total=total, sock_connect=self.connect_timeout_s)

    def _delay(self, attempt: int) -> float:
        return random.uniform(0, self.backoff_s * 2 ** (attempt - 1))

    async def _run_all(self, sources: list[str], limits: SandboxLimits) -> list[SandboxResult]:
        gate = asyncio.Semaphore(self.concurrency)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=self._timeout(limits)) as session:
            return await asyncio.gather(*(self._run_one(session, gate, source, limits) for source in sources))

    async def _run_one(self, session: aiohttp.ClientSession, gate: asyncio.Semaphore, source: str,
                       limits: SandboxLimits) -> SandboxResult:
        started = time.monotonic()
        body = {"source": source, "limits": asdict(limits)}
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt))
            attempts += 1
            async with gate:
                status, payload, problem = await self._request(session, "POST", "/v1/run", body)
            if status == 200:
                result = _result_of(payload)
                if result is not None:
                    return result
                problem, retryable = f"answer is not a sandbox result: {str(payload)[:200]}", False
            else:
                retryable = status is None or status >= 500
            if not retryable:
                break
        detail = f"sandbox service {self.url}: {problem} (after {attempts} attempt{'s' * (attempts > 1)})"
        return SandboxResult("sandbox_error", detail, None, "", time.monotonic() - started, None)

    async def _health(self) -> tuple[int | None, dict]:
        async with aiohttp.ClientSession(timeout=self._timeout(None)) as session:
            for attempt in range(self.retries + 1):
                if attempt:
                    await asyncio.sleep(self._delay(attempt))
                status, payload, problem = await self._request(session, "GET", "/healthz", None)
                if status is not None and status < 500 or attempt == self.retries:
                    break
        if status is None:
            return None, {"error": f"{problem} (after {self.retries + 1} attempts)"}
        return status, payload if isinstance(payload, dict) else {"error": str(payload)[:200]}

    async def _request(self, session: aiohttp.ClientSession, method: str, path: str,
                       body: dict | None) -> tuple[int | None, object, str]:
        """(status, JSON body, problem); status None when no HTTP answer came back."""
        try:
            async with session.request(method, self.url.rstrip("/") + path, json=body) as response:
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = {"error": (await response.text())[:200]}
                error = payload.get("error") if isinstance(payload, dict) else None
                return response.status, payload, f"HTTP {response.status}: {error or response.reason}"
        except asyncio.TimeoutError:
            return None, None, f"no answer within {session.timeout.total:g}s"
        except aiohttp.ClientError as error:
            return None, None, f"{type(error).__name__}: {error}"


def _result_of(payload: object) -> SandboxResult | None:
    try:
        result = SandboxResult(**payload)
    except TypeError:
        return None
    return result if result.status in SANDBOX_STATUSES else None
