"""openai backend against a local fault-injecting HTTP server: retries, errors, limits, API key."""

from __future__ import annotations

import asyncio

import pytest

from factory.engines.base import EngineDead, PromptRequest, SamplingSpec
from factory.engines.config import EngineConfig
from factory.engines.openai_engine import OpenAIEngine

SPEC = SamplingSpec(n=2, temperature=0.6, top_p=0.95, max_tokens=8, seed=1)


def _choices(n):
    return {
        "choices": [
            {"index": i, "text": f"s{i}</think>ok", "finish_reason": "stop", "logprobs": {"token_logprobs": [-0.5, -0.25]}}
            for i in range(n)
        ]
    }


async def _serve(statuses, seen, delay_s=0.0):
    """Answer the i-th request with statuses[i] (200 = a valid completion); record requests."""
    from aiohttp import web

    state = {"in_flight": 0, "max_in_flight": 0}

    async def handler(request):
        body = await request.json()
        seen.append({"auth": request.headers.get("Authorization"), "body": body})
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        await asyncio.sleep(delay_s)
        state["in_flight"] -= 1
        status = statuses[min(len(seen) - 1, len(statuses) - 1)]
        if status == 200:
            return web.json_response(_choices(body["n"]))
        return web.json_response({"error": "injected"}, status=status)

    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/v1", state


def _engine(base_url, **kw):
    cfg = EngineConfig(backend="openai", base_url=base_url, retry_backoff_s=0.01, max_retries=2, **kw)
    return OpenAIEngine(cfg, "/models/teacher")


def _run(statuses, requests=1, delay_s=0.0, **kw):
    seen = []

    async def main():
        runner, url, state = await _serve(statuses, seen, delay_s)
        engine = _engine(url, **kw)
        try:
            reqs = [PromptRequest(f"r{i}", [1, 2, 3], SPEC) for i in range(requests)]
            results = await asyncio.gather(*(engine.generate(r) for r in reqs))
        finally:
            await engine._session.close()
            await runner.cleanup()
        return results, state

    results, state = asyncio.run(main())
    return results, seen, state


def test_retries_server_error_then_succeeds():
    results, seen, _ = _run([503, 200])
    assert results[0].status == "ok" and len(seen) == 2
    assert [s.cumulative_logprob for s in results[0].samples] == [-0.75, -0.75]


def test_client_error_is_engine_error_without_retry():
    results, seen, _ = _run([400])
    assert results[0].status == "engine_error" and "HTTP 400" in results[0].error and len(seen) == 1


def test_persistent_server_error_stops_after_max_retries():
    results, seen, _ = _run([500])
    assert results[0].status == "engine_error" and len(seen) == 3


def test_request_sends_token_ids_and_native_n():
    _, seen, _ = _run([200])
    body = seen[0]["body"]
    assert body["prompt"] == [1, 2, 3] and body["n"] == 2 and body["seed"] == 1 and body["model"] == "/models/teacher"


def test_concurrency_limit_is_respected():
    _, _, state = _run([200], requests=6, delay_s=0.05, max_concurrency=2)
    assert state["max_in_flight"] == 2


def test_api_key_is_read_from_named_env_var(monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "sekret")
    _, seen, _ = _run([200], api_key_env="TEST_TEACHER_KEY")
    assert seen[0]["auth"] == "Bearer sekret"


def test_missing_api_key_env_var_names_the_field(monkeypatch):
    monkeypatch.delenv("TEST_TEACHER_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key_env"):
        _engine("http://127.0.0.1:1/v1", api_key_env="TEST_TEACHER_KEY")


def test_unreachable_endpoint_raises_engine_dead():
    engine = _engine("http://127.0.0.1:9/v1")

    async def main():
        try:
            return await engine.generate(PromptRequest("r", [1], SPEC))
        finally:
            await engine._session.close()

    with pytest.raises(EngineDead):
        asyncio.run(main())


def test_greedy_request_asks_one_choice_and_returns_n_samples():
    seen = []

    async def main():
        runner, url, _ = await _serve([200], seen)
        engine = _engine(url)
        try:
            greedy = SamplingSpec(n=3, temperature=0.0, top_p=1.0, max_tokens=8, seed=None)
            return await engine.generate(PromptRequest("r", [1], greedy))
        finally:
            await engine._session.close()
            await runner.cleanup()

    result = asyncio.run(main())
    assert seen[0]["body"]["n"] == 1 and len(result.samples) == 3
