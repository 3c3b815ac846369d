"""Teacher generation stages: prompts → samples (SAMPLE_SCHEMA), on a Ray actor pool of engines.

Two stages, one per ``generation.adaptive.mode`` (exactly one is enabled): :class:`Generate` draws
a fixed ``sampling.n`` per prompt (teacher generation, and eval of a student with greedy sampling);
:class:`AdaptiveGenerate` samples each prompt in rounds until ``k`` verified-correct samples, with
verification inside the loop, so it also adds the verify columns (:mod:`.adaptive`, :mod:`.policy`).
Each actor holds one engine (:mod:`factory.engines`) and many requests in flight.

Resources come from the config alone (:mod:`.placement`): one placement group per engine replica,
created when the actors start, waited for up to ``resources.wait_for_resources_s`` (a clear error
after that), removed when the execution ends or fails. Retries: ``resources.max_actor_restarts``
/ ``max_task_retries``.

Exactly-once resume: with a checkpoint dir, finished prompts (adaptive: finished rounds) are
written as Parquet shards (temp file + rename) under a directory keyed by
:func:`generation_config_hash`; a rerun serves those from the shards and generates only the rest,
so the output holds each (prompt_id, sample_index) exactly once. Not covered: two runs writing one
checkpoint dir at once.
"""

from __future__ import annotations

import functools
import logging
import uuid
import warnings
from typing import TYPE_CHECKING

from factory import schema
from factory.pipeline import Stage, StageOutput
from factory.rows import with_filter_columns
from factory.stages.generate.config import (
    AdaptiveConfig,
    CheckpointConfig,
    GenerationConfig,
    GenerationResources,
    gen_key,
    generation_config_hash,
)
from factory.stages.verify import OUTPUT_FIELDS as VERIFY_FIELDS

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "AdaptiveConfig", "AdaptiveGenerate", "CheckpointConfig", "Generate", "GenerationConfig", "GenerationResources",
    "gen_key", "generation_config_hash", "new_progress",
]

log = logging.getLogger(__name__)


class Generate(Stage):
    """Prompts → ``sampling.n`` samples per prompt, on an actor pool of engines (module docstring).

    Run inputs: ``run.run_dir`` (checkpoint under ``<run_dir>/generation``; None: no checkpoint),
    ``run.extras["total_prompts"]`` (for the ETA) and ``run.extras["progress"]`` (a
    :func:`new_progress` actor whose stats the caller reads; by default the stage creates one, puts
    it there and kills it once its stats are read)."""

    name = "generate"
    section = "generation"
    requires = tuple(field.name for field in schema.PROMPT_FIELDS)
    adds = tuple(field.name for field in schema.GENERATION_FIELDS + schema.FILTER_FIELDS)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return not cfg.generation.adaptive_mode

    def _udf(self, checkpoint, progress) -> tuple[type, dict]:
        from factory.stages.generate.udf import TeacherGeneration

        return TeacherGeneration, {"cfg": self.config, "checkpoint": checkpoint, "progress": progress}

    def apply(self, ds) -> StageOutput:
        import os

        import ray

        from factory.stages.generate.checkpoint import CheckpointStore
        from factory.stages.generate.placement import ActorPlacement, register_release, resource_request

        cfg = self.config
        store = None
        if self.run.run_dir and cfg.checkpoint.enabled:
            store = CheckpointStore(os.path.join(self.run.run_dir, "generation"), generation_config_hash(cfg))
            log.info("generation checkpoint %s: %d prompts already started", store.root, len(store.index()))
        progress = self.run.extras.get("progress")
        owned = progress is None  # a caller-supplied actor is the caller's to kill
        if owned:
            progress = self.run.extras["progress"] = new_progress(self.run.extras.get("total_prompts"),
                                                                  store.stats_path if store else None)
        if cfg.adaptive_mode and cfg.adaptive.token_budget is not None:  # resumed rows count against it
            ray.get(progress.set_budget.remote(cfg.adaptive.token_budget, store.spent_tokens() if store else 0))
        request = resource_request(cfg)
        placement = ActorPlacement(request, cfg.resources.wait_for_resources_s)
        register_release(ds)
        udf, constructor = self._udf(store, progress)
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for max_restarts / max_task_retries nor for
            # ray_remote_args_fn (which ray.data.llm itself uses) yet; they are removed in Ray 2.64,
            # hence pyproject's ray<2.64 until a replacement exists.
            warnings.filterwarnings("ignore", message="`ray_remote_args(_fn)?` is deprecated")
            samples = self.map_batches(
                ds,
                udf,
                fn_constructor_kwargs=constructor,
                batch_size=cfg.resources.batch_size,
                compute=ray.data.ActorPoolStrategy(size=cfg.resources.num_actors),
                runtime_env={"env_vars": dict(cfg.engine.env)} if cfg.engine.env else None,
                num_cpus=request.actor_cpus,
                num_gpus=request.actor_gpus,
                max_restarts=cfg.resources.max_actor_restarts,
                max_task_retries=cfg.resources.max_task_retries,
                ray_remote_args_fn=placement,
            )
        samples = samples.map_batches(with_filter_columns, batch_format="pyarrow")
        resources = {"device": request.device, "actors": request.actors, "bundles": list(request.bundles)}

        @functools.cache
        def stats() -> dict:
            """Read once, after the execution: an actor this stage made is killed then (named actors
            outlive their handles, so a long-lived driver such as `factory refresh` would collect one
            per run)."""
            placement.release()  # normally already gone: the execution's end removed the groups
            read = {**ray.get(progress.stats.remote()), "resources": resources}
            if owned:
                self.run.extras.pop("progress", None)
                ray.kill(progress)
            return read

        return StageOutput(samples, stats)

    def view(self, stats: dict) -> dict:
        keys = ("prompts_done", "prompts_resumed", "samples_generated", "output_tokens", "samples_per_s",
                "output_tokens_per_s", "engine_output_tokens_per_s", "engine_start_s", "status_counts",
                "resources", "stop_reasons", "token_budget", "budget_spent_tokens")
        rows = [[key, stats.get(key)] for key in keys if stats.get(key) is not None]
        tables = [{"title": "Generation", "header": None, "rows": rows}]
        if stats.get("rounds"):
            header = ["round", "prompts", "samples", "correct", "output_tokens"]
            tables.append({"title": "Generation rounds", "header": header,
                           "rows": [[r[key] for key in header] for r in stats["rounds"]]})
        return {"tables": tables}


class AdaptiveGenerate(Generate):
    """Prompts → samples until ``k`` verified-correct per prompt (or its cap, or the token budget),
    verified inside the loop (:mod:`factory.stages.generate.adaptive`); rows carry their round and
    the prompt's unbiased ``pass_rate_estimate``; stats carry per-round figures. Reads the
    ``verify`` section too."""

    adds = Generate.adds + tuple(field.name for field in VERIFY_FIELDS)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.generation.adaptive_mode

    def _udf(self, checkpoint, progress) -> tuple[type, dict]:
        from factory.stages.generate.adaptive import AdaptiveGeneration

        return AdaptiveGeneration, {"cfg": self.config, "verify": self.cfg.verify, "checkpoint": checkpoint,
                                    "progress": progress}


def new_progress(total_prompts: int | None = None, stats_path: str | None = None):
    """A progress actor (see :mod:`factory.stages.generate.progress`) for one generation stage; it
    also holds the adaptive token budget, set by the stage."""
    from factory.stages.generate.progress import GenerationProgress

    return GenerationProgress.options(name=f"factory-gen-progress-{uuid.uuid4().hex[:8]}").remote(
        total_prompts, stats_path
    )
