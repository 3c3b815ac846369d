"""A plain single-process torch loop that replays a planned run: the baseline against which the
DeepSpeed/Ray Train path is tested (same loss and grad-norm curves) and benchmarked (tokens/s overhead).

Contract: same student, same encoded samples, same global batches (from the :class:`DataPlan`), same
loss module (:class:`~factory.train.loss.TokenLossModel`, chunked as configured, activation
checkpointing as configured), same AdamW (decay on matrices only), LR schedule, gradient clipping and
per-token loss normalisation over the global batch; fp32 on CPU. No DeepSpeed, no Ray, no data
parallelism. Not covered: checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow.parquet as pq

from factory.train.batching import collate, one_row_for, target_tokens
from factory.train.config import TrainConfig
from factory.train.plan import DataPlan
from factory.train.samples import INPUT_COLUMNS, encode, load_tokenizer
from factory.train.schedule import lr_multiplier


@dataclass(frozen=True)
class ReplayResult:
    """Loss and gradient norm per step, and throughput, of the replay."""

    loss_curve: list[float]
    grad_norm_curve: list[float]
    tokens: int
    train_s: float

    @property
    def tokens_per_s(self) -> float:
        """Non-pad tokens per second of the training steps."""
        return self.tokens / self.train_s if self.train_s > 0 else 0.0


def encode_files(files: list[str], model_path: str, eos_token: str | None = None) -> dict[str, tuple[list[int], int]]:
    """sample_id -> (input_ids, n_prompt) for every row of ``files`` (local, read in-process)."""
    tokenizer = load_tokenizer(model_path, eos_token=eos_token)
    encoded = {}
    for path in files:
        present = set(pq.read_schema(path).names)
        for row in pq.read_table(path, columns=[c for c in INPUT_COLUMNS if c in present]).to_pylist():
            sample = encode(tokenizer, row)
            encoded[row["sample_id"]] = (sample.input_ids, sample.n_prompt)
    return encoded


def replay(cfg: TrainConfig, model_path: str, plan: DataPlan, encoded: dict[str, tuple[list[int], int]],
           steps: int | None = None) -> ReplayResult:
    """Train a fresh copy of the student on the plan's global batches, one process, plain torch."""
    import torch

    from factory.train.loss import TokenLossModel, summed_token_loss
    from factory.train.model import load_student

    lm, _ = load_student(model_path, dtype="fp32", attn_implementation=cfg.attn_implementation,
                         gradient_checkpointing=cfg.checkpointing)
    model = TokenLossModel(lm, cfg.loss_chunk_tokens)
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, plan.total_steps, cfg.warmup_ratio, cfg.schedule, cfg.min_lr_ratio))
    sequences = [[encoded[sid] for sid in seq] for seq in plan.sequences()]
    tokenizer = load_tokenizer(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    one_row = one_row_for(cfg.attn_implementation)
    per_step, micro = plan.sequences_per_step, cfg.micro_batch_size
    losses, norms, tokens, train_s = [], [], 0, 0.0
    for step in range(min(steps or plan.total_steps, plan.total_steps)):
        started = time.perf_counter()
        chunk = sequences[step * per_step:(step + 1) * per_step]
        batches = [collate(chunk[i:i + micro], pad_id, one_row) for i in range(0, per_step, micro)]
        n_global = max(sum(target_tokens(b) for b in batches), 1)
        total = 0.0
        for batch in batches:
            loss = summed_token_loss(model, batch)
            (loss / n_global).backward()
            total += float(loss.detach())
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total / n_global)
        tokens += sum(len(ids) for seq in chunk for ids, _ in seq)
        train_s += time.perf_counter() - started
    return ReplayResult(loss_curve=losses, grad_norm_curve=norms, tokens=tokens, train_s=train_s)
