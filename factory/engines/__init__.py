"""Generation engines behind one interface (:mod:`factory.engines.base`).

Only this package imports vllm, and only inside functions: ``import factory.engines`` stays cheap.
"""

from __future__ import annotations

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
