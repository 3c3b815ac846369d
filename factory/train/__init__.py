"""Student SFT: Ray Train workers each running DeepSpeed ZeRO on a committed snapshot.

Public API: :class:`TrainConfig`, :func:`run_training`, :class:`TrainResult`, resolved on first use
(PEP 562), so importing a submodule (``factory.train.batching``, ``.loss``, ``.perf``, ``.model``)
needs neither pydantic nor pyarrow -- the GPU check runs them on an image without either. Importing
this package does not import torch, transformers, deepspeed or ray.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "TrainResult", "run_training"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from factory.train.config import TrainConfig

        return TrainConfig
    if name in ("TrainResult", "run_training"):
        from factory.train import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
