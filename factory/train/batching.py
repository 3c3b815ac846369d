"""Micro-batch tensors from encoded samples.

Contract: a *sequence* is a list of encoded samples placed one after another (the plan packs them
within ``max_seq_len``); a micro-batch is a list of sequences. ``position_ids`` restart at 0 for
every sample and no attention mask is passed: transformers (5.x) then derives a block-diagonal
causal mask from the position restarts -- only without a KV cache, hence ``use_cache=False`` on
every forward -- so no token attends across samples. Two layouts, chosen by the attention kernel:

- ``one_row=True`` (flash_attention_2): every sample of the micro-batch in ONE row, no padding at
  all; flash-attn's varlen kernel then costs each sample only its own length squared, and
  transformers derives its ``cu_seqlens`` from the position restarts for a single row only.
- ``one_row=False`` (sdpa, eager): one row per sequence, right-padded to the longest; the mask
  these kernels get is dense per row, so one long row would cost (tokens of the whole micro-batch)²
  -- 16× the attention work of the demo's 16-sequence micro-batch. The padding tail's positions
  restart at 0 too (its own block), and it sits after every real token.

``targets`` are already shifted: ``targets[t]`` is the token predicted at position ``t``
(``input_ids[t + 1]`` when that is a completion token, else -100), so the loss needs no shift and a
sequence-parallel shard (:func:`shard_for_sequence_parallel`) keeps its own targets. A sample's
first token is never a target, so the last token of one sample never learns to predict the next
sample. No torch, pyarrow or pydantic at import (the GPU check imports this module alone).
"""

from __future__ import annotations

from typing import Sequence

IGNORE_INDEX = -100

Sample = tuple[Sequence[int], int]
"""One encoded sample: ``(input_ids, n_prompt)``; the first n_prompt tokens carry no loss."""


def one_row_for(attn_implementation: str) -> bool:
    """Whether micro-batches go into one padding-free row under this attention kernel."""
    return attn_implementation.startswith("flash_attention")


def collate(sequences: Sequence[Sequence[Sample]], pad_id: int, one_row: bool) -> dict:
    """LongTensors ``input_ids``, ``position_ids`` and ``targets``: shape (1, all tokens) with
    ``one_row``, else (sequences, longest sequence)."""
    import torch

    rows = [[s for seq in sequences for s in seq]] if one_row else [list(seq) for seq in sequences]
    width = max(sum(len(ids) for ids, _ in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for ids, n_prompt in row:
            end = start + len(ids)
            input_ids[r, start:end] = torch.as_tensor(list(ids), dtype=torch.long)
            position_ids[r, start:end] = torch.arange(len(ids))
            first_target = start + max(n_prompt, 1)  # a sample's first token is never a target
            targets[r, first_target - 1:end - 1] = input_ids[r, first_target:end]
            start = end
        position_ids[r, start:] = torch.arange(width - start)
    return {"input_ids": input_ids, "position_ids": position_ids, "targets": targets}


def target_tokens(batch: dict) -> int:
    """Tokens of ``batch`` that carry loss."""
    return int((batch["targets"] != IGNORE_INDEX).sum())


def shard_for_sequence_parallel(batch: dict, sp_rank: int, sp_size: int, pad_id: int) -> dict:
    """This rank's contiguous slice of a one-row batch for Ulysses sequence parallelism: the row is
    padded to a multiple of ``sp_size`` (pad tokens carry no loss and sit after every real token,
    their positions continuing the last sample's) and cut into ``sp_size`` equal parts."""
    import torch

    if batch["input_ids"].shape[0] != 1:
        raise ValueError("sequence parallelism shards one-row batches (micro_batch_size 1)")
    width = batch["input_ids"].shape[1]
    pad = -width % sp_size
    if pad:
        last = int(batch["position_ids"][0, -1])
        batch = {
            "input_ids": torch.cat([batch["input_ids"], torch.full((1, pad), pad_id, dtype=torch.long)], dim=1),
            "position_ids": torch.cat([batch["position_ids"], torch.arange(last + 1, last + 1 + pad)[None]], dim=1),
            "targets": torch.cat([batch["targets"], torch.full((1, pad), IGNORE_INDEX, dtype=torch.long)], dim=1),
        }
    part = (width + pad) // sp_size
    return {key: value[:, sp_rank * part:(sp_rank + 1) * part] for key, value in batch.items()}
