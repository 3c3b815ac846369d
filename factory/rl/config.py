"""The RL job's config: a YAML file naming the distillation config it tunes the teacher of, plus GRPO settings.

Why a file of its own (not a section of :class:`~factory.config.FactoryConfig`): an RL run produces a model,
not a snapshot, and it must use the *same* teacher, prompting, verifiers, reward model, snapshot store and
held-out set as the distillation it feeds, so it names that config (``factory:``) instead of repeating it;
the distillation config stays valid and unchanged. :func:`load_rl_config` validates both strictly (the
factory config through :func:`factory.config.load_config`), before any Ray work; every error names the
dotted field (``grpo.group_size``), unknown keys are errors, ``--set k=v`` overrides apply to this file.

Covered: the policy (default: the factory's teacher), prompt selection from the snapshot's pass rates,
GRPO's group size / batch / KL / clipping / loss / learning rate / rollout length / steps, the reward mix,
the rollout engine, workers (Ray Train × DeepSpeed ZeRO) and the held-out evaluation. Not covered: the
algorithm itself (TRL's ``GRPOTrainer``; see docs/rl.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from factory.config import (ConfigError, FactoryConfig, RunConfig, load_config, read_yaml, top_level_keys,
                            validate_strict)
from factory.sections import Section


class PolicyConfig(Section):
    """The model GRPO starts from."""

    model: str | None = None
    """Local dir, hub id or ``tiny:teacher``; None: the factory config's ``generation.engine.model`` (its teacher)."""
    revision: str | None = None
    """Pinned hub revision of ``model`` (None with model None: the teacher's own ``generation.engine.revision``)."""


class SelectionConfig(Section):
    """Which prompts RL trains on: those the teacher solves sometimes (a group with mixed results carries signal)."""

    snapshot: str = "latest"
    """Version of the factory config's store whose rows (and dropped side table) give per-prompt pass rates."""
    pass_rate_from: Literal["auto", "pass_rate", "pass_rate_estimate"] = "auto"
    """Row column giving a prompt's pass rate: ``pass_rate`` (correct share of all its scored samples),
    ``pass_rate_estimate`` (adaptive sampling's unbiased estimate), auto: the estimate where a row has one."""
    min_pass_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Prompts solved this often or less are left out (0: only never-solved ones, whose groups are all wrong)."""
    max_pass_rate: float = Field(default=1.0, gt=0.0, le=1.0)
    """Prompts solved this often or more are left out (1: only always-solved ones, whose groups are all right)."""
    max_prompts: int | None = Field(default=None, ge=1)
    """Cap on selected prompts (a seeded choice among those in the band); None: all of them."""

    @model_validator(mode="after")
    def _band(self) -> "SelectionConfig":
        if self.min_pass_rate >= self.max_pass_rate:
            raise ValueError("min_pass_rate must be < max_pass_rate (the band would select nothing)")
        return self


class GRPOConfig(Section):
    """GRPO's settings (TRL ``GRPOConfig`` names in brackets)."""

    group_size: int = Field(default=8, ge=2)
    """Completions per prompt whose rewards are normalised against each other [num_generations]."""
    prompts_per_step: int = Field(default=8, ge=1)
    """Prompts per optimizer step; the step trains on prompts_per_step × group_size completions."""
    micro_batch_size: int = Field(default=8, ge=1)
    """Completions per worker per forward/backward (memory bound); the rest of a step is accumulated."""
    steps: int = Field(default=100, ge=1)
    """Optimizer steps [max_steps]; each generates a fresh batch of groups."""
    learning_rate: float = Field(default=1e-6, gt=0.0)
    """Peak AdamW rate; RL steps move a trained policy, so far below SFT rates on real models."""
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear"] = "constant_with_warmup"
    """Schedule after warmup; constant is the common GRPO choice (each step sees new data)."""
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Share of the steps spent warming the rate up linearly."""
    weight_decay: float = Field(default=0.0, ge=0.0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    """Global gradient-norm clip; guards against a rare group with extreme advantages."""
    beta: float = Field(default=0.001, ge=0.0)
    """KL penalty to the starting policy (R1: 0.001); 0 drops the reference model and the KL curve."""
    epsilon: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Lower clip of the importance ratio (PPO-style trust region)."""
    epsilon_high: float | None = Field(default=None, gt=0.0)
    """Upper clip (DAPO's clip-higher, 0.28); None: same as epsilon."""
    num_iterations: int = Field(default=1, ge=1)
    """Optimisation passes over each generated batch (μ); above 1 the clipping starts to matter."""
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"
    """Token aggregation of the loss; dapo normalises by active tokens (no length bias)."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide advantages by the group's (or batch's) reward std; none is Dr. GRPO's choice."""
    max_completion_length: int = Field(default=1024, ge=8)
    """Rollout length in tokens; a chain cut here has no answer and is scored by the verifiers as such."""
    mask_truncated_completions: bool = False
    """Leave completions cut at max_completion_length out of the loss (DAPO) instead of scoring them."""
    temperature: float = Field(default=1.0, gt=0.0)
    """Rollout sampling temperature (exploration)."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Rollout nucleus cut-off."""
    save_every_steps: int | None = Field(default=None, ge=1)
    """Resumable checkpoints (weights, optimizer, step) every this many steps; None: only the final model."""
    seed: int = 0
    """Seeds prompt order and rollouts."""


