"""Teacher generation stage: prompts → n samples per prompt (SAMPLE_SCHEMA), on a Ray actor pool.

``generate(ds, cfg, checkpoint_dir=...)`` is what pipelines call (teacher generation, and eval of
a student with greedy sampling). Each actor holds one engine (:mod:`factory.engines`) and many
requests in flight; rows are built by :class:`factory.stages.generate_udf.TeacherGeneration`.
Resources (actors, GPUs, TP/PP placement, retries) come from :class:`GenerationResources`.

Exactly-once resume: with a checkpoint dir, finished prompts are written per batch as Parquet
shards (temp file + rename) under a directory keyed by :func:`generation_config_hash`; a rerun
serves those prompts from the shards and generates only the rest, so the output holds each
(prompt_id, sample_index) exactly once. Not covered: two runs writing one checkpoint dir at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import warnings
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from factory.engines.config import EngineConfig, SamplingConfig
from factory.sections import Section

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

R1_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


class PromptingConfig(Section):
    """How a prompt becomes the text the model sees (R1 recipe defaults)."""

    instruction: str | None = R1_INSTRUCTION
    """Directive joined to every user prompt (R1 recipe); None sends the bare problem."""
    instruction_by_task: dict[str, str] = {}
    """Per-task instruction overriding ``instruction`` (e.g. code tasks ask for a code block)."""
    instruction_position: Literal["before", "after"] = "after"
    """Whether the instruction precedes or follows the problem text."""
    instruction_separator: str = "\n"
    """Text between problem and instruction."""
    system_prompt: str | None = None
    """R1 recommends none: all instructions go in the user turn."""
    force_think: bool = True
    """Start the completion with "<think>\\n" (R1 recipe) so the model cannot skip reasoning."""


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


def generate(
    ds: "ray.data.Dataset",
    cfg: GenerationConfig,
    *,
    checkpoint_dir: str | None,
    total_prompts: int | None = None,
    progress=None,
) -> "ray.data.Dataset":
    """Lazily map a prompts dataset (PROMPT_SCHEMA) to samples (SAMPLE_SCHEMA), n rows per prompt.

    ``checkpoint_dir`` (with ``cfg.checkpoint.enabled``) turns on exactly-once resume and the stats
    file read by :func:`read_generation_stats`; ``total_prompts`` (if known) enables the ETA.
    ``progress``: a :func:`new_progress` actor to report to, for a caller that reads its
    ``stats()`` once the dataset is consumed (eval); by default one is created per call."""
    import ray

    from factory.stages.generate_checkpoint import CheckpointStore
    from factory.stages.generate_udf import TeacherGeneration

    config_hash = generation_config_hash(cfg)
    store = None
    if checkpoint_dir and cfg.checkpoint.enabled:
        store = CheckpointStore(checkpoint_dir, config_hash)
        log.info("generation checkpoint %s: %d prompts already done", store.root, len(store.index()))
    if progress is None:
        progress = new_progress(total_prompts, store.stats_path if store else None)
    cluster_has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for max_restarts / max_task_retries (nor, for TP
        # placement groups, for ray_remote_args_fn, which ray.data.llm itself uses) yet; they are
        # removed in Ray 2.64, hence pyproject's ray<2.64 until a replacement exists.
        warnings.filterwarnings("ignore", message="`ray_remote_args(_fn)?` is deprecated")
        return ds.map_batches(
            TeacherGeneration,
            fn_constructor_kwargs={"cfg": cfg, "checkpoint": store, "progress": progress},
            batch_size=cfg.resources.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cfg.resources.num_actors),
            runtime_env={"env_vars": dict(cfg.engine.env)} if cfg.engine.env else None,
            **map_batches_resources(cfg, cluster_has_gpus),
        )


def new_progress(total_prompts: int | None = None, stats_path: str | None = None):
    """A progress actor (see :mod:`factory.stages.generate_progress`) for one ``generate`` call."""
    from factory.stages.generate_progress import GenerationProgress

    return GenerationProgress.options(name=f"factory-gen-progress-{uuid.uuid4().hex[:8]}").remote(
        total_prompts, stats_path
    )


def read_generation_stats(checkpoint_dir: str, cfg: GenerationConfig) -> dict | None:
    """Throughput and status counts of the last generation run into ``checkpoint_dir`` (for the
    manifest); None if no run wrote stats there."""
    from factory.stages.generate_checkpoint import CheckpointStore

    return CheckpointStore(checkpoint_dir, generation_config_hash(cfg)).read_stats()
