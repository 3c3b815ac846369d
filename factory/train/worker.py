"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (one DeepSpeed rank per worker).

Contract: every worker starts streaming its dataset shard (``train_rank{dp_rank}``, rows in plan
order from the resume step on) at once, so the shard's read/tokenize/sort runs while the engine is
built (:mod:`factory.train.engine`); it then optionally restores the DeepSpeed state it resumes from
and trains. With Ulysses sequence parallelism the ranks of one group read the same shard and each
trains on its slice of every row. Each optimizer step takes ``grad_accum`` micro-batches per rank; a
micro-batch's summed target-token loss is scaled by ``data-parallel ranks × accum / global target
tokens`` (counted by an all-reduce) so that, after DeepSpeed's 1/accum scaling and its gradient
reduction (a sum over the ranks of a sequence-parallel group, a mean over data-parallel ranks), the
gradient is that of the mean token loss over the whole global batch. Checkpoints are saved
collectively (every rank calls ``save_checkpoint``); rank 0 writes the HF dir, the ``latest`` marker,
the per-step metrics and progress lines (:mod:`factory.train.tracking`) and, at the end,
``metrics.json``: the loss/LR/grad-norm curves, tokens/s, MFU, peak memory (largest over ranks), the
measured ``mode``, the data counts and ``timings`` (setup, waiting for data, steps, checkpoints).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from factory.train.batching import collate, one_row_for, shard_for_sequence_parallel, target_tokens
from factory.train.checkpoint import METRICS, checkpoint_name, mark_latest, publish_hf_checkpoint, write_json_atomic
from factory.train.config import TrainConfig

DEFAULT_EXTENSIONS_DIR = os.path.expanduser("~/.cache/distill-factory/torch_extensions")
TENSORBOARD_DIR = "tensorboard"
CURVES = ("loss_curve", "lr_curve", "grad_norm_curve")


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


def started_early(rows: Iterator):
    """``rows`` with its first item fetched now, in a background thread (the dataset starts executing
    while the caller does other work); an error there is raised at the first ``next``."""
    first: list = []

    def fetch() -> None:
        try:
            first.append(("row", next(rows)))
        except StopIteration:
            first.append(("end", None))
        except BaseException as error:  # re-raised in the consuming thread
            first.append(("error", error))

    thread = threading.Thread(target=fetch, name="first-batch", daemon=True)
    thread.start()

    def chained():
        thread.join()
        kind, value = first[0]
        if kind == "error":
            raise value
        if kind == "row":
            yield value
            yield from rows

    return chained()


def _rows(shard) -> Iterator[dict]:
    for batch in shard.iter_batches(batch_size=256, batch_format="pyarrow"):
        yield from batch.to_pylist()


@dataclass
class StepResult:
    """Figures of one optimizer step (global over ranks)."""

    loss: float
    lr: float
    grad_norm: float | None
    tokens: int
    flops: float
    seconds: float


def train_step(engine, chunks: list, cfg: TrainConfig, rank: int, device, pad_id: int, flops_of) -> StepResult:
    """One optimizer step of ``grad_accum`` micro-batches (see module contract)."""
    import torch
    import torch.distributed as dist

    from factory.train.loss import summed_token_loss

    started = time.perf_counter()
    sp, one_row = cfg.sequence_parallel_size, one_row_for(cfg.attn_implementation)
    batches = [collate(chunk, pad_id, one_row) for chunk in chunks]
    lengths = [len(ids) for chunk in chunks for seq in chunk for ids, _ in seq] if rank % sp == 0 else []
    if sp > 1:
        batches = [shard_for_sequence_parallel(b, rank % sp, sp, pad_id) for b in batches]
    counts = torch.tensor([sum(target_tokens(b) for b in batches), sum(lengths), flops_of(lengths)],
                          dtype=torch.float64, device=device)  # NCCL reduces device tensors only
    dist.all_reduce(counts)
    n_global = max(float(counts[0]), 1.0)
    lr = float(engine.get_lr()[0])
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for batch in batches:
        loss = summed_token_loss(engine, batch, device)
        engine.backward(loss * (cfg.data_parallel_size * cfg.grad_accum / n_global))
        engine.step()
        loss_sum += loss.detach().to(torch.float64)
    dist.all_reduce(loss_sum)
    grad_norm = engine.get_global_grad_norm()
    return StepResult(loss=float(loss_sum) / n_global, lr=lr, grad_norm=None if grad_norm is None else float(grad_norm),
                      tokens=int(counts[1]), flops=float(counts[2]), seconds=time.perf_counter() - started)


