"""Generation config sections and the keys that identify samples.

Covered: engine, sampling, prompting, Ray resources and checkpointing of the generation stage, the
hash of what determines a prompt's samples (:func:`generation_config_hash`), the per-prompt
:func:`gen_key`, and the Ray resource arguments derived from the config
(:func:`map_batches_resources`). Kept apart from the UDF so that configs and keys import without it.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import Field

from factory.engines.config import EngineConfig, SamplingConfig
from factory.prompting import PromptingConfig
from factory.sections import Section


class GenerationResources(Section):
    """Ray resources of the generation actor pool."""

    num_actors: int = Field(default=1, ge=1)
    """Engine replicas (actors); each holds one engine."""
    num_gpus_per_actor: float | None = Field(default=None, ge=0)
    """None derives it: TP × PP for vllm/transformers when the cluster has GPUs, else 0."""
    num_cpus_per_actor: float = Field(default=1.0, gt=0)
    """CPUs reserved per actor (tokenization, detokenization, the engine's scheduler)."""
    batch_size: int = Field(default=64, ge=1)
    """Prompts per map_batches batch: the checkpoint and retry unit (4 batches in flight per actor)."""
    max_actor_restarts: int = Field(default=2, ge=0, le=10)
    """Restarts of an actor whose engine died, before the run fails (no infinite retry loop)."""
    max_task_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a batch whose actor died mid-batch."""


class CheckpointConfig(Section):
    """Exactly-once resume of generation."""

    enabled: bool = True
    """Write finished prompts as they complete so a rerun skips them."""


class GenerationConfig(Section):
    """Teacher (or eval) generation: engine, sampling, prompting, resources, checkpointing."""

    engine: EngineConfig = EngineConfig()
    """Model and backend."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters (n, temperature, top_p, max_tokens, seed)."""
    prompting: PromptingConfig = PromptingConfig()
    """Chat template use, instruction and <think> forcing."""
    resources: GenerationResources = GenerationResources()
    """Actor pool size and placement."""
    checkpoint: CheckpointConfig = CheckpointConfig()
    """Resume behaviour."""


def generation_config_hash(cfg: GenerationConfig) -> str:
    """Hash of what determines the samples: teacher model+revision, sampling, prompting.

    Engine tuning (dtype, parallelism, memory) and resources are left out on purpose: changing them
    must not throw away finished samples."""
    identity = {
        "model": cfg.engine.model,
        "revision": cfg.engine.revision,
        "sampling": cfg.sampling.model_dump(mode="json"),
        "prompting": cfg.prompting.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def gen_key(config_hash: str, prompt: str) -> str:
    """Stable key of one prompt's samples: prompt text × generation config hash."""
    return hashlib.sha256(f"{config_hash}\x00{prompt}".encode()).hexdigest()


def map_batches_resources(cfg: GenerationConfig, cluster_has_gpus: bool) -> dict:
    """Ray resource arguments for ``map_batches`` (without ``compute``).

    vLLM with TP×PP > 1 on GPUs follows ``ray.data.llm``: the actor itself takes no GPU, and a
    placement group of TP×PP {GPU: 1, CPU: 1} bundles (PACK) is created per actor, captured by the
    vLLM Ray executor's workers."""
    res = cfg.resources
    devices = 0 if cfg.engine.backend == "openai" else cfg.engine.num_devices
    gpus = res.num_gpus_per_actor
    if gpus is None:
        gpus = devices if cluster_has_gpus else 0
    kwargs = {
        "num_cpus": res.num_cpus_per_actor,
        "max_restarts": res.max_actor_restarts,
        "max_task_retries": res.max_task_retries,
    }
    if cfg.engine.backend == "vllm" and devices > 1 and gpus > 0:
        from functools import partial

        kwargs["num_gpus"] = 0
        kwargs["ray_remote_args_fn"] = partial(_placement_group_strategy, devices)
    else:
        kwargs["num_gpus"] = gpus
    return kwargs


def _placement_group_strategy(num_bundles: int) -> dict:
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = ray.util.placement_group([{"GPU": 1, "CPU": 1}] * num_bundles, strategy="PACK")
    return {
        "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    }
