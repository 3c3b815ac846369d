"""Learning-rate multiplier per optimizer step: linear warmup, then cosine to 0 (``cosine``), cosine
to a floor of ``min_lr_ratio`` (``cosine_min_lr``, transformers' cosine_with_min_lr as open-r1 uses
it), or constant then a linear decay to 0 over the last ``DECAY_SHARE`` of the steps. Pure; used
through LambdaLR, whose state DeepSpeed checkpoints, so a resumed run continues the same curve."""

from __future__ import annotations

import math

DECAY_SHARE = 0.1
"""constant_decay: share of the steps spent decaying linearly to 0 at the end."""


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float, schedule: str, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak LR for optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = math.ceil(warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    remaining = max(total_steps - warmup, 1)
    progress = min((step - warmup) / remaining, 1.0)
    if schedule in ("cosine", "cosine_min_lr"):
        floor = min_lr_ratio if schedule == "cosine_min_lr" else 0.0
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "constant_decay":
        decay_start = 1.0 - DECAY_SHARE
        return 1.0 if progress < decay_start else max(0.0, (1.0 - progress) / DECAY_SHARE)
    raise ValueError(f"unknown schedule {schedule!r}")