class RewardsConfig(Section):
    """Weights of the reward functions summed into a completion's reward."""

    correctness: float = Field(default=1.0, ge=0.0)
    """Verifier verdict: 1 correct, 0 wrong/no answer (math-verify or sandboxed tests)."""
    format: float = Field(default=0.0, ge=0.0)
    """R1 format (factory.think.format_ok): 1 well-formed <think> chain with an answer, else 0."""
    reward_model: float = Field(default=0.0, ge=0.0)
    """Reward-model score (the factory config's ``reward`` section; it must be enabled when this is > 0)."""

    @model_validator(mode="after")
    def _some_reward(self) -> "RewardsConfig":
        if self.correctness == self.format == self.reward_model == 0.0:
            raise ValueError("at least one reward weight must be > 0")
        return self


class RolloutConfig(Section):
    """Which engine draws the rollouts."""

    engine: Literal["transformers", "vllm_colocate", "vllm_server"] = "transformers"
    """transformers: the policy's own generate (CPU, tests); vllm_colocate: a vLLM engine per GPU worker;
    vllm_server: a separate ``trl vllm-serve`` process (weights pushed over NCCL)."""
    vllm_gpu_memory_utilization: float = Field(default=0.3, gt=0.0, le=1.0)
    """vllm_colocate: share of each GPU vLLM takes beside the training state."""
    vllm_tensor_parallel_size: int = Field(default=1, ge=1)
    """vllm_colocate: GPUs one rollout engine spans."""
    vllm_server_base_url: str | None = None
    """vllm_server: the server's base URL (e.g. http://rollout-node:8000)."""

    @model_validator(mode="after")
    def _server_url(self) -> "RolloutConfig":
        if self.engine == "vllm_server" and not self.vllm_server_base_url:
            raise ValueError("vllm_server_base_url is required when engine is vllm_server")
        return self


class WorkersConfig(Section):
    """Ray Train workers, one DeepSpeed rank each (data parallel)."""

    num_workers: int = Field(default=1, ge=1)
    """Ranks; each generates and trains on its share of every step's completions."""
    use_gpu: bool = False
    """GPUs (NCCL, bf16) or CPU (gloo, fp32 only: DeepSpeed's CPU route has no bf16 here)."""
    cpus_per_worker: float = Field(default=1.0, gt=0.0)
    """CPUs Ray reserves per worker; also its torch thread count (at least 1)."""
    gpus_per_worker: float = Field(default=1.0, ge=0.0)
    """GPUs Ray reserves per worker when use_gpu is set."""
    zero_stage: int = Field(default=2, ge=0, le=3)
    """ZeRO stage: 2 shards optimizer state and gradients, 3 also parameters (7B+ policies)."""
    offload_optimizer: bool = False
    """Optimizer state in CPU memory (ZeRO >= 1): bigger policies on fewer GPUs."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """auto: bf16 on GPU, fp32 on CPU."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: long rollouts fit at ~1.3× step time."""

    @model_validator(mode="after")
    def _check(self) -> "WorkersConfig":
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer requires zero_stage >= 1")
        if self.precision == "bf16" and not self.use_gpu:
            raise ValueError("precision bf16 requires use_gpu: true (the CPU DeepSpeed route is fp32 only)")
        return self

    @property
    def dtype(self) -> str:
        """The resolved precision: "bf16" or "fp32"."""
        return ("bf16" if self.use_gpu else "fp32") if self.precision == "auto" else self.precision


