"""The module DeepSpeed trains: a causal LM plus its summed next-token loss, optionally chunked.

Contract: :class:`TokenLossModel` wraps a transformers causal LM; ``forward(input_ids, position_ids,
targets)`` (a :func:`factory.train.batching.collate` batch) returns the SUM of the cross-entropy
over target tokens; the caller divides by the global target-token count of the optimizer step
(per-token normalisation). With ``chunk_tokens`` set, the hidden states of target positions only
are taken, and the output projection + fp32 log-softmax run ``chunk_tokens`` rows at a time under
``torch.utils.checkpoint``: one chunk's full-vocabulary logits exist at a time, in forward and
again (recomputed) in backward, instead of ``tokens × vocab`` fp32 logits for the whole row (19.5 GB
at 32k tokens × 151,936). With ``chunk_tokens`` None the whole row's logits are computed at once
(the baseline the chunked loss is tested against). The loss is computed inside the wrapper's own
forward and every weight is used through its module's forward, so ZeRO-3 gathers each partitioned
parameter by its hooks (recomputation included). Imported by training code only: it imports torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from factory.train.batching import IGNORE_INDEX

PREFIX = "lm."
"""Parameter-name prefix of the wrapped LM inside :class:`TokenLossModel` (stripped on save)."""


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits, targets, reduction="sum")


def summed_cross_entropy(hidden: torch.Tensor, targets: torch.Tensor, head: torch.nn.Module,
                         chunk_tokens: int | None) -> torch.Tensor:
    """Sum over target positions of ``-log softmax(head(hidden))[target]`` (fp32 log-softmax)."""
    if chunk_tokens is None:
        logits = head(hidden).float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    keep = targets.reshape(-1) != IGNORE_INDEX
    rows = hidden.reshape(-1, hidden.shape[-1])[keep]
    wanted = targets.reshape(-1)[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        total = total + checkpoint(_chunk_loss, head, rows[part], wanted[part], use_reentrant=False)
    if rows.shape[0] == 0:  # no target here: a zero that still reaches every weight (ranks stay in step)
        total = total + 0.0 * head(hidden[:, :1]).float().sum()
    return total


class TokenLossModel(torch.nn.Module):
    """``lm`` (a transformers causal LM) returning the summed token loss of a collated batch."""

    def __init__(self, lm: torch.nn.Module, chunk_tokens: int | None):
        super().__init__()
        self.lm = lm
        self.chunk_tokens = chunk_tokens

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.lm.base_model(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
        return summed_cross_entropy(hidden, targets, self.lm.get_output_embeddings(), self.chunk_tokens)


def summed_token_loss(model: TokenLossModel, batch: dict, device=None) -> torch.Tensor:
    """``model`` (or a DeepSpeed engine around it) applied to ``batch``, moved to ``device`` first."""
    if device is not None:
        batch = {key: value.to(device) for key, value in batch.items()}
    return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], targets=batch["targets"])


def lm_state_dict(state_dict: dict | None) -> dict | None:
    """A :class:`TokenLossModel` state dict keyed like the wrapped LM's own (for ``save_pretrained``)."""
    if state_dict is None:
        return None
    return {key.removeprefix(PREFIX): value for key, value in state_dict.items()}
