"""Streaming chat engines for ``factory serve``: vLLM where it runs, transformers otherwise.

Both take an already rendered and tokenized prompt and yield the completion's text so far, as an
async iterator, without blocking the event loop that serves the UI:

- transformers: ``generate`` runs in its own thread and hands each new token to a queue (a
  ``BaseStreamer``); the handler awaits the queue in a worker thread and re-decodes the reply so
  far. (``TextIteratorStreamer`` would hold text back until a space or newline, so replies without
  spaces, such as long formulas, would arrive in lumps.) Closing the iterator (the user pressed
  Stop or left) sets a stopping criterion, so the thread ends within one decode step.
- vLLM: its async engine (:mod:`factory.engines.vllm_stream`), continuous batching across chats.

Device and dtype follow the hardware: bf16 on a CUDA GPU, fp32 on CPU (fp16/bf16 matmuls on CPU
are slow or unsupported). ``auto`` picks vLLM when :func:`vllm_usable` says it can generate here and
falls back to transformers, with a warning, if the vLLM engine fails to start (e.g. a model shape
its CPU kernels reject). Not covered: multi-GPU serving, quantized weights.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)
BACKENDS = ("auto", "vllm", "transformers")
_STREAM_TIMEOUT_S = 600.0
_DONE = object()


@dataclass(frozen=True)
class Placement:
    """Where the model runs and in which dtype."""

    device: str
    """"cuda" or "cpu"."""
    dtype: str
    """"bfloat16" on GPU, "float32" on CPU."""


def pick_placement() -> Placement:
    """bf16 on a CUDA GPU (fp16 where the GPU lacks bf16), fp32 on CPU."""
    import torch

    if torch.cuda.is_available():
        return Placement("cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    return Placement("cpu", "float32")


class ChatEngine(Protocol):
    """A loaded model streaming completions for the chat UI."""

    backend: str
    """"vllm" or "transformers" (shown in the UI)."""
    placement: Placement
    """Device and dtype the weights were loaded with."""
    context_tokens: int
    """Prompt + completion limit; longer prompts are refused with a message."""

    def stream(self, prompt_ids: list[int], max_tokens: int, temperature: float, top_p: float) -> AsyncIterator[str]:
        """Yield the completion's text so far each time it grows; closing it stops generation."""

    def close(self) -> None:
        """Release the model."""


def context_limit(model_limit: int | None, tokenizer) -> int:
    """The context to enforce: the model's limit, cut by the tokenizer's ``model_max_length``
    when that is a real number (transformers uses a huge sentinel for "unset")."""
    limits = [model_limit, getattr(tokenizer, "model_max_length", None)]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 10**8]
    if not limits:
        raise ValueError("cannot tell the model's context length (no max_position_embeddings in config.json)")
    return min(limits)


class TransformersChatEngine:
    """:class:`ChatEngine` on ``transformers`` ``generate`` in a thread, one token at a time."""

    backend = "transformers"

    def __init__(self, model_dir: str, tokenizer, placement: Placement):
        import torch
        import transformers

        self.placement = placement
        self.version = transformers.__version__
        self._tokenizer = tokenizer
        self._model = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=getattr(torch, placement.dtype)
        ).to(placement.device).eval()
        self.context_tokens = context_limit(getattr(self._model.config, "max_position_embeddings", None), tokenizer)
        eos = self._model.generation_config.eos_token_id
        self._eos = sorted(set(eos if isinstance(eos, list) else [eos]) - {None}) or [tokenizer.eos_token_id]
        pad = self._model.generation_config.pad_token_id
        self._pad = pad if pad is not None else self._eos[0]

    def _generate(self, prompt_ids, max_tokens, temperature, top_p, tokens: queue.Queue, stop: threading.Event) -> None:
        """Run ``generate`` (in a worker thread), putting each new token id list on ``tokens``;
        the exception it failed with, if any, then always ``_DONE``."""
        import torch
        import transformers
        from transformers.generation.streamers import BaseStreamer

        class _StopWhenAsked(transformers.StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        class _TokenFeed(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if self.prompt_seen:
                    tokens.put(value.reshape(-1).tolist())
                self.prompt_seen = True

            def end(self):
                pass

        input_ids = torch.tensor([prompt_ids], device=self.placement.device)
        try:
            with torch.no_grad():
                self._model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    do_sample=True,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=None,
                    max_new_tokens=max_tokens,
                    eos_token_id=self._eos,
                    pad_token_id=self._pad,
                    streamer=_TokenFeed(),
                    stopping_criteria=transformers.StoppingCriteriaList([_StopWhenAsked()]),
                )
        except Exception as exc:
            log.exception("generation failed")
            tokens.put(exc)
        finally:
            tokens.put(_DONE)

    async def stream(self, prompt_ids: list[int], max_tokens: int, temperature: float, top_p: float) -> AsyncIterator[str]:
        """Decodes all new tokens at each step (skipping special tokens), so multi-token characters
        and word pieces come out right; a text ending in an incomplete character waits a step."""
        tokens: queue.Queue = queue.Queue()
        stop = threading.Event()
        worker = threading.Thread(
            target=self._generate, args=(prompt_ids, max_tokens, temperature, top_p, tokens, stop),
            name="serve-generate", daemon=True,
        )
        worker.start()
        new_ids: list[int] = []
        failure = None
        try:
            done = False
            while not done:
                items = [await asyncio.to_thread(tokens.get, True, _STREAM_TIMEOUT_S)]
                while not tokens.empty():  # coalesce what arrived meanwhile: one UI update for all
                    items.append(tokens.get_nowait())
                for item in items:
                    if item is _DONE:
                        done = True
                    elif isinstance(item, Exception):
                        failure = item
                    else:
                        new_ids.extend(t for t in item if t not in self._eos)
                text = self._tokenizer.decode(new_ids, skip_special_tokens=True)
                if text and (done or not text.endswith("\ufffd")):
                    yield text
        finally:
            stop.set()
        if failure is not None:
            raise RuntimeError(f"generation failed: {failure!r}") from failure

    def close(self) -> None:
        self._model = None


class VllmChatEngine:
    """:class:`ChatEngine` on vLLM's async engine."""

    backend = "vllm"

    def __init__(self, model_dir: str, tokenizer, placement: Placement, max_num_seqs: int):
        from factory.engines.vllm_stream import VllmStreamer

        self.placement = placement
        self._streamer = VllmStreamer(model_dir, placement.dtype, placement.device == "cuda", max_num_seqs)
        self.version = self._streamer.version
        self.context_tokens = context_limit(self._streamer.max_model_len, tokenizer)

    def stream(self, prompt_ids: list[int], max_tokens: int, temperature: float, top_p: float) -> AsyncIterator[str]:
        return self._streamer.stream(prompt_ids, max_tokens, temperature, top_p)

    def close(self) -> None:
        self._streamer.close()


def open_chat_engine(model_dir: str, tokenizer, backend: str, max_num_seqs: int) -> ChatEngine:
    """Load ``model_dir`` with ``backend`` ("auto", "vllm" or "transformers") on this machine's
    device. An explicit "vllm" that cannot start raises; "auto" falls back to transformers."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from factory.engines.vllm_stream import vllm_usable

    placement = pick_placement()
    if backend == "vllm" or (backend == "auto" and vllm_usable(placement.device == "cuda")):
        try:
            return VllmChatEngine(model_dir, tokenizer, placement, max_num_seqs)
        except Exception:
            if backend == "vllm":
                raise
            log.warning("vLLM could not start for %s; serving with transformers instead", model_dir, exc_info=True)
    return TransformersChatEngine(model_dir, tokenizer, placement)
