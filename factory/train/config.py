"""Config section for student SFT (Ray Train workers × DeepSpeed ZeRO).

Covered: the student model, worker resources, ZeRO stage/offload/precision, optimisation
(AdamW, warmup + cosine or constant + decay, clipping, accumulation), sequence building (max length,
packing), sample order (seeded shuffle or easy-to-hard curriculum) and checkpoint cadence.
Not covered: where the data comes from (``run_training`` takes the snapshot's file list) and where
the run directory lives (the caller passes ``out_dir``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from factory.sections import Section


class TrainConfig(Section):
    """How the student is fine-tuned on a committed snapshot."""

    student: str = "tiny:student"
    """Local model dir, hub id, or "tiny:student" for the locally built test model; training starts from it."""
    revision: str | None = None
    """Pinned model revision, recorded in the training card so the student's origin is traceable."""
    trust_remote_code: bool = False
    """Run code shipped with the model; only allowed with a pinned revision (supply-chain risk)."""
    num_workers: int = Field(default=1, ge=1)
    """Data-parallel Ray Train workers (one DeepSpeed rank each)."""
    use_gpu: bool = False
    """Train on GPUs (NCCL, bf16 by default); False trains on CPU (gloo, fp32 by default)."""
    cpus_per_worker: float = Field(default=1.0, gt=0.0)
    """CPUs Ray reserves per worker; also the worker's torch thread count (at least 1)."""
    gpus_per_worker: float = Field(default=1.0, ge=0.0)
    """GPUs Ray reserves per worker when use_gpu is set."""
    zero_stage: int = Field(default=2, ge=0, le=3)
    """ZeRO stage: 0 plain DDP, 1 shards optimizer state, 2 also gradients, 3 also parameters."""
    offload_optimizer: bool = False
    """Keep optimizer state (and its step) on CPU memory: fits bigger students on fewer GPUs (ZeRO >= 1)."""
    offload_params: bool = False
    """Keep parameters on CPU memory between uses (ZeRO-3 only): the largest models on the fewest GPUs."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Training dtype; "auto" is bf16 on GPU and fp32 on CPU (CPU bf16 matmuls are slow and lossy)."""
    lr: float = Field(default=1e-5, gt=0.0)
    """Peak learning rate (AdamW) reached after warmup."""
    weight_decay: float = Field(default=0.0, ge=0.0)
    """AdamW decoupled weight decay on matrices (not on norms and biases)."""
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    """Share of the optimizer steps spent warming the learning rate up linearly from 0."""
    schedule: Literal["cosine", "constant_decay"] = "cosine"
    """After warmup: cosine to 0, or constant then a linear decay to 0 over the last 10% of steps."""
    epochs: int = Field(default=1, ge=1)
    """Passes over the snapshot (R1-Distill-style SFT uses 2-3)."""
    micro_batch_size: int = Field(default=1, ge=1)
    """Sequences per worker per forward/backward (memory bound)."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches accumulated per optimizer step; global batch = workers × micro × accum sequences."""
    grad_clip: float | None = Field(default=1.0, gt=0.0)
    """Clip the global gradient norm to this (None: no clipping); guards against loss spikes."""
    max_seq_len: int = Field(default=4096, ge=8)
    """Tokens per training sequence; longer samples are truncated (completion end cut) and counted."""
    packing: bool = False
    """Pack several samples per sequence (no attention across them): fewer pad tokens, same loss."""
    curriculum: Literal["shuffle", "easy_to_hard"] = "shuffle"
    """Sample order: seeded shuffle, or easy (high teacher pass rate, short) to hard."""
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    """Save a resumable checkpoint every this many optimizer steps (None: only the final one)."""
    seed: int = 0
    """Seeds the sample order; the model init comes from the student checkpoint."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps even if the epochs are not done (smoke runs, budgets)."""

    @field_validator("trust_remote_code")
    @classmethod
    def _remote_code_needs_revision(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("revision"):
            raise ValueError("trust_remote_code: true requires a pinned revision (set train.revision)")
        return value

    @field_validator("offload_params")
    @classmethod
    def _param_offload_needs_zero3(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("zero_stage") != 3:
            raise ValueError("offload_params requires zero_stage=3 (only ZeRO-3 partitions parameters)")
        return value

    @field_validator("offload_optimizer")
    @classmethod
    def _optimizer_offload_needs_zero(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("zero_stage") == 0:
            raise ValueError("offload_optimizer requires zero_stage >= 1 (stage 0 has no sharded optimizer)")
        return value

    @property
    def dtype(self) -> str:
        """The resolved training precision: "bf16" or "fp32"."""
        if self.precision == "auto":
            return "bf16" if self.use_gpu else "fp32"
        return self.precision
