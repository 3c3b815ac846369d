"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (one DeepSpeed rank per worker).

Contract: every worker loads the student, wraps it with ``deepspeed.initialize`` (ZeRO config from
:mod:`factory.train.zero`; torch's process group, gloo on CPU / NCCL on GPU, is already set up by
Ray Train), optionally restores the DeepSpeed state of the checkpoint it resumes from, then streams
its own dataset shard (``train_rank{rank}``, rows already in plan order from the resume step on).
Each optimizer step takes ``grad_accum`` micro-batches per worker; the loss of a micro-batch is its
summed target-token loss scaled so that, after DeepSpeed's 1/accum scaling and cross-rank gradient
averaging, the gradient is that of the mean token loss over the whole global batch. Checkpoints are
saved collectively (every rank calls ``save_checkpoint``); rank 0 writes the HF dir, the ``latest``
marker and, at the end, ``metrics.json``.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Iterator

from factory.train.batching import collate, summed_token_loss, target_tokens
from factory.train.checkpoint import METRICS, checkpoint_name, mark_latest, publish_hf_checkpoint, write_json_atomic
from factory.train.config import TrainConfig
from factory.train.schedule import lr_multiplier
from factory.train.zero import deepspeed_config, uses_deepspeed_optimizer

DEFAULT_EXTENSIONS_DIR = os.path.expanduser("~/.cache/distill-factory/torch_extensions")


def shard_sequences(rows: Iterator[dict]) -> Iterator[list[tuple[list[int], int]]]:
    """Group plan-ordered rows (``seq``, ``input_ids``, ``n_prompt``) into sequences of samples."""
    for _, group in itertools.groupby(rows, key=lambda row: row["seq"]):
        yield [(list(row["input_ids"]), int(row["n_prompt"])) for row in group]


def step_chunks(sequences: Iterator, micro_batch_size: int, grad_accum: int) -> Iterator[list[list]]:
    """Per optimizer step: ``grad_accum`` micro-batches of ``micro_batch_size`` sequences (full steps only)."""
    per_step = micro_batch_size * grad_accum
    while True:
        chunk = list(itertools.islice(sequences, per_step))
        if len(chunk) < per_step:
            return
        yield [chunk[i:i + micro_batch_size] for i in range(0, per_step, micro_batch_size)]


def _rows(shard) -> Iterator[dict]:
    for batch in shard.iter_batches(batch_size=256, batch_format="pyarrow"):
        yield from batch.to_pylist()


def _param_groups(model, weight_decay: float) -> list[dict]:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _load_student(cfg: TrainConfig, model_path: str, ds_config: dict):
    import torch
    from transformers import AutoModelForCausalLM

    zero3_context = None
    if cfg.zero_stage == 3:
        from transformers.integrations import HfDeepSpeedConfig

        zero3_context = HfDeepSpeedConfig(ds_config)  # from_pretrained then partitions weights at load
    model = AutoModelForCausalLM.from_pretrained(model_path, revision=cfg.revision,
                                                 trust_remote_code=cfg.trust_remote_code, dtype=torch.float32)
    model.config.use_cache = False
    return model, zero3_context


def train_loop(config: dict) -> None:
    """Ray Train entry point; ``config`` is built by :func:`factory.train.run.run_training`."""
    cfg = TrainConfig.model_validate(config["cfg"])
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", DEFAULT_EXTENSIONS_DIR)
    if not cfg.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from factory.train.samples import load_tokenizer

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    os.environ["LOCAL_RANK"] = str(context.get_local_rank())
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    if cfg.use_gpu:
        torch.cuda.set_device(device)
    out_dir, total_steps, start_step = config["out_dir"], config["total_steps"], config["start_step"]

    ds_config = deepspeed_config(cfg, world)
    model, _zero3_context = _load_student(cfg, config["model_path"], ds_config)
    tokenizer = load_tokenizer(config["model_path"], cfg.revision, cfg.trust_remote_code)
    groups = _param_groups(model, cfg.weight_decay)
    optimizer = None if uses_deepspeed_optimizer(cfg) else torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)

    def scheduler(opt):
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_multiplier(step, total_steps, cfg.warmup_ratio, cfg.schedule))

    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, model_parameters=groups if optimizer is None else None,
                                           lr_scheduler=scheduler, config=ds_config)
    ds_root = os.path.join(out_dir, "deepspeed")
    if start_step > 0:
        engine.load_checkpoint(ds_root, tag=checkpoint_name(start_step))

    prior = config.get("prior_state") or {}
    loss_curve: list[float] = list(prior.get("loss_curve", []))
    tokens_total, train_s = int(prior.get("tokens", 0)), float(prior.get("train_s", 0.0))
    session_tokens, session_s = 0, 0.0
    step, saved_step = start_step, start_step

    def save() -> None:
        engine.save_checkpoint(ds_root, tag=checkpoint_name(step), client_state={"step": step})
        state_dict = engine._zero3_consolidated_16bit_state_dict() if cfg.zero_stage == 3 else None
        if rank == 0:
            card = dict(config["card"], step=step)
            state = {"step": step, "loss_curve": loss_curve, "tokens": tokens_total, "train_s": train_s}
            publish_hf_checkpoint(out_dir, step, engine.module, tokenizer, state_dict, card, state)
        dist.barrier()
        if rank == 0:
            mark_latest(out_dir, step)
        dist.barrier()

    shard = ray.train.get_dataset_shard(f"train_rank{rank}")
    engine.train()
    for chunks in step_chunks(shard_sequences(_rows(shard)), cfg.micro_batch_size, cfg.grad_accum):
        if step >= total_steps:
            break
        started = time.perf_counter()
        batches = [collate(chunk, tokenizer.pad_token_id) for chunk in chunks]
        counts = torch.tensor([sum(target_tokens(b) for b in batches),
                               sum(sum(len(ids) for seq in chunk for ids, _ in seq) for chunk in chunks)],
                              dtype=torch.float64, device=device)  # NCCL reduces device tensors only
        dist.all_reduce(counts)
        n_global = max(float(counts[0]), 1.0)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for batch in batches:
            loss = summed_token_loss(engine, batch, device)
            engine.backward(loss * (world * cfg.grad_accum / n_global))
            engine.step()
            loss_sum += loss.detach().to(torch.float64)
        dist.all_reduce(loss_sum)
        step += 1
        loss_curve.append(float(loss_sum) / n_global)
        elapsed = time.perf_counter() - started
        session_tokens += int(counts[1])
        session_s += elapsed
        tokens_total += int(counts[1])
        train_s += elapsed
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < total_steps:
            save()
            saved_step = step
    if step != saved_step:
        save()
    if rank == 0:
        write_json_atomic(Path(out_dir) / METRICS, {
            "steps": step, "total_steps": total_steps, "start_step": start_step, "loss_curve": loss_curve,
            "tokens": tokens_total, "train_s": train_s,
            "tokens_per_s": session_tokens / session_s if session_s > 0 else 0.0,
            "checkpoint_dir": os.path.join(out_dir, "checkpoints", checkpoint_name(step)),
        })