def train_loop(config: dict) -> None:
    """Ray Train entry point; ``config`` is built by :func:`factory.train.run.run_training`."""
    began = time.perf_counter()
    cfg = TrainConfig.model_validate(config["cfg"])
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", DEFAULT_EXTENSIONS_DIR)
    if not cfg.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    import transformers

    from factory.train.engine import build_engine, measured_mode
    from factory.train.loss import lm_state_dict
    from factory.train.perf import attention_width, matmul_params, mfu, peak_flops, peak_memory_bytes, training_flops
    from factory.train.tracking import Progress, Trackers, ensure_log_handler

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    os.environ["LOCAL_RANK"] = str(context.get_local_rank())
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    if cfg.use_gpu:
        torch.cuda.set_device(device)
    out_dir, total_steps, start_step = config["out_dir"], config["total_steps"], config["start_step"]
    rows = started_early(_rows(ray.train.get_dataset_shard(f"train_rank{rank // cfg.sequence_parallel_size}")))
    transformers.utils.logging.disable_progress_bar()  # per-worker weight loading/saving bars drown the progress lines
    built = build_engine(cfg, config["model_path"], config["hidden_size"], total_steps)
    engine, lm, tokenizer = built.engine, built.lm, built.tokenizer
    ds_root = os.path.join(out_dir, "deepspeed")
    if start_step > 0:
        engine.load_checkpoint(ds_root, tag=checkpoint_name(start_step))
    n_matmul, (layers, width) = matmul_params(lm), attention_width(lm.config)
    peak = peak_flops(torch.cuda.get_device_name(device) if cfg.use_gpu else None, cfg.peak_flops_per_device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    timings = {"setup_s": time.perf_counter() - began, "data_wait_s": 0.0, "steps_s": 0.0, "checkpoint_s": 0.0}
    prior = config.get("prior_state") or {}
    curves = {name: list(prior.get(name, [])) for name in CURVES}
    tokens_total, train_s = int(prior.get("tokens", 0)), float(prior.get("train_s", 0.0))
    session_tokens, session_flops = 0, 0.0
    step, saved_step = start_step, start_step
    trackers = progress = None
    if rank == 0:
        ensure_log_handler()
        trackers = Trackers(cfg.log_to, os.path.join(out_dir, TENSORBOARD_DIR), cfg.tracking_project,
                            cfg.mlflow_tracking_uri, Path(out_dir).name, cfg.model_dump(mode="json"))
        progress = Progress(start_step, total_steps)

    def save() -> None:
        saving = time.perf_counter()
        engine.save_checkpoint(ds_root, tag=checkpoint_name(step), client_state={"step": step})
        state_dict = lm_state_dict(engine._zero3_consolidated_16bit_state_dict()) if cfg.zero_stage == 3 else None
        if rank == 0:
            state = {"step": step, **curves, "tokens": tokens_total, "train_s": train_s}
            publish_hf_checkpoint(out_dir, step, lm, tokenizer, state_dict, dict(config["card"], step=step), state)
        dist.barrier()
        if rank == 0:
            mark_latest(out_dir, step)
        dist.barrier()
        timings["checkpoint_s"] += time.perf_counter() - saving

    engine.train()
    waited = time.perf_counter()
    for chunks in step_chunks(shard_sequences(rows), cfg.micro_batch_size, cfg.grad_accum):
        if step >= total_steps:
            break
        timings["data_wait_s"] += time.perf_counter() - waited
        result = train_step(engine, chunks, cfg, rank, device, pad_id,
                            lambda lengths: training_flops(lengths, n_matmul, layers, width))
        step += 1
        for name, value in zip(CURVES, (result.loss, result.lr, result.grad_norm)):
            curves[name].append(value)
        session_tokens, session_flops = session_tokens + result.tokens, session_flops + result.flops
        timings["steps_s"] += result.seconds
        tokens_total, train_s = tokens_total + result.tokens, train_s + result.seconds
        if rank == 0:
            trackers.log(step, {"loss": result.loss, "lr": result.lr, "grad_norm": result.grad_norm,
                                "tokens_per_s": result.tokens / result.seconds,
                                "mfu": mfu(result.flops, result.seconds, world, peak),
                                "peak_memory_gib": peak_memory_bytes(device) / 2**30})
            progress.step(step, result.loss, result.tokens / result.seconds)
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < total_steps:
            save()
            saved_step = step
        waited = time.perf_counter()
    if step != saved_step:
        save()
    mode = measured_mode(built)
    peak_bytes = torch.tensor([peak_memory_bytes(device)], dtype=torch.float64, device=device)
    dist.all_reduce(peak_bytes, op=dist.ReduceOp.MAX)
    if rank == 0:
        trackers.close()
        session_s = timings["steps_s"]
        write_json_atomic(Path(out_dir) / METRICS, {
            "steps": step, "total_steps": total_steps, "start_step": start_step, **curves,
            "tokens": tokens_total, "train_s": train_s, "tokens_per_s": session_tokens / session_s if session_s > 0 else 0.0,
            "mfu": mfu(session_flops, session_s, world, peak), "peak_flops_per_device": peak,
            "peak_memory_bytes": int(peak_bytes[0]), "mode": mode, "data": config["card"]["data"],
            "timings": {name: round(value, 3) for name, value in timings.items()},
            "checkpoint_dir": os.path.join(out_dir, "checkpoints", checkpoint_name(step)),
            "tensorboard_dir": os.path.join(out_dir, TENSORBOARD_DIR),
        })
