"""``run_training``: plan the data, start Ray Train workers running DeepSpeed, collect the result.

Contract: the data is read from the snapshot's Parquet files with Ray Data twice, streaming: once for
token lengths and pass rates only (the driver builds the :mod:`~factory.train.plan` from these
small columns), once per worker for training, where each worker's dataset keeps only the samples
placed on it, tokenizes them, and orders them by plan position (a distributed Ray Data sort), so no
worker holds a copy of the whole snapshot. A run directory with a complete checkpoint is resumed
from it (model, optimizer, scheduler, step; the plan makes the data position exact), unless
``resume=False``, which starts over. Resuming with a different config or data is refused. Ray is
started only if not already initialised (and then shut down again).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from factory.train.checkpoint import (METRICS, latest_checkpoint, read_trainer_state, remove_stale_temps,
                                      write_json_atomic)
from factory.train.config import TrainConfig
from factory.train.plan import DataPlan, build_plan
from factory.train.samples import INPUT_COLUMNS, encode_table


@dataclass(frozen=True)
class TrainResult:
    """What a finished training run produced."""

    checkpoint_dir: str
    """The final HF model dir (loadable by transformers and vLLM)."""
    steps: int
    """Optimizer steps taken in total (including those before a resume)."""
    final_loss: float | None
    """Mean target-token loss of the last step."""
    loss_curve: list[float]
    """Mean target-token loss of every step."""
    tokens_per_s: float
    """Non-pad tokens per second over all workers (this session's steps, checkpointing excluded)."""
    truncated_samples: int
    """Distinct samples longer than max_seq_len (their completion's end was cut)."""
    wall_s: float
    """Wall time of this call."""


def _readable_columns(files: list[str]) -> list[str]:
    present = set(pq.read_schema(files[0]).names)
    return [c for c in INPUT_COLUMNS + ["pass_rate"] if c in present]


def _lengths_batch(table: pa.Table, tokenizer_path: str, max_seq_len: int) -> pa.Table:
    out = encode_table(table, tokenizer_path, max_seq_len, lengths_only=True)
    pass_rate = table.column("pass_rate") if "pass_rate" in table.column_names else pa.nulls(len(table), pa.float64())
    return out.append_column("pass_rate", pass_rate.cast(pa.float64()))


@functools.lru_cache(maxsize=2)
def _placements(ref_hex: str, ref) -> dict[str, list[tuple[int, int]]]:
    """sample_id -> [(pos, seq), ...] of one worker's placements, fetched once per process."""
    import ray

    table = ray.get(ref)
    placed: dict[str, list[tuple[int, int]]] = {}
    for sid, pos, seq in zip(*(table.column(c).to_pylist() for c in ("sample_id", "pos", "seq"))):
        placed.setdefault(sid, []).append((pos, seq))
    return placed


def _place_batch(table: pa.Table, placements: list, tokenizer_path: str, max_seq_len: int) -> pa.Table:
    """Encode the rows placed on this worker: one row out per placement (a sample recurs across epochs)."""
    ref = placements[0]
    placed = _placements(ref.hex(), ref)
    rows = [i for i, sid in enumerate(table.column("sample_id").to_pylist()) if sid in placed]
    encoded = encode_table(table.take(rows), tokenizer_path, max_seq_len)
    source, pos, seq = [], [], []
    for index, sid in enumerate(encoded.column("sample_id").to_pylist()):
        for p, q in placed[sid]:
            source.append(index)
            pos.append(p)
            seq.append(q)
    out = encoded.take(pa.array(source, pa.int64())).select(["input_ids", "n_prompt"])
    return out.append_column("pos", pa.array(pos, pa.int64())).append_column("seq", pa.array(seq, pa.int64()))


def _measure(files: list[str], model_path: str, max_seq_len: int) -> pa.Table:
    import ray

    ds = ray.data.read_parquet(files, columns=_readable_columns(files))
    ds.context.enable_progress_bars = False
    ds = ds.map_batches(_lengths_batch, fn_kwargs={"tokenizer_path": model_path, "max_seq_len": max_seq_len},
                        batch_format="pyarrow", batch_size=512)
    tables = ray.get(ds.to_arrow_refs())
    return pa.concat_tables(tables).sort_by("sample_id") if tables else pa.table({})


ROWS_PER_SORT_PARTITION = 50_000
"""Rows per partition of a worker's distributed sort (Ray's default of 200 partitions is slow on small data)."""


def _sort_boundaries(positions: np.ndarray) -> list[int]:
    """Sort partition boundaries at quantiles of a worker's plan positions (at least two partitions)."""
    parts = max(2, -(-len(positions) // ROWS_PER_SORT_PARTITION))
    ordered = np.sort(positions)
    return sorted({int(ordered[len(ordered) * i // parts]) for i in range(1, parts)})


def _rank_dataset(files: list[str], placements: pa.Table, model_path: str, max_seq_len: int):
    import ray

    ref = ray.put(placements.select(["sample_id", "pos", "seq"]))
    ds = ray.data.read_parquet(files, columns=_readable_columns(files))
    ds.context.enable_progress_bars = False
    ds = ds.map_batches(_place_batch, batch_format="pyarrow", batch_size=512,
                        fn_kwargs={"placements": [ref], "tokenizer_path": model_path, "max_seq_len": max_seq_len})
    return ds.sort("pos", boundaries=_sort_boundaries(placements.column("pos").to_numpy()))


def _fingerprint(measured: pa.Table) -> str:
    digest = hashlib.sha256()
    for sid, n in zip(measured.column("sample_id").to_pylist(), measured.column("n_tokens").to_pylist()):
        digest.update(f"{sid}\t{n}\n".encode())
    return digest.hexdigest()[:16]


def _card(cfg: TrainConfig, plan: DataPlan, measured: pa.Table, files: list[str], snapshot_version: str | None) -> dict:
    import deepspeed
    import ray
    import torch
    import transformers

    from factory import __version__

    return {
        "student": cfg.student, "revision": cfg.revision, "snapshot_version": snapshot_version,
        "data_files": [Path(f).name for f in files], "data_fingerprint": _fingerprint(measured),
        "samples": measured.num_rows, "truncated_samples": int(np.sum(measured.column("truncated").to_numpy(zero_copy_only=False))),
        "dropped_samples": plan.dropped_samples, "total_steps": plan.total_steps, "curriculum": cfg.curriculum,
        "config": cfg.model_dump(mode="json"),
        "versions": {"distill_factory": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "deepspeed": deepspeed.__version__, "ray": ray.__version__},
    }


def _result(out: Path, card: dict, started: float) -> TrainResult:
    metrics = json.loads((out / METRICS).read_text())
    curve = [float(x) for x in metrics["loss_curve"]]
    return TrainResult(checkpoint_dir=metrics["checkpoint_dir"], steps=int(metrics["steps"]),
                       final_loss=curve[-1] if curve else None, loss_curve=curve,
                       tokens_per_s=float(metrics["tokens_per_s"]), truncated_samples=int(card["truncated_samples"]),
                       wall_s=time.perf_counter() - started)


def _write_metrics_of_finished_run(out: Path, plan: DataPlan, state: dict) -> None:
    """Metrics of a run killed after its final checkpoint but before rank 0 wrote them."""
    write_json_atomic(out / METRICS, {
        "steps": state["step"], "total_steps": plan.total_steps, "start_step": state["step"],
        "loss_curve": state["loss_curve"], "tokens": state["tokens"], "train_s": state["train_s"],
        "tokens_per_s": state["tokens"] / state["train_s"] if state["train_s"] > 0 else 0.0,
        "checkpoint_dir": str(latest_checkpoint(str(out))),
    })


def _resume_point(out: Path, card: dict) -> tuple[int, dict | None]:
    latest = latest_checkpoint(str(out))
    if latest is None:
        return 0, None
    previous = json.loads((latest / "training_card.json").read_text())
    for key in ("config", "data_fingerprint", "student"):
        if previous.get(key) != card[key]:
            raise ValueError(f"cannot resume {out}: its checkpoint was made with a different {key} (pass resume=False)")
    return int(read_trainer_state(latest)["step"]), read_trainer_state(latest)


def plan_data(cfg: TrainConfig, files: list[str], model_path: str) -> tuple[DataPlan, pa.Table]:
    """Measure the samples (Ray Data; Ray must be initialised) and plan the run. Returns the plan and the
    per-sample measurements (sample_id, n_tokens, n_prompt, truncated, pass_rate), sorted by sample_id."""
    measured = _measure(files, model_path, cfg.max_seq_len)
    plan = build_plan(measured.column("sample_id").to_pylist(), measured.column("n_tokens").to_numpy(),
                      measured.column("pass_rate").to_numpy(zero_copy_only=False).astype(np.float64),
                      curriculum=cfg.curriculum, seed=cfg.seed, epochs=cfg.epochs, max_seq_len=cfg.max_seq_len,
                      packing=cfg.packing, num_workers=cfg.num_workers, micro_batch_size=cfg.micro_batch_size,
                      grad_accum=cfg.grad_accum, max_steps=cfg.max_steps)
    if plan.total_steps == 0:
        raise ValueError(f"{measured.num_rows} samples make no full optimizer step of {plan.sequences_per_step} sequences")
    return plan, measured


def run_training(cfg: TrainConfig, data_files: list[str], out_dir: str, *, snapshot_version: str | None = None,
                 resume: bool = True) -> TrainResult:
    """Fine-tune ``cfg.student`` on ``data_files`` (snapshot Parquet) into ``out_dir``; see module contract."""
    from factory.runtime import ray_session
    from factory.models import resolve_model

    started = time.perf_counter()
    if not data_files:
        raise ValueError("data_files is empty: nothing to train on")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(out / "deepspeed", ignore_errors=True)
        (out / METRICS).unlink(missing_ok=True)
    remove_stale_temps(str(out))
    model_path = resolve_model(cfg.student)
    files = [str(Path(f).resolve()) for f in data_files]
    with ray_session():
        plan, measured = plan_data(cfg, files, model_path)
        card = _card(cfg, plan, measured, files, snapshot_version)
        start_step, prior_state = _resume_point(out, card) if resume else (0, None)
        if start_step >= plan.total_steps:
            if not (out / METRICS).exists():
                _write_metrics_of_finished_run(out, plan, prior_state)
            return _result(out, card, started)
        _fit(cfg, plan, files, model_path, out, card, start_step, prior_state)
    return _result(out, card, started)


def _fit(cfg: TrainConfig, plan: DataPlan, files: list[str], model_path: str, out: Path, card: dict,
         start_step: int, prior_state: dict | None) -> None:
    from ray.train import DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from factory.train.worker import train_loop

    datasets = {f"train_rank{rank}": _rank_dataset(files, plan.for_rank(rank, start_step), model_path, cfg.max_seq_len)
                for rank in range(cfg.num_workers)}
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "model_path": model_path, "out_dir": str(out),
                           "total_steps": plan.total_steps, "start_step": start_step, "prior_state": prior_state,
                           "card": card},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(name="ray_train", storage_path=str(out / "ray")),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=[]),
    )
    trainer.fit()
