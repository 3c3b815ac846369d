"""Config sections for generation engines: which backend runs which model, and how it samples.

Covered: the knobs of the three backends (vLLM in-process, an OpenAI-compatible HTTP endpoint, and
transformers ``generate`` as a fallback) and the sampling parameters shared by all of them. Not
covered: Ray resources (``factory.stages.generate.GenerationResources``) and prompt rendering
(``factory.stages.generate.PromptingConfig``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from factory.sections import Section


class EngineConfig(Section):
    """The model and the backend that serves it."""

    backend: Literal["vllm", "openai", "transformers"] = "vllm"
    """vllm is the fast default; openai reuses a running server; transformers is the fallback."""
    model: str = "tiny:teacher"
    """Local model dir, hub id, or "tiny:<name>" for the locally built test models."""
    revision: str | None = None
    """Pinned model revision (commit), recorded in every row so samples are traceable."""
    trust_remote_code: bool = False
    """Run code shipped with the model; only allowed with a pinned revision (supply-chain risk)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weight/activation dtype; "auto" takes the checkpoint's own."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    """GPUs one engine shards each layer over (models too big for one GPU)."""
    pipeline_parallel_size: int = Field(default=1, ge=1)
    """GPUs one engine splits the layer stack over (models too big for one node's TP)."""
    max_model_len: int | None = Field(default=None, ge=16)
    """Context limit (prompt + completion); longer prompts get status prompt_too_long. None: model's."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    """Share of GPU memory vLLM may take for weights and KV cache."""
    max_num_seqs: int = Field(default=256, ge=1)
    """Sequences decoded at once by vLLM's continuous batcher (throughput vs memory)."""
    enable_prefix_caching: bool = True
    """Reuse KV cache of shared prefixes (chat template, the n samples of one prompt)."""
    enforce_eager: bool = False
    """Skip CUDA graphs / torch.compile: slower decode, much faster start (tests, CPU)."""
    env: dict[str, str] = {}
    """Environment of the engine actors (e.g. VLLM_CPU_KVCACHE_SPACE on CPU; HF_HUB_OFFLINE)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """openai backend: the OpenAI-compatible server's /v1 root."""
    served_model_name: str | None = None
    """openai backend: model name the server knows; None = the resolved model path (vllm serve's default)."""
    api_key_env: str | None = None
    """openai backend: name of the environment variable holding the API key (never the key itself)."""
    max_concurrency: int = Field(default=32, ge=1)
    """openai backend: requests in flight per actor, so the server's batcher stays fed but not flooded."""
    request_timeout_s: float = Field(default=600.0, gt=0.0)
    """openai backend: a request slower than this counts as failed (then retried)."""
    max_retries: int = Field(default=3, ge=0, le=20)
    """openai backend: retries of a failed request (5xx, timeout, connection) before engine_error."""
    retry_backoff_s: float = Field(default=1.0, ge=0.0)
    """openai backend: first retry delay; doubled on each further retry."""

    @field_validator("trust_remote_code")
    @classmethod
    def _remote_code_needs_revision(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("revision"):
            raise ValueError("trust_remote_code: true requires a pinned revision (set engine.revision)")
        return value

    @property
    def num_devices(self) -> int:
        """GPUs one engine needs: tensor × pipeline parallel size."""
        return self.tensor_parallel_size * self.pipeline_parallel_size


class SamplingConfig(Section):
    """How completions are drawn (R1 recipe defaults)."""

    n: int = Field(default=4, gt=0)
    """Samples per prompt; drawn natively by the engine so the prompt's prefill is shared."""
    temperature: float = Field(default=0.6, ge=0.0)
    """0.6 as recommended for R1-style reasoning (0 = greedy, used for eval)."""
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    """Nucleus sampling cut-off (R1 recipe: 0.95)."""
    max_tokens: int = Field(default=32768, ge=1)
    """Completion budget; chains cut at it get finish_reason "length" (32k on real clusters)."""
    seed: int | None = 0
    """Base seed; sample i of a prompt uses a seed derived from it so reruns redraw the same."""
