"""The sandbox service client under faults: every infrastructure failure ends as ``sandbox_error`` (never
``fail``), after the retries it is worth retrying, and in-flight requests stay within ``concurrency``.
The faulty services are small aiohttp apps on 127.0.0.1 (fault injection); the real service's behaviour
is in test_sandbox_service.py."""

import asyncio
import socket
import time

from aiohttp import web
from sandbox_servers import app_in_thread

from factory.verifiers.sandbox import SandboxLimits
from factory.verifiers.sandbox_client import SandboxClient

LIMITS = SandboxLimits(timeout_s=1)
PASSED = {"status": "pass", "detail": "", "exit_code": 0, "stdout": "ok\n", "duration_s": 0.01, "mode": "bwrap"}


def _app(handler) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/run", handler)
    app.router.add_get("/healthz", handler)
    return app


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_unreachable_service_is_sandbox_error_after_every_retry():
    url = _closed_port_url()
    (result,) = SandboxClient(url, retries=2, backoff_s=0.01).run_many(["print(1)"], LIMITS)
    assert result.status == "sandbox_error"
    assert url in result.detail and "after 3 attempts" in result.detail


def test_503_is_retried_until_the_service_answers():
    calls = []

    async def flaky(request):
        calls.append(1)
        if len(calls) < 3:
            return web.json_response({"error": "busy"}, status=503)
        return web.json_response(PASSED)

    with app_in_thread(_app(flaky)) as url:
        (result,) = SandboxClient(url, retries=3, backoff_s=0.01).run_many(["print(1)"], LIMITS)
    assert (result.status, len(calls)) == ("pass", 3)


def test_service_that_never_answers_times_out_each_attempt():
    async def hang(request):
        await asyncio.sleep(30)

    with app_in_thread(_app(hang)) as url:
        started = time.monotonic()
        client = SandboxClient(url, retries=1, backoff_s=0.01, timeout_margin_s=0.3)
        (result,) = client.run_many(["print(1)"], SandboxLimits(timeout_s=0.2))
        elapsed = time.monotonic() - started
    assert result.status == "sandbox_error" and "no answer within 0.5s" in result.detail
    assert 1.0 <= elapsed < 5


def test_client_error_is_sandbox_error_without_retry():
    calls = []

    async def refuse(request):
        calls.append(1)
        return web.json_response({"error": "limits.memory_mb: above this service's ceiling"}, status=400)

    with app_in_thread(_app(refuse)) as url:
        (result,) = SandboxClient(url, retries=3, backoff_s=0.01).run_many(["print(1)"], LIMITS)
    assert (result.status, len(calls)) == ("sandbox_error", 1)
    assert "HTTP 400" in result.detail and "limits.memory_mb" in result.detail


def test_answer_that_is_not_a_result_is_sandbox_error():
    async def garbage(request):
        return web.json_response({"status": "maybe"})

    with app_in_thread(_app(garbage)) as url:
        (result,) = SandboxClient(url, retries=3, backoff_s=0.01).run_many(["print(1)"], LIMITS)
    assert result.status == "sandbox_error" and "not a sandbox result" in result.detail


def test_in_flight_requests_never_exceed_the_concurrency():
    in_flight, peak = [0], [0]

    async def slow(request):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.1)
        in_flight[0] -= 1
        return web.json_response(PASSED)

    with app_in_thread(_app(slow)) as url:
        results = SandboxClient(url, concurrency=3).run_many(["print(1)"] * 12, LIMITS)
    assert [r.status for r in results] == ["pass"] * 12
    assert peak[0] == 3


def test_results_keep_the_order_of_the_programs():
    async def echo(request):
        body = await request.json()
        await asyncio.sleep(0.05 * (5 - int(body["source"])))
        return web.json_response({**PASSED, "stdout": body["source"]})

    with app_in_thread(_app(echo)) as url:
        results = SandboxClient(url, concurrency=5).run_many([str(i) for i in range(5)], LIMITS)
    assert [r.stdout for r in results] == ["0", "1", "2", "3", "4"]


def test_health_of_an_unreachable_service_is_none_with_the_reason():
    status, body = SandboxClient(_closed_port_url(), retries=1, backoff_s=0.01).health()
    assert status is None and "ClientConnectorError" in body["error"]
