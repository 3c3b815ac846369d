"""A plain single-process torch loop that replays a planned run: the baseline against which the
DeepSpeed/Ray Train path is tested (same loss curve) and benchmarked (tokens/s overhead).

Contract: same student, same encoded samples, same global batches (from the :class:`DataPlan`), same
AdamW (decay on matrices only), LR schedule, gradient clipping and per-token loss normalisation over
the global batch; fp32 on CPU. No DeepSpeed, no Ray, no data parallelism. Not covered: checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow.parquet as pq

from factory.train.batching import collate, summed_token_loss, target_tokens
from factory.train.config import TrainConfig
from factory.train.plan import DataPlan
from factory.train.samples import INPUT_COLUMNS, encode, load_tokenizer
from factory.train.schedule import lr_multiplier


@dataclass(frozen=True)
class ReplayResult:
    """Loss per step and throughput of the replay."""

    loss_curve: list[float]
    tokens: int
    train_s: float

    @property
    def tokens_per_s(self) -> float:
        """Non-pad tokens per second of the training steps."""
        return self.tokens / self.train_s if self.train_s > 0 else 0.0


def encode_files(files: list[str], model_path: str, max_seq_len: int) -> dict[str, tuple[list[int], int]]:
    """sample_id -> (input_ids, n_prompt) for every row of ``files`` (read in-process)."""
    tokenizer = load_tokenizer(model_path)
    encoded = {}
    for path in files:
        present = set(pq.read_schema(path).names)
        for row in pq.read_table(path, columns=[c for c in INPUT_COLUMNS if c in present]).to_pylist():
            sample = encode(tokenizer, row, max_seq_len)
            encoded[row["sample_id"]] = (sample.input_ids, sample.n_prompt)
    return encoded


def replay(cfg: TrainConfig, model_path: str, plan: DataPlan, encoded: dict[str, tuple[list[int], int]],
           steps: int | None = None) -> ReplayResult:
    """Train a fresh copy of the student on the plan's global batches, one process, plain torch."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, plan.total_steps, cfg.warmup_ratio, cfg.schedule))
    sequences = [[encoded[sid] for sid in seq] for seq in plan.sequences()]
    per_step, micro = plan.sequences_per_step, cfg.micro_batch_size
    losses, tokens, train_s = [], 0, 0.0
    for step in range(min(steps or plan.total_steps, plan.total_steps)):
        started = time.perf_counter()
        chunk = sequences[step * per_step:(step + 1) * per_step]
        batches = [collate(chunk[i:i + micro], tokenizer.pad_token_id) for i in range(0, per_step, micro)]
        n_global = max(sum(target_tokens(b) for b in batches), 1)
        total = 0.0
        for batch in batches:
            loss = summed_token_loss(model, batch)
            (loss / n_global).backward()
            total += float(loss.detach())
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total / n_global)
        tokens += sum(len(ids) for seq in chunk for ids, _ in seq)
        train_s += time.perf_counter() - started
    return ReplayResult(loss_curve=losses, tokens=tokens, train_s=train_s)
