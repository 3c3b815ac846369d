"""Teacher generation stage: prompts → n samples per prompt (SAMPLE_SCHEMA), on a Ray actor pool.

``generate(ds, cfg, checkpoint_dir=...)`` is what pipelines call (teacher generation, and eval of
a student with greedy sampling). Each actor holds one engine (:mod:`factory.engines`) and many
requests in flight; rows are built by :class:`factory.stages.generate.udf.TeacherGeneration`.
Resources (actors, GPUs, TP/PP placement, retries) come from :class:`GenerationResources`.

Exactly-once resume: with a checkpoint dir, finished prompts are written per batch as Parquet
shards (temp file + rename) under a directory keyed by :func:`generation_config_hash`; a rerun
serves those prompts from the shards and generates only the rest, so the output holds each
(prompt_id, sample_index) exactly once. Not covered: two runs writing one checkpoint dir at once.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from typing import TYPE_CHECKING

from factory.stages.generate.config import (
    CheckpointConfig,
    GenerationConfig,
    GenerationResources,
    gen_key,
    generation_config_hash,
    map_batches_resources,
)

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "CheckpointConfig", "GenerationConfig", "GenerationResources", "gen_key", "generate", "generation_config_hash",
    "map_batches_resources", "new_progress", "read_generation_stats",
]

log = logging.getLogger(__name__)


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

    from factory.stages.generate.checkpoint import CheckpointStore
    from factory.stages.generate.udf import TeacherGeneration

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
    """A progress actor (see :mod:`factory.stages.generate.progress`) for one ``generate`` call."""
    from factory.stages.generate.progress import GenerationProgress

    return GenerationProgress.options(name=f"factory-gen-progress-{uuid.uuid4().hex[:8]}").remote(
        total_prompts, stats_path
    )


def read_generation_stats(checkpoint_dir: str, cfg: GenerationConfig) -> dict | None:
    """Throughput and status counts of the last generation run into ``checkpoint_dir`` (for the
    manifest); None if no run wrote stats there."""
    from factory.stages.generate.checkpoint import CheckpointStore

    return CheckpointStore(checkpoint_dir, generation_config_hash(cfg)).read_stats()
