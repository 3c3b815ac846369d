"""Chaos: a generation actor is SIGKILLed mid-run; the output must still hold every
(prompt_id, sample_index) exactly once, and a rerun on the checkpoint must reproduce it.

Uses the transformers backend (seconds to start) so the kill lands between checkpointed batches
cheaply; the resume machinery under test is the same for every backend.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pyarrow as pa
import pytest

from factory import schema, synthetic
from factory.stages.generate import GenerationConfig, generate, read_generation_stats
from factory.stages.generate.checkpoint import CheckpointStore
from factory.stages.generate import generation_config_hash

pytestmark = pytest.mark.chaos
N, PROMPTS = 2, 24


def _generation_actor_pids() -> list[int]:
    from ray._private.state import actors

    return [
        a["Pid"]
        for a in actors().values()
        if "TeacherGeneration" in a["ActorClassName"] and a["State"] == "ALIVE" and a["Pid"]
    ]


def _kill_after_first_shards(store: CheckpointStore, killed: list[int], deadline_s: float = 300) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = _generation_actor_pids()
        if len(store.shard_files()) >= 2 and pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            return
        time.sleep(0.05)


def _keys(table: pa.Table) -> Counter:
    return Counter(zip(table["prompt_id"].to_pylist(), table["sample_index"].to_pylist()))


def test_killed_actor_run_and_rerun_emit_each_sample_exactly_once(ray_local, tiny_models, tmp_path):
    rows = [dict(p, source="synthetic", source_row=i + 1) for i, p in enumerate(synthetic.make_problems(PROMPTS, seed=3))]
    prompts = schema.conform(pa.Table.from_pylist(rows), schema.PROMPT_SCHEMA)
    cfg = GenerationConfig.model_validate(
        {
            "engine": {"backend": "transformers", "model": tiny_models.teacher},
            "sampling": {"n": N, "max_tokens": 48, "seed": 1},
            "resources": {"batch_size": 2, "max_actor_restarts": 2, "max_task_retries": 2},
        }
    )
    store = CheckpointStore(str(tmp_path), generation_config_hash(cfg))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_after_first_shards, args=(store, killed), daemon=True)
    killer.start()
    ds = generate(ray_local.data.from_arrow(prompts), cfg, checkpoint_dir=str(tmp_path), total_prompts=PROMPTS)
    first = pa.concat_tables(ray_local.get(ds.to_arrow_refs()))
    killer.join(timeout=5)
    assert killed, "the actor was never killed: the run finished before two shards existed"

    expected = {(p, i) for p in prompts["prompt_id"].to_pylist() for i in range(N)}
    assert _keys(first) == Counter(expected)

    again = generate(ray_local.data.from_arrow(prompts), cfg, checkpoint_dir=str(tmp_path), total_prompts=PROMPTS)
    second = pa.concat_tables(ray_local.get(again.to_arrow_refs()))
    assert _keys(second) == Counter(expected)
    assert second.sort_by("sample_id").to_pylist() == first.sort_by("sample_id").to_pylist()
    assert read_generation_stats(str(tmp_path), cfg)["prompts_resumed"] == PROMPTS
