"""Config section for student SFT (Ray Train workers × DeepSpeed ZeRO).

Covered: the student model, worker resources, ZeRO stage/offload/precision, optimisation (AdamW,
warmup + cosine / cosine to a floor / constant + decay, clipping, accumulation), memory (activation
checkpointing, chunked loss, attention kernel, Liger kernels, Ulysses sequence parallelism),
sequence building (max length, packing, end-of-turn token), sample order (seeded shuffle or
easy-to-hard curriculum), checkpoint cadence and where metrics are logged. Not covered: where the
data comes from (``run_training`` takes the snapshot's file list) and where the run directory lives
(the caller passes ``out_dir``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from factory.sections import Section

CHECKPOINTING_FROM_TOKENS = 4096
"""gradient_checkpointing None turns it on once a micro-batch holds more tokens than this (measured:
benchmarks/bench_train_memory.py; below it activations are small next to weights and optimizer state)."""


class TrainConfig(Section):
    """How the student is fine-tuned on a committed snapshot."""

    student: str = "tiny:student"
    """Local model dir, hub id, or "tiny:student" for the locally built test model; training starts from it."""
    revision: str | None = None
    """Pinned model revision, recorded in the training card so the student's origin is traceable."""
    trust_remote_code: bool = False
    """Run code shipped with the model; only allowed with a pinned revision (supply-chain risk)."""
    num_workers: int = Field(default=1, ge=1)
    """Ray Train workers (one DeepSpeed rank each); data-parallel unless sequence_parallel_size > 1."""
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
    schedule: Literal["cosine", "cosine_min_lr", "constant_decay"] = "cosine"
    """After warmup: cosine to 0, cosine to min_lr_ratio × lr (open-r1), or constant then a linear decay to 0."""
    min_lr_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    """cosine_min_lr's floor as a share of the peak LR (open-r1's min_lr_rate 0.1): late steps keep learning."""
    epochs: int = Field(default=1, ge=1)
    """Passes over the snapshot (R1-Distill-style SFT uses 2-3)."""
    micro_batch_size: int = Field(default=1, ge=1)
    """Sequences per worker per forward/backward, concatenated into one padding-free row (memory bound)."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches accumulated per optimizer step; global batch = data-parallel ranks × micro × accum sequences."""
    grad_clip: float | None = Field(default=1.0, gt=0.0)
    """Clip the global gradient norm to this (None: no clipping); guards against loss spikes (open-r1: 0.2)."""
    max_seq_len: int = Field(default=4096, ge=8)
    """Tokens per training sequence; longer samples are dropped before training (counted), never cut."""
    packing: bool = False
    """Pack several samples per sequence (no attention across them): fewer pad tokens, same loss."""
    eos_token: str | None = None
    """Token appended after every response and saved as the checkpoint's EOS (None: the student's own);
    ChatML students whose tokenizer ends with <|endoftext|> need <|im_end|> (open-r1's eos_token)."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Attention kernel (transformers' name); sdpa runs everywhere, flash_attention_2 needs flash-attn on CUDA."""
    gradient_checkpointing: bool | None = None
    """Recompute layer activations in backward (~1.3× step time, far less memory); None: on when a
    micro-batch holds more than CHECKPOINTING_FROM_TOKENS tokens."""
    loss_chunk_tokens: int | None = Field(default=1024, ge=1)
    """Target tokens per chunk of the cross-entropy, so full-vocabulary fp32 logits exist for one chunk
    at a time (recomputed in backward); None computes the logits of the whole micro-batch at once."""
    liger_kernels: bool = False
    """Liger's fused RMSNorm/RoPE/SwiGLU Triton kernels (CUDA only, liger-kernel package): less memory."""
    sequence_parallel_size: int = Field(default=1, ge=1)
    """DeepSpeed Ulysses: this many workers share each sequence (split along tokens, heads in attention),
    for sequences longer than one worker holds; must divide num_workers."""
    curriculum: Literal["shuffle", "easy_to_hard"] = "shuffle"
    """Sample order: seeded shuffle, or easy (high teacher pass rate, short) to hard."""
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    """Save a resumable checkpoint every this many optimizer steps (None: only the final one)."""
    seed: int = 0
    """Seeds the sample order; the model init comes from the student checkpoint."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps even if the epochs are not done (smoke runs, budgets)."""
    log_to: list[Literal["tensorboard", "wandb", "mlflow"]] = ["tensorboard"]
    """Where per-step loss, LR, grad norm, tokens/s, MFU and peak memory go (TensorBoard under out_dir)."""
    tracking_project: str = "distill-factory"
    """W&B project / MLflow experiment the run is logged under."""
    mlflow_tracking_uri: str | None = None
    """MLflow server or store (None: MLflow's default, MLFLOW_TRACKING_URI or ./mlruns)."""
    peak_flops_per_device: float | None = Field(default=None, gt=0.0)
    """Dense FLOP/s of one device at the training dtype, for the MFU estimate; None: looked up from the
    GPU's name (e.g. H100/H200 bf16 989e12), no MFU on CPU."""

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

    @field_validator("liger_kernels")
    @classmethod
    def _liger_needs_gpu(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("use_gpu"):
            raise ValueError("liger_kernels requires use_gpu: true (Liger's kernels are Triton GPU kernels)")
        return value

    @field_validator("sequence_parallel_size")
    @classmethod
    def _sequence_parallel_fits(cls, value: int, info: ValidationInfo) -> int:
        if value == 1:
            return value
        if info.data.get("num_workers", 1) % value:
            raise ValueError(f"sequence_parallel_size {value} must divide num_workers {info.data.get('num_workers')}")
        if info.data.get("attn_implementation") == "eager":
            raise ValueError("sequence_parallel_size > 1 does not work with attn_implementation eager (DeepSpeed "
                             "Ulysses drops the 4D mask eager needs); use sdpa or flash_attention_2")
        if info.data.get("attn_implementation") == "sdpa" and (info.data.get("packing") or info.data.get("micro_batch_size", 1) > 1):
            raise ValueError("sequence_parallel_size > 1 with attn_implementation sdpa needs packing: false and "
                             "micro_batch_size: 1 (Ulysses passes sdpa no mask, so packed samples would attend to "
                             "each other); flash_attention_2 keeps them apart")
        return value

    @property
    def dtype(self) -> str:
        """The resolved training precision: "bf16" or "fp32"."""
        if self.precision == "auto":
            return "bf16" if self.use_gpu else "fp32"
        return self.precision

    @property
    def checkpointing(self) -> bool:
        """Whether activation checkpointing is on (see ``gradient_checkpointing``)."""
        if self.gradient_checkpointing is None:
            return self.micro_batch_size * self.max_seq_len > CHECKPOINTING_FROM_TOKENS
        return self.gradient_checkpointing

    @property
    def data_parallel_size(self) -> int:
        """Ranks that train on different sequences (workers / sequence_parallel_size)."""
        return self.num_workers // self.sequence_parallel_size
