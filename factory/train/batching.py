"""Micro-batch tensors from encoded samples, and the summed token loss.

Contract: a *sequence* is a list of encoded samples placed one after another; a micro-batch is a list
of sequences, right-padded to its longest one. ``position_ids`` restart at 0 for every sample (and
for the padding tail), and no attention mask is passed: transformers (5.x) then derives a
block-diagonal causal mask from the position restarts for every attention implementation (eager,
sdpa, flash varlen) -- but only without a KV cache, hence ``use_cache=False`` on every forward -- so no token attends across samples; padding sits after the real tokens, so
causality alone hides it. Labels are the token ids on target tokens and -100 on prompt and padding;
the model's next-token shift never pairs the end of one sample with the next sample's first token as
a target, since every sample starts with prompt tokens. The loss is summed over target tokens; the
caller divides by the global target-token count of the optimizer step (per-token normalisation).
"""

from __future__ import annotations

from typing import Sequence

IGNORE_INDEX = -100


def collate(sequences: Sequence[Sequence[tuple[Sequence[int], int]]], pad_id: int) -> dict:
    """``sequences``: per sequence, its samples as ``(input_ids, n_prompt)``. Returns LongTensors
    ``input_ids``, ``position_ids`` and ``labels`` of shape (len(sequences), longest)."""
    import torch

    width = max(sum(len(ids) for ids, _ in seq) for seq in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        start = 0
        for ids, n_prompt in seq:
            end = start + len(ids)
            input_ids[row, start:end] = torch.as_tensor(list(ids), dtype=torch.long)
            first_target = start + max(n_prompt, 1)  # a sample's first token is never a target
            labels[row, first_target:end] = input_ids[row, first_target:end]
            position_ids[row, start:end] = torch.arange(len(ids))
            start = end
        position_ids[row, start:] = torch.arange(width - start)
    return {"input_ids": input_ids, "position_ids": position_ids, "labels": labels}


def target_tokens(batch: dict) -> int:
    """Tokens of ``batch`` that carry loss (a label predicted from the previous position)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def summed_token_loss(model, batch: dict, device=None):
    """Sum of next-token cross-entropy over the target tokens of ``batch`` (fp32 logits)."""
    import torch.nn.functional as F

    if device is not None:
        batch = {key: value.to(device) for key, value in batch.items()}
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
