"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (one DeepSpeed rank per worker).

Contract: every worker joins DeepSpeed's comm on the process group Ray Train set up (gloo on CPU,
NCCL on GPU) with DeepSpeed's CPU shared-memory all-reduce op disabled (it serves inference only and
would be compiled on first use), loads the student (:mod:`factory.train.model`: training dtype,
ZeRO-3 partitioned at load, attention kernel, checkpointing, Liger), wraps it in
:class:`~factory.train.loss.TokenLossModel` and ``deepspeed.initialize`` (ZeRO config from
:mod:`factory.train.zero`), optionally restores the DeepSpeed state it resumes from, then streams
its dataset shard (``train_rank{dp_rank}``, rows in plan order from the resume step on). With
Ulysses sequence parallelism (``sequence_parallel_size`` > 1) the ranks of one group read the same
shard and each trains on its slice of every row. Each optimizer step takes ``grad_accum``
micro-batches per rank; a micro-batch's summed target-token loss is scaled by
``data-parallel ranks × accum / global target tokens`` (counted by an all-reduce) so that, after
DeepSpeed's 1/accum scaling and its gradient reduction (a sum over the ranks of a sequence-parallel
group, a mean over data-parallel ranks), the gradient is that of the mean token loss over the whole
global batch. Checkpoints are
saved collectively (every rank calls ``save_checkpoint``); rank 0 writes the HF dir, the ``latest``
marker, the per-step metrics (:mod:`factory.train.tracking`), progress lines and, at the end,
``metrics.json`` (curves, throughput, MFU, peak memory, and the measured ``mode``: what DeepSpeed
actually partitioned and offloaded).
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Iterator

from factory.train.batching import collate, one_row_for, shard_for_sequence_parallel, target_tokens
from factory.train.checkpoint import METRICS, checkpoint_name, mark_latest, publish_hf_checkpoint, write_json_atomic
from factory.train.config import TrainConfig
from factory.train.schedule import lr_multiplier
from factory.train.zero import deepspeed_config, skip_inference_comm_op, uses_deepspeed_optimizer

DEFAULT_EXTENSIONS_DIR = os.path.expanduser("~/.cache/distill-factory/torch_extensions")
TENSORBOARD_DIR = "tensorboard"


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


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on norms and biases."""
    def matrix(p) -> bool:
        return len(getattr(p, "ds_shape", p.shape)) >= 2  # a ZeRO-3 partitioned parameter keeps its shape in ds_shape

    params = list(model.parameters())
    return [{"params": [p for p in params if matrix(p)], "weight_decay": weight_decay},
            {"params": [p for p in params if not matrix(p)], "weight_decay": 0.0}]


def resident_elements(module) -> tuple[int, int]:
    """(parameter elements held in full on this rank, elements of the full model)."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(int(getattr(p, "ds_numel", 0) or p.numel()) for p in params)


def measured_mode(engine, lm, loaded: tuple[int, int]) -> dict:
    """What DeepSpeed and transformers actually run, read from the live objects (not the config)."""
    resident, full = resident_elements(engine.module)
    optimizer = engine.optimizer
    inner = getattr(optimizer, "optimizer", optimizer)
    state_devices = sorted({str(t.device) for s in inner.state.values() for t in s.values() if hasattr(t, "device")})
    first = next(engine.module.parameters())
    return {
        "zero_stage": engine.zero_optimization_stage(),
        "param_dtype": str(getattr(first, "ds_tensor", first).dtype).removeprefix("torch."),
        "resident_param_elements_after_load": loaded[0], "resident_param_elements": resident, "param_elements": full,
        "partitioned_params": sum(1 for p in engine.module.parameters() if hasattr(p, "ds_status") and p.numel() == 0),
        "optimizer_offload": bool(getattr(optimizer, "offload_optimizer", getattr(optimizer, "cpu_offload", False))),
        "param_offload": bool(getattr(optimizer, "offload_param", False)),
        "optimizer_state_devices": state_devices,
        "optimizer_partition_devices": sorted(set(getattr(optimizer, "subgroup_to_device", {}).values())),
        "attn_implementation": lm.config._attn_implementation,
        "gradient_checkpointing": bool(lm.is_gradient_checkpointing),
        "sequence_parallel_size": int(getattr(engine, "sequence_parallel_size", 1)),
    }


