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
from config_helpers import make_config
from factory.pipeline import run_small
from factory.stages.generate import Generate, GenerationConfig, generation_config_hash
from factory.stages.generate.checkpoint import CheckpointStore

pytestmark = pytest.mark.chaos
GENERATION_ACTOR = "MapWorker(MapBatches(_AsyncMeteredClass))"
"""Ray Data's name for the generation actors: the pipeline meters the (async) UDF in a wrapper class."""
N, PROMPTS = 2, 24


def _generation_actor_pids() -> list[int]:
    from ray._private.state import actors

    return [
        a["Pid"]
        for a in actors().values()
        if a["ActorClassName"] == GENERATION_ACTOR and a["State"] == "ALIVE" and a["Pid"]
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
    store = CheckpointStore(str(tmp_path / "generation"), generation_config_hash(cfg))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_after_first_shards, args=(store, killed), daemon=True)
    killer.start()
    first, _ = run_small([Generate], make_config(generation=cfg), prompts, run_dir=str(tmp_path))
    killer.join(timeout=5)
    assert killed, "the actor was never killed: the run finished before two shards existed"

    expected = {(p, i) for p in prompts["prompt_id"].to_pylist() for i in range(N)}
    assert _keys(first) == Counter(expected)

    second, [record] = run_small([Generate], make_config(generation=cfg), prompts, run_dir=str(tmp_path))
    assert _keys(second) == Counter(expected)
    assert second.sort_by("sample_id").to_pylist() == first.sort_by("sample_id").to_pylist()
    assert record.stats["prompts_resumed"] == PROMPTS