class RLEvalConfig(Section):
    """Held-out pass@1 of the policy before and after RL (the factory config's ``eval.heldout`` prompts)."""

    enabled: bool = True
    """Off skips both evaluations (smoke runs)."""
    before: bool = True
    """Off skips the starting policy's evaluation (its figure is already known, e.g. from an earlier run)."""
    samples: int = Field(default=8, ge=1)
    """Samples per held-out problem; pass@1 averages them (sampled, so exploration gains show)."""
    temperature: float = Field(default=0.6, ge=0.0)
    """The factory's generation temperature, so the figure is what distillation will see."""
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    """The factory's generation nucleus."""
    max_tokens: int = Field(default=1024, ge=1)
    """Answer budget per sample."""

    @model_validator(mode="after")
    def _check(self) -> "RLEvalConfig":
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0 (greedy samples are identical)")
        return self


class RLConfig(Section):
    """A whole RL job."""

    factory: str
    """The distillation config (YAML) whose teacher, prompting, verifiers, reward model, store and held-out
    set RL uses."""
    run: RunConfig
    """Run identity: the checkpoint, curves and report go to ``<work_dir>/<name>``."""
    policy: PolicyConfig = PolicyConfig()
    """Starting model."""
    prompts: SelectionConfig = SelectionConfig()
    """Prompt selection from the snapshot's pass rates."""
    grpo: GRPOConfig = GRPOConfig()
    """The algorithm's settings."""
    rewards: RewardsConfig = RewardsConfig()
    """Reward mix."""
    rollout: RolloutConfig = RolloutConfig()
    """Rollout engine."""
    workers: WorkersConfig = WorkersConfig()
    """Training workers."""
    eval: RLEvalConfig = RLEvalConfig()
    """Held-out evaluation before and after."""

    @model_validator(mode="after")
    def _shapes(self) -> "RLConfig":
        completions = self.grpo.prompts_per_step * self.grpo.group_size
        per_rank = self.workers.num_workers * self.grpo.micro_batch_size
        if completions % per_rank:
            raise ValueError(f"grpo.prompts_per_step × grpo.group_size ({completions}) must be a multiple of "
                             f"workers.num_workers × grpo.micro_batch_size ({per_rank})")
        if self.rollout.engine != "transformers" and not self.workers.use_gpu:
            raise ValueError(f"rollout.engine {self.rollout.engine} needs workers.use_gpu: true (TRL's vLLM "
                             "rollouts run on CUDA); use transformers on CPU")
        return self

    @property
    def grad_accum(self) -> int:
        """Micro-batches each worker accumulates per optimizer step."""
        completions = self.grpo.prompts_per_step * self.grpo.group_size
        return completions // (self.workers.num_workers * self.grpo.micro_batch_size)


def parse_rl_config(data, origin: str = "<rl config>", overrides: tuple[str, ...] = ()) -> RLConfig:
    """Validate parsed YAML (strictly, as :func:`factory.config.parse_config`) into an RLConfig."""
    return validate_strict(RLConfig, data, origin, overrides, kind="RL config")


def is_rl_config(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is an RL config: one names its distillation config under a
    top-level ``factory:`` key, which a distillation config never has."""
    return "factory" in top_level_keys(path)


def load_rl_config(path: str | Path, overrides: tuple[str, ...] = ()) -> tuple[RLConfig, FactoryConfig]:
    """The RL config at ``path`` and the factory config it names, both validated (module docstring)."""
    cfg = parse_rl_config(read_yaml(path), str(path), overrides)
    factory_cfg = load_config(cfg.factory)
    check_against_factory(cfg, factory_cfg, str(path))
    return cfg, factory_cfg


def check_against_factory(cfg: RLConfig, factory_cfg: FactoryConfig, origin: str) -> None:
    """Rules spanning both files (ConfigError naming the RL field)."""
    if cfg.rewards.reward_model > 0 and not factory_cfg.reward.enabled:
        raise ConfigError(f"{origin}: invalid RL config\n  rewards.reward_model: > 0 needs reward.enabled "
                          f"in {cfg.factory} (the reward model is configured there)")
    if cfg.eval.enabled and not factory_cfg.eval.heldout:
        raise ConfigError(f"{origin}: invalid RL config\n  eval.enabled: {cfg.factory} names no eval.heldout "
                          "prompt sources to evaluate on")
