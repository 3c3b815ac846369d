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

from factory import schema
from factory.pipeline import Stage, StageOutput
from factory.rows import with_filter_columns
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
    "CheckpointConfig", "Generate", "GenerationConfig", "GenerationResources", "gen_key", "generation_config_hash",
    "map_batches_resources", "new_progress",
]

log = logging.getLogger(__name__)


class Generate(Stage):
    """Prompts → ``sampling.n`` samples per prompt, on an actor pool of engines (module docstring).

    Run inputs: ``run.run_dir`` (checkpoint under ``<run_dir>/generation``; None: no checkpoint),
    ``run.extras["total_prompts"]`` (for the ETA) and ``run.extras["progress"]`` (a
    :func:`new_progress` actor whose stats the caller reads; by default one is created)."""

    name = "generate"
    section = "generation"
    requires = tuple(field.name for field in schema.PROMPT_FIELDS)
    adds = tuple(field.name for field in schema.GENERATION_FIELDS + schema.FILTER_FIELDS)

    def apply(self, ds) -> StageOutput:
        import os

        import ray

        from factory.stages.generate.checkpoint import CheckpointStore
        from factory.stages.generate.udf import TeacherGeneration

        cfg = self.config
        store = None
        if self.run.run_dir and cfg.checkpoint.enabled:
            store = CheckpointStore(os.path.join(self.run.run_dir, "generation"), generation_config_hash(cfg))
            log.info("generation checkpoint %s: %d prompts already done", store.root, len(store.index()))
        progress = self.run.extras.get("progress") or new_progress(self.run.extras.get("total_prompts"),
                                                                   store.stats_path if store else None)
        cluster_has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for max_restarts / max_task_retries (nor, for TP
            # placement groups, for ray_remote_args_fn, which ray.data.llm itself uses) yet; they are
            # removed in Ray 2.64, hence pyproject's ray<2.64 until a replacement exists.
            warnings.filterwarnings("ignore", message="`ray_remote_args(_fn)?` is deprecated")
            samples = self.map_batches(
                ds,
                TeacherGeneration,
                fn_constructor_kwargs={"cfg": cfg, "checkpoint": store, "progress": progress},
                batch_size=cfg.resources.batch_size,
                compute=ray.data.ActorPoolStrategy(size=cfg.resources.num_actors),
                runtime_env={"env_vars": dict(cfg.engine.env)} if cfg.engine.env else None,
                **map_batches_resources(cfg, cluster_has_gpus),
            )
        samples = samples.map_batches(with_filter_columns, batch_format="pyarrow")
        return StageOutput(samples, lambda: ray.get(progress.stats.remote()))

    def view(self, stats: dict) -> dict:
        keys = ("prompts_done", "prompts_resumed", "samples_generated", "output_tokens", "samples_per_s",
                "output_tokens_per_s", "engine_output_tokens_per_s", "engine_start_s", "status_counts")
        rows = [[key, stats.get(key)] for key in keys if stats.get(key) is not None]
        return {"tables": [{"title": "Generation", "header": None, "rows": rows}]}


def new_progress(total_prompts: int | None = None, stats_path: str | None = None):
    """A progress actor (see :mod:`factory.stages.generate.progress`) for one ``generate`` call."""
    from factory.stages.generate.progress import GenerationProgress

    return GenerationProgress.options(name=f"factory-gen-progress-{uuid.uuid4().hex[:8]}").remote(
        total_prompts, stats_path
    )
