"""Fault injection: a dead engine ends the actor process instead of recording errors or looping;
a prompt the engine rejects is an engine_error on that prompt's rows only."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

import factory.engines
import factory.stages.generate.udf as udf_module
from factory.engines.base import EngineDead, PromptResult, Sample
from factory.stages.generate import GenerationConfig


class _FaultyEngine:
    backend, version, max_model_len = "fake", "0", 512

    def __init__(self, failing_prompt_ids, dead=False):
        self.failing, self.dead = failing_prompt_ids, dead

    async def generate(self, request):
        if self.dead:
            raise EngineDead("injected")
        if request.request_id.split(":")[0] in self.failing:
            return PromptResult(request.request_id, "engine_error", error="injected rejection")
        return PromptResult(request.request_id, "ok", [Sample("r</think>a", 3, "stop", -1.0)] * request.sampling.n)

    def close(self):
        pass


def _udf(monkeypatch, tiny_models, engine):
    monkeypatch.setattr(factory.engines, "open_engine", lambda cfg, model_dir: engine)
    cfg = GenerationConfig.model_validate({"engine": {"model": tiny_models.teacher}, "sampling": {"n": 2}})
    return udf_module.TeacherGeneration(cfg)


def _batch(ids):
    return pa.Table.from_pylist([dict(prompt_id=i, task="math", prompt="1+1?", source="s", source_row=1) for i in ids])


def test_dead_engine_exits_the_actor_process(monkeypatch, tiny_models):
    exits = []

    def fake_exit():
        exits.append(True)
        raise SystemExit(1)

    monkeypatch.setattr(udf_module, "_exit_process", fake_exit)
    udf = _udf(monkeypatch, tiny_models, _FaultyEngine(set(), dead=True))
    with pytest.raises(SystemExit):
        asyncio.run(udf(_batch(["a", "b"])))
    assert exits == [True]


def test_rejected_prompt_is_engine_error_on_its_rows_only(monkeypatch, tiny_models):
    udf = _udf(monkeypatch, tiny_models, _FaultyEngine({"b"}))
    out = asyncio.run(udf(_batch(["a", "b", "c"]))).to_pylist()
    statuses = {(r["prompt_id"], r["sample_index"]): r["gen_status"] for r in out}
    assert statuses == {("a", 0): "ok", ("a", 1): "ok", ("b", 0): "engine_error", ("b", 1): "engine_error",
                        ("c", 0): "ok", ("c", 1): "ok"}
