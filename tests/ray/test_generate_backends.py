"""The three backends on the tiny teacher: greedy vLLM and transformers agree; transformers makes a
truncated chain visible; the openai backend works against a real local ``vllm serve`` (slow)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow as pa
import pytest

from factory import synthetic
from factory.stages.generate import GenerationConfig
from factory.stages.generate.udf import TeacherGeneration

PROMPTS = synthetic.make_problems(4, seed=2)


def _batch() -> pa.Table:
    return pa.Table.from_pylist([dict(p, source="synthetic", source_row=i + 1) for i, p in enumerate(PROMPTS)])


def _generate(tiny_models, backend: str, max_tokens: int = 64, while_open=None, **engine) -> list[dict]:
    """Rows of a greedy batch; ``while_open()`` is called before the engine closes."""
    cfg = GenerationConfig.model_validate(
        {
            "engine": {"backend": backend, "model": tiny_models.teacher, "dtype": "float32", "enforce_eager": True, **engine},
            "sampling": {"n": 2, "temperature": 0.0, "max_tokens": max_tokens},
        }
    )
    udf = TeacherGeneration(cfg)
    try:
        rows = asyncio.run(udf(_batch())).to_pylist()
        if while_open:
            while_open()
        return rows
    finally:
        udf._engine.close()


@pytest.fixture(scope="module")
def transformers_greedy(tiny_models):
    return _generate(tiny_models, "transformers")


def _one_engine_core_running_its_worker(before: set[int]):
    """On CPU the worker runs inside vLLM's engine-core process (``start_async_llm``): the engine adds one child
    process (to those in ``before``) with no child of its own; the variables set while it started are restored."""
    import psutil

    def check() -> None:
        new = [child for child in psutil.Process().children()  # multiprocessing's resource tracker is not vLLM's
               if child.pid not in before and "resource_tracker" not in " ".join(child.cmdline())]
        assert len(new) == 1 and not new[0].children(), [child.cmdline() for child in new]
        assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ and "OMP_NUM_THREADS" not in os.environ

    return check


def test_greedy_vllm_matches_transformers(tiny_models, transformers_greedy, monkeypatch):
    import psutil

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = {child.pid for child in psutil.Process().children()}
    vllm_rows = _generate(tiny_models, "vllm", while_open=_one_engine_core_running_its_worker(before))
    assert [r["completion"] for r in vllm_rows] == [r["completion"] for r in transformers_greedy]
    assert [r["completion_tokens"] for r in vllm_rows] == [r["completion_tokens"] for r in transformers_greedy]


def test_transformers_greedy_samples_are_ok_and_identical(transformers_greedy):
    assert {r["gen_status"] for r in transformers_greedy} == {"ok"}
    by_prompt = {}
    for r in transformers_greedy:
        by_prompt.setdefault(r["prompt_id"], set()).add(r["completion"])
    assert all(len(texts) == 1 for texts in by_prompt.values())


def test_truncated_chain_is_visible(tiny_models):
    rows = _generate(tiny_models, "transformers", max_tokens=4)
    assert {(r["finish_reason"], r["completion_tokens"], r["answer"]) for r in rows} == {("length", 4, None)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_models):
    port = _free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TEST_SERVE_KEY="local-key")
    # The api_server module, not the `vllm` CLI: the CLI looks up the "vllm" distribution, which the
    # CPU build (distribution "vllm-cpu") does not provide.
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_models.teacher,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
        "--api-key", "local-key", "--max-num-seqs", "16",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("vllm serve did not become healthy")
                time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_openai_backend_against_local_vllm_serve(tiny_models, vllm_server, transformers_greedy, monkeypatch):
    monkeypatch.setenv("TEST_SERVE_KEY", "local-key")
    rows = _generate(tiny_models, "openai", base_url=vllm_server, api_key_env="TEST_SERVE_KEY")
    assert {(r["gen_status"], r["backend"]) for r in rows} == {("ok", "openai")}
    assert [r["completion"] for r in rows] == [r["completion"] for r in transformers_greedy]
    assert all(r["cumulative_logprob"] <= 0 and r["completion_tokens"] > 0 for r in rows)
