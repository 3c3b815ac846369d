"""transformers backend: the fallback when vLLM is unavailable (odd hardware, debugging).

One prompt at a time under a lock (``generate`` with ``num_return_sequences=n``); sampling when
temperature > 0, greedy otherwise (then the n samples are copies of one greedy decode). Sample i of a prompt is reproducible for a given seed on a given
torch build, but does not match vLLM's draws. Not covered: batching across prompts, throughput.
"""

from __future__ import annotations

import asyncio

from factory.engines.base import STATUS_OK, PromptRequest, PromptResult, Sample
from factory.engines.config import EngineConfig

DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


class HFEngine:
    """``factory.engines.base.Engine`` on ``transformers`` ``generate``."""

    backend = "transformers"

    def __init__(self, cfg: EngineConfig, model_dir: str):
        import torch
        import transformers

        self.version = transformers.__version__
        revision = cfg.revision if model_dir == cfg.model else None
        dtype = getattr(torch, DTYPES[cfg.dtype]) if cfg.dtype in DTYPES else "auto"
        self._model = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, revision=revision, trust_remote_code=cfg.trust_remote_code, dtype=dtype
        ).eval()
        gen_cfg = self._model.generation_config
        eos = gen_cfg.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._pad = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else min(self._eos)
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(
            model_dir, revision=revision, trust_remote_code=cfg.trust_remote_code
        )
        self.max_model_len = cfg.max_model_len or getattr(self._model.config, "max_position_embeddings", None)
        self._lock = asyncio.Lock()

    async def generate(self, request: PromptRequest) -> PromptResult:
        async with self._lock:
            return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: PromptRequest) -> PromptResult:
        import torch

        spec = request.sampling
        input_ids = torch.tensor([request.prompt_token_ids])
        budget = spec.max_tokens
        if self.max_model_len:
            budget = min(budget, self.max_model_len - input_ids.shape[1])
        if spec.seed is not None:
            torch.manual_seed(spec.seed)
        sample = spec.temperature > 0
        with torch.no_grad():
            out = self._model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=sample,
                temperature=spec.temperature if sample else None,
                top_p=spec.top_p if sample else None,
                top_k=None,
                num_return_sequences=spec.n if sample else 1,
                max_new_tokens=budget,
                eos_token_id=sorted(self._eos),
                pad_token_id=self._pad,
                output_scores=True,
                return_dict_in_generate=True,
            )
        scores = self._model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        samples = []
        for index in range(spec.n):
            row = index if sample else 0  # greedy: the n samples are one and the same draw
            tokens = out.sequences[row, input_ids.shape[1] :].tolist()
            length, finish = len(tokens), "length"
            for i, tok in enumerate(tokens):
                if tok in self._eos:
                    length, finish = i + 1, "stop"
                    break
            text_tokens = tokens[: length - 1] if finish == "stop" else tokens[:length]
            samples.append(
                Sample(
                    text=self._tokenizer.decode(text_tokens, skip_special_tokens=True),
                    completion_tokens=length,
                    finish_reason=finish,
                    cumulative_logprob=float(scores[row, :length].sum()),
                )
            )
        return PromptResult(request.request_id, STATUS_OK, samples)

    def close(self) -> None:
        self._model = None
