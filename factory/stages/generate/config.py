"""Generation config sections and the keys that identify samples.

Covered: engine, sampling, prompting, Ray resources, adaptive sampling and checkpointing of the
generation stage, the hash of what determines a prompt's samples (:func:`generation_config_hash`)
and the per-prompt :func:`gen_key`. Resource *requests* are derived from these sections by
:mod:`factory.stages.generate.placement`, never from what the cluster has up. Kept apart from the
UDFs so that configs and keys import without them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, model_validator

from factory.engines.config import EngineConfig, SamplingConfig
from factory.prompting import PromptingConfig
from factory.sections import Section


class GenerationResources(Section):
    """Ray resources of the generation actor pool: what each engine replica asks the cluster for."""

    num_actors: int = Field(default=1, ge=1)
    """Engine replicas (actors); each holds one engine."""
    device: Literal["auto", "gpu", "cpu"] = "auto"
    """Where engines run; auto: gpu unless the image's engine build is CPU-only (never what nodes are up)."""
    accelerator_type: str | None = None
    """Ray accelerator type the GPUs must be (e.g. "H100") on a cluster with several kinds; None: any."""
    num_gpus_per_actor: float | None = Field(default=None, ge=0)
    """GPUs per replica; None: tensor × pipeline parallel size on gpu, 0 on cpu (< 1 shares a GPU)."""
    num_cpus_per_actor: float = Field(default=1.0, gt=0)
    """CPUs reserved per actor (tokenization, detokenization, the engine's scheduler, in-loop verification)."""
    wait_for_resources_s: float = Field(default=1200.0, gt=0)
    """Wait for the cluster (its autoscaler) to provide every replica before failing; > a GPU node's scale-up."""
    batch_size: int = Field(default=64, ge=1)
    """Prompts per map_batches batch: the checkpoint and retry unit (4 batches in flight per actor)."""
    max_actor_restarts: int = Field(default=2, ge=0, le=10)
    """Restarts of an actor whose engine died, before the run fails (no infinite retry loop)."""
    max_task_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a batch whose actor died mid-batch."""

    @model_validator(mode="after")
    def _gpus_need_gpu_device(self) -> "GenerationResources":
        if self.device == "cpu" and self.num_gpus_per_actor:
            raise ValueError("num_gpus_per_actor > 0 needs device: gpu (or auto), not cpu")
        return self


class CheckpointConfig(Section):
    """Exactly-once resume of generation."""

    enabled: bool = True
    """Write finished prompts (adaptive mode: finished rounds) as they complete so a rerun skips them."""
    flush_every_s: float = Field(default=30.0, gt=0)
    """Adaptive mode: finished rounds are written at least this often (a crash redraws at most this much)."""


class AdaptiveConfig(Section):
    """Adaptive sampling, "sample until k verified" (:mod:`factory.stages.generate.adaptive`)."""

    mode: Literal["fixed", "adaptive"] = "fixed"
    """fixed draws sampling.n per prompt; adaptive draws rounds per prompt until k verified-correct samples."""
    k: int = Field(default=4, ge=1)
    """Verified-correct samples wanted per prompt (set filter.rejection.max_per_prompt to it: more are dropped)."""
    max_samples: int = Field(default=32, ge=1)
    """Per-prompt cap on samples drawn: bounds what a prompt the teacher never solves can cost."""
    round_size: int | None = Field(default=None, ge=1)
    """Samples in a prompt's first round; None: k (later rounds are sized from the verdicts, policy.py)."""
    round_quantile: float = Field(default=0.8, gt=0, lt=1)
    """Later rounds draw what k takes at this upper quantile of the pass rate: higher overshoots less, in more rounds."""
    token_budget: int | None = Field(default=None, ge=1)
    """Teacher completion tokens the whole run may spend, over all actors (resumed rows count); None: unbounded."""

    @model_validator(mode="after")
    def _cap_reaches_k(self) -> "AdaptiveConfig":
        if self.max_samples < max(self.k, self.round_size or 0):
            raise ValueError("max_samples must be >= k and >= round_size (a prompt could never reach k)")
        return self

    @property
    def first_round(self) -> int:
        """Samples of a prompt's first round."""
        return self.round_size or self.k


class GenerationConfig(Section):
    """Teacher (or eval) generation: engine, sampling, prompting, resources, adaptive mode, checkpointing."""

    engine: EngineConfig = EngineConfig()
    """Model and backend."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters (n, temperature, top_p, max_tokens, seed); n is unused in adaptive mode."""
    prompting: PromptingConfig = PromptingConfig()
    """Chat template use, instruction and <think> forcing."""
    resources: GenerationResources = GenerationResources()
    """Actor pool size and placement."""
    adaptive: AdaptiveConfig = AdaptiveConfig()
    """Fixed n per prompt, or adaptive sampling until k verified."""
    checkpoint: CheckpointConfig = CheckpointConfig()
    """Resume behaviour."""

    @model_validator(mode="after")
    def _cross_checks(self) -> "GenerationConfig":
        if self.adaptive.mode == "adaptive" and self.sampling.temperature == 0:
            raise ValueError("adaptive.mode: adaptive needs sampling.temperature > 0 (greedy samples are identical)")
        gpus = self.resources.num_gpus_per_actor
        if self.engine.backend == "vllm" and self.engine.num_devices > 1 and gpus not in (None, self.engine.num_devices):
            raise ValueError("resources.num_gpus_per_actor must be unset (or tensor × pipeline parallel size) "
                             "with vllm tensor/pipeline parallelism: each rank takes one GPU")
        return self

    @property
    def adaptive_mode(self) -> bool:
        """Whether prompts are sampled until k verified (else a fixed n)."""
        return self.adaptive.mode == "adaptive"


def generation_config_hash(cfg: GenerationConfig) -> str:
    """Hash of what determines the samples: teacher model+revision, sampling, prompting, and in
    adaptive mode the rounds (k, cap, round size, round quantile; ``sampling.n`` is unused there).

    Engine tuning (dtype, parallelism, memory), resources and the token budget are left out on
    purpose: changing them must not throw away finished samples."""
    identity = {
        "model": cfg.engine.model,
        "revision": cfg.engine.revision,
        "sampling": cfg.sampling.model_dump(mode="json"),
        "prompting": cfg.prompting.model_dump(mode="json"),
    }
    if cfg.adaptive_mode:
        identity["sampling"].pop("n")
        identity["adaptive"] = cfg.adaptive.model_dump(mode="json", exclude={"token_budget"})
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def gen_key(config_hash: str, prompt: str) -> str:
    """Stable key of one prompt's samples: prompt text × generation config hash."""
    return hashlib.sha256(f"{config_hash}\x00{prompt}".encode()).hexdigest()
