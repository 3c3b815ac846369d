"""Student SFT: Ray Train workers each running DeepSpeed ZeRO on a committed snapshot.

Public API: :class:`TrainConfig`, :func:`run_training`, :class:`TrainResult`. Importing this package
does not import torch, transformers, deepspeed or ray.
"""

from factory.train.config import TrainConfig
from factory.train.run import TrainResult, run_training

__all__ = ["TrainConfig", "TrainResult", "run_training"]
