"""Chaos: an adaptive-sampling actor is SIGKILLed mid-round, after some prompts' first rounds are in
the checkpoint and before they are finished. The run (the restarted actor resumes from the stored
rounds), its rerun on the checkpoint and an uninterrupted run in a fresh directory must all hold
every (prompt_id, sample_index) exactly once, and the same samples.

Uses the transformers backend (seconds to start; it decodes one prompt at a time, so its draws are
reproducible for a seed) and prompts with an unmatchable reference, which sample round after round
up to the cap; the resume machinery under test is the same for every backend.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from config_helpers import make_config
from factory import schema, synthetic
from factory.pipeline import run_small
from factory.stages.generate import AdaptiveGenerate, GenerationConfig, generation_config_hash
from factory.stages.generate.checkpoint import CheckpointStore

pytestmark = pytest.mark.chaos
GENERATION_ACTOR = "MapWorker(MapBatches(_AsyncMeteredClass))"
"""Ray Data's name for the generation actors: the pipeline meters the (async) UDF in a wrapper class."""
PROMPTS, CAP = 10, 6
COMPARED = ["prompt_id", "sample_index", "sample_id", "sample_round", "seed", "completion", "completion_tokens",
            "verdict", "pass_rate_estimate"]


def _generation_actor_pids() -> list[int]:
    from ray._private.state import actors

    return [a["Pid"] for a in actors().values()
            if a["ActorClassName"] == GENERATION_ACTOR and a["State"] == "ALIVE" and a["Pid"]]


def _stored_rounds(store: CheckpointStore) -> set[tuple[str, int]]:
    rounds = set()
    for path in store.shard_files():
        table = pq.read_table(path, columns=["prompt_id", "sample_round"])
        rounds |= set(zip(table["prompt_id"].to_pylist(), table["sample_round"].to_pylist()))
    return rounds


def _kill_mid_round(store: CheckpointStore, killed: list[int], deadline_s: float = 300) -> None:
    """Kill the actor once a prompt has a stored round 1 (so it is past its first round) and none has
    reached its last possible round."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = _generation_actor_pids()
        if pids and any(round_ >= 1 for _, round_ in _stored_rounds(store)):
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            return
        time.sleep(0.02)


def _keys(table: pa.Table) -> Counter:
    return Counter(zip(table["prompt_id"].to_pylist(), table["sample_index"].to_pylist()))


def _samples(table: pa.Table) -> list[dict]:
    return table.select(COMPARED).sort_by([("prompt_id", "ascending"), ("sample_index", "ascending")]).to_pylist()


def test_killed_adaptive_run_rerun_and_clean_run_emit_the_same_samples_once(ray_local, tiny_models, tmp_path):
    rows = [dict(p, source="synthetic", source_row=i + 1) for i, p in enumerate(synthetic.make_problems(PROMPTS, seed=8))]
    for row in rows[::2]:
        row["reference"] = "-1"  # never correct: these sample every round up to the cap
    prompts = schema.conform(pa.Table.from_pylist(rows), schema.PROMPT_SCHEMA)
    cfg = GenerationConfig.model_validate({
        "engine": {"backend": "transformers", "model": tiny_models.teacher},
        "sampling": {"max_tokens": 48, "seed": 1},
        "adaptive": {"mode": "adaptive", "k": 2, "max_samples": CAP, "round_size": 1},
        "resources": {"batch_size": 5, "max_actor_restarts": 2, "max_task_retries": 2},
        "checkpoint": {"flush_every_s": 0.01},
    })
    store = CheckpointStore(str(tmp_path / "killed" / "generation"), generation_config_hash(cfg))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_mid_round, args=(store, killed), daemon=True)
    killer.start()
    first, _ = run_small([AdaptiveGenerate], make_config(generation=cfg), prompts, run_dir=str(tmp_path / "killed"))
    killer.join(timeout=5)
    assert killed, "the actor was never killed: the run finished before a second round was stored"

    assert max(_keys(first).values()) == 1
    rerun, [record] = run_small([AdaptiveGenerate], make_config(generation=cfg), prompts,
                                run_dir=str(tmp_path / "killed"))
    assert _samples(rerun) == _samples(first) and record.stats["prompts_resumed"] == PROMPTS

    clean, _ = run_small([AdaptiveGenerate], make_config(generation=cfg), prompts, run_dir=str(tmp_path / "clean"))
    assert _samples(clean) == _samples(first)
    per_prompt = Counter(p for p, _ in _keys(first))
    assert all(per_prompt[r["prompt_id"]] == CAP for r in rows[::2])