def train_loop(config: dict) -> None:
    """Ray Train entry point; ``config`` is built by :func:`factory.train.run.run_training`."""
    began = time.perf_counter()
    cfg = TrainConfig.model_validate(config["cfg"])
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", DEFAULT_EXTENSIONS_DIR)
    if not cfg.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    import transformers

    from factory.train.loss import TokenLossModel, lm_state_dict, summed_token_loss
    from factory.train.model import load_student
    from factory.train.perf import attention_width, matmul_params, mfu, peak_flops, peak_memory_bytes, training_flops
    from factory.train.samples import load_tokenizer
    from factory.train.tracking import Progress, Trackers, ensure_log_handler

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    sp, dp = cfg.sequence_parallel_size, cfg.data_parallel_size
    os.environ["LOCAL_RANK"] = str(context.get_local_rank())
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    if cfg.use_gpu:
        torch.cuda.set_device(device)
    out_dir, total_steps, start_step = config["out_dir"], config["total_steps"], config["start_step"]
    skip_inference_comm_op()
    transformers.utils.logging.disable_progress_bar()  # per-worker weight loading/saving bars drown the progress lines
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")

    tokenizer = load_tokenizer(config["model_path"], cfg.revision, cfg.trust_remote_code, cfg.eos_token)
    ds_config = deepspeed_config(cfg, config["hidden_size"])  # read by the driver from the student's config
    lm, _zero3_context = load_student(config["model_path"], dtype=cfg.dtype, attn_implementation=cfg.attn_implementation,
                                      gradient_checkpointing=cfg.checkpointing, liger_kernels=cfg.liger_kernels,
                                      revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
                                      zero3_config=ds_config if cfg.zero_stage == 3 else None)
    lm.generation_config.eos_token_id = tokenizer.eos_token_id
    loaded = resident_elements(lm)
    mpu = None
    if sp > 1:
        from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF

        mpu = UlyssesSPAttentionHF.register_with_transformers(
            model_name_or_path=lm, core_attn_implementation=cfg.attn_implementation, sequence_parallel_size=sp,
            micro_batch_size=1, seq_length_is_variable=True)
    module = TokenLossModel(lm, cfg.loss_chunk_tokens)
    groups = param_groups(module, cfg.weight_decay)
    optimizer = None if uses_deepspeed_optimizer(cfg) else torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)

    def scheduler(opt):
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_multiplier(s, total_steps, cfg.warmup_ratio, cfg.schedule, cfg.min_lr_ratio))

    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, model_parameters=groups if optimizer is None else None,
                                           lr_scheduler=scheduler, config=ds_config, mpu=mpu)
    ds_root = os.path.join(out_dir, "deepspeed")
    if start_step > 0:
        engine.load_checkpoint(ds_root, tag=checkpoint_name(start_step))
    n_matmul, (layers, width) = matmul_params(lm), attention_width(lm.config)
    peak = peak_flops(torch.cuda.get_device_name(device) if cfg.use_gpu else None, cfg.peak_flops_per_device)

    timings = {"setup_s": time.perf_counter() - began, "data_wait_s": 0.0, "steps_s": 0.0, "checkpoint_s": 0.0}
    prior = config.get("prior_state") or {}
    curves = {name: list(prior.get(name, [])) for name in ("loss_curve", "lr_curve", "grad_norm_curve")}
    tokens_total, train_s = int(prior.get("tokens", 0)), float(prior.get("train_s", 0.0))
    session_tokens, session_s, session_flops = 0, 0.0, 0.0
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
            card = dict(config["card"], step=step)
            state = {"step": step, **curves, "tokens": tokens_total, "train_s": train_s}
            publish_hf_checkpoint(out_dir, step, lm, tokenizer, state_dict, card, state)
        dist.barrier()
        if rank == 0:
            mark_latest(out_dir, step)
        dist.barrier()
        timings["checkpoint_s"] += time.perf_counter() - saving

    shard = ray.train.get_dataset_shard(f"train_rank{rank // sp}")
    one_row = one_row_for(cfg.attn_implementation)
    engine.train()
    waited = time.perf_counter()
    for chunks in step_chunks(shard_sequences(_rows(shard)), cfg.micro_batch_size, cfg.grad_accum):
        if step >= total_steps:
            break
        started = time.perf_counter()
        timings["data_wait_s"] += started - waited
        batches = [collate(chunk, tokenizer.pad_token_id or 0, one_row) for chunk in chunks]
        lengths = [len(ids) for chunk in chunks for seq in chunk for ids, _ in seq] if rank % sp == 0 else []
        if sp > 1:
            batches = [shard_for_sequence_parallel(b, rank % sp, sp, tokenizer.pad_token_id or 0) for b in batches]
        counts = torch.tensor([sum(target_tokens(b) for b in batches), sum(lengths),
                               training_flops(lengths, n_matmul, layers, width)],
                              dtype=torch.float64, device=device)  # NCCL reduces device tensors only
        dist.all_reduce(counts)
        n_global = max(float(counts[0]), 1.0)
        lr = float(engine.get_lr()[0])
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for batch in batches:
            loss = summed_token_loss(engine, batch, device)
            engine.backward(loss * (dp * cfg.grad_accum / n_global))
            engine.step()
            loss_sum += loss.detach().to(torch.float64)
        dist.all_reduce(loss_sum)
        grad_norm = engine.get_global_grad_norm()
        step += 1
        elapsed = time.perf_counter() - started
        curves["loss_curve"].append(float(loss_sum) / n_global)
        curves["lr_curve"].append(lr)
        curves["grad_norm_curve"].append(None if grad_norm is None else float(grad_norm))
        session_tokens, session_s, session_flops = session_tokens + int(counts[1]), session_s + elapsed, session_flops + float(counts[2])
        tokens_total, train_s = tokens_total + int(counts[1]), train_s + elapsed
        if rank == 0:
            trackers.log(step, {"loss": curves["loss_curve"][-1], "lr": lr, "grad_norm": curves["grad_norm_curve"][-1],
                                "tokens_per_s": float(counts[1]) / elapsed, "mfu": mfu(float(counts[2]), elapsed, world, peak),
                                "peak_memory_gib": peak_memory_bytes(device) / 2**30})
            progress.step(step, curves["loss_curve"][-1], float(counts[1]) / elapsed)
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < total_steps:
            save()
            saved_step = step
        waited = time.perf_counter()
    timings["steps_s"] = session_s
    if step != saved_step:
        save()
    mode = measured_mode(engine, lm, loaded)  # after training: the optimizer state exists by now
    peak_bytes = torch.tensor([peak_memory_bytes(device)], dtype=torch.float64, device=device)
    dist.all_reduce(peak_bytes, op=dist.ReduceOp.MAX)
    if rank == 0:
        trackers.close()
        write_json_atomic(Path(out_dir) / METRICS, {
            "steps": step, "total_steps": total_steps, "start_step": start_step, **curves,
            "tokens": tokens_total, "train_s": train_s,
            "tokens_per_s": session_tokens / session_s if session_s > 0 else 0.0,
            "mfu": mfu(session_flops, session_s, world, peak), "peak_flops_per_device": peak,
            "peak_memory_bytes": int(peak_bytes[0]), "mode": mode, "data": config["card"]["data"],
            "timings": {name: round(value, 3) for name, value in timings.items()},
            "checkpoint_dir": os.path.join(out_dir, "checkpoints", checkpoint_name(step)),
            "tensorboard_dir": os.path.join(out_dir, TENSORBOARD_DIR),
        })
