"""The one interface every generation backend implements, and the values that cross it.

An engine turns one already-tokenized prompt into ``n`` samples. Prompt rendering, the
prompt-length check, row building and checkpointing live in the stage
(``factory.stages.generate.udf``), so backends stay small and produce the same output.

Error contract: a problem with *one prompt* (rejected by the engine, bad request) comes back as a
``PromptResult`` with ``status="engine_error"``; the run goes on. A problem with the *engine*
(its process died, it cannot serve any request) raises ``EngineDead``: the caller must not retry
on the same engine but let its process exit so Ray replaces it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

STATUS_OK = "ok"
STATUS_PROMPT_TOO_LONG = "prompt_too_long"
STATUS_ENGINE_ERROR = "engine_error"


class EngineDead(RuntimeError):
    """The engine can serve no further request; the process holding it should exit."""


@dataclass(frozen=True)
class SamplingSpec:
    """Sampling parameters of one request; ``seed`` is this prompt's seed (sample i uses seed + i)."""

    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None


@dataclass(frozen=True)
class PromptRequest:
    """One prompt, rendered and tokenized by the stage exactly as the engine must see it."""

    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingSpec


@dataclass(frozen=True)
class Sample:
    """One completion of a prompt."""

    text: str
    completion_tokens: int
    finish_reason: str | None
    cumulative_logprob: float | None


@dataclass(frozen=True)
class PromptResult:
    """All samples of one prompt (exactly ``n`` when status is ok, none otherwise)."""

    request_id: str
    status: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None


class Engine(Protocol):
    """A loaded model able to sample completions; one per Ray actor."""

    backend: str
    """"vllm" | "openai" | "transformers", written to each row."""
    version: str
    """Backend library version, written to each row."""
    max_model_len: int | None
    """Context limit used for the prompt_too_long check; None when unknown (server decides)."""

    async def generate(self, request: PromptRequest) -> PromptResult:
        """Sample ``request.sampling.n`` completions; many calls may be in flight at once."""

    def close(self) -> None:
        """Release the model (GPU memory, subprocesses, connections)."""


def prompt_seed(base_seed: int | None, prompt_key: str) -> int | None:
    """A per-prompt seed from the configured base seed, stable across runs and machines.

    Different prompts get unrelated random streams; ``None`` stays ``None`` (non-reproducible)."""
    if base_seed is None:
        return None
    digest = hashlib.sha256(f"{base_seed}:{prompt_key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x3FFFFFFF
