"""Learning-rate multiplier per optimizer step: linear warmup, then cosine to 0 or constant then a
linear decay to 0 over the last ``DECAY_SHARE`` of the steps. Pure; used through LambdaLR, whose
state DeepSpeed checkpoints, so a resumed run continues the same curve."""

from __future__ import annotations

import math

DECAY_SHARE = 0.1
"""constant_decay: share of the steps spent decaying linearly to 0 at the end."""


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float, schedule: str) -> float:
    """Multiplier of the peak LR for optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = math.ceil(warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    remaining = max(total_steps - warmup, 1)
    progress = min((step - warmup) / remaining, 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "constant_decay":
        decay_start = 1.0 - DECAY_SHARE
        return 1.0 if progress < decay_start else max(0.0, (1.0 - progress) / DECAY_SHARE)
    raise ValueError(f"unknown schedule {schedule!r}")
