"""``run_training``: plan the data, start Ray Train workers running DeepSpeed, collect the result.

Contract: the data is read from the snapshot's Parquet files (local paths, or URIs with the pyarrow
``filesystem`` to read them) twice, streaming: once for token lengths and pass rates only (in Ray
Data tasks, or batch by batch in the driver for a small snapshot: :func:`factory.runtime.runs_in_process`;
the driver drops samples longer than ``max_seq_len`` -- counted, their length distribution kept for
the report -- and builds the :mod:`~factory.train.plan` from these small columns), once per
data-parallel rank for training, where each rank's dataset keeps only the samples placed on it,
tokenizes them, and orders them by plan position (a distributed Ray Data sort), so no worker holds a
copy of the whole snapshot. Missing kernel or tracker packages fail before Ray starts, naming the
config field. A run directory with a complete checkpoint is resumed from it (model, optimizer,
scheduler, step; the plan makes the data position exact), unless ``resume=False``, which starts
over. Resuming with a different config or data is refused. Ray is started only if not already
initialised (and then shut down again).
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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.train.checkpoint import (METRICS, latest_checkpoint, read_trainer_state, remove_stale_temps,
                                      write_json_atomic)
from factory.train.config import TrainConfig
from factory.train.plan import DataPlan, build_plan
from factory.train.samples import INPUT_COLUMNS, encode_table, overlong_summary


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
    lr_curve: list[float]
    """Learning rate of every step."""
    grad_norm_curve: list[float | None]
    """Global gradient norm (before clipping) of every step."""
    tokens_per_s: float
    """Non-pad tokens per second over all workers (this session's steps, checkpointing excluded)."""
    mfu: float | None
    """Model FLOPs utilisation of this session's steps (None without a known device peak, e.g. on CPU)."""
    peak_memory_bytes: int
    """Largest peak memory of any worker (CUDA allocated on GPU, RSS on CPU)."""
    overlong_samples: int
    """Distinct samples longer than max_seq_len, dropped before training (lengths in metrics.json)."""
    metrics_path: str
    """The run's metrics.json (curves, figures, the measured mode, the overlong length distribution)."""
    wall_s: float
    """Wall time of this call."""


def _arrow_path(path: str, filesystem) -> str:
    return path.split("://", 1)[1] if filesystem is not None and "://" in path else path


def _readable_columns(files: list[str], filesystem) -> list[str]:
    present = set(pq.read_schema(_arrow_path(files[0], filesystem), filesystem=filesystem).names)
    return [c for c in INPUT_COLUMNS + ["pass_rate"] if c in present]


def _lengths_batch(table: pa.Table, tokenizer_path: str, eos_token: str | None) -> pa.Table:
    out = encode_table(table, tokenizer_path, eos_token, lengths_only=True)
    pass_rate = table.column("pass_rate") if "pass_rate" in table.column_names else pa.nulls(len(table), pa.float64())
    return out.append_column("pass_rate", pass_rate.cast(pa.float64()))


@functools.lru_cache(maxsize=2)
def _placements(ref_hex: str, ref) -> dict[str, list[tuple[int, int]]]:
    """sample_id -> [(pos, seq), ...] of one rank's placements, fetched once per process."""
    import ray

    table = ray.get(ref)
    placed: dict[str, list[tuple[int, int]]] = {}
    for sid, pos, seq in zip(*(table.column(c).to_pylist() for c in ("sample_id", "pos", "seq"))):
        placed.setdefault(sid, []).append((pos, seq))
    return placed


def _place_batch(table: pa.Table, placements: list, tokenizer_path: str, eos_token: str | None) -> pa.Table:
    """Encode the rows placed on this rank: one row out per placement (a sample recurs across epochs)."""
    ref = placements[0]
    placed = _placements(ref.hex(), ref)
    rows = [i for i, sid in enumerate(table.column("sample_id").to_pylist()) if sid in placed]
    encoded = encode_table(table.take(rows), tokenizer_path, eos_token)
    source, pos, seq = [], [], []
    for index, sid in enumerate(encoded.column("sample_id").to_pylist()):
        for p, q in placed[sid]:
            source.append(index)
            pos.append(p)
            seq.append(q)
    out = encoded.take(pa.array(source, pa.int64())).select(["input_ids", "n_prompt"])
    return out.append_column("pos", pa.array(pos, pa.int64())).append_column("seq", pa.array(seq, pa.int64()))


MEASURE_BATCH_ROWS = 512
"""Rows per tokenizer call of the length pass (a Ray Data batch, or one read batch in the driver)."""


def _measure(files: list[str], model_path: str, eos_token: str | None, filesystem) -> pa.Table:
    """Token lengths and pass rates of every sample, sorted by sample_id: streamed through the driver one
    batch at a time for a small snapshot (:func:`factory.runtime.runs_in_process`), else in Ray Data tasks."""
    import ray

    from factory.rows import collect
    from factory.runtime import runs_in_process

    columns = _readable_columns(files, filesystem)
    kwargs = {"tokenizer_path": model_path, "eos_token": eos_token}
    parquet = [pq.ParquetFile(_arrow_path(f, filesystem), filesystem=filesystem) for f in files]  # footers, read once
    if runs_in_process(sum(part.metadata.num_rows for part in parquet)):
        parts = [_lengths_batch(pa.Table.from_batches([batch]), **kwargs) for part in parquet
                 for batch in part.iter_batches(MEASURE_BATCH_ROWS, columns=columns)]
        table = pa.concat_tables(parts) if parts else pa.table({})
    else:
        ds = ray.data.read_parquet(files, columns=columns, filesystem=filesystem)
        ds.context.enable_progress_bars = False
        table = collect(ds.map_batches(_lengths_batch, fn_kwargs=kwargs, batch_format="pyarrow",
                                       batch_size=MEASURE_BATCH_ROWS))
    return table.sort_by("sample_id") if table.num_rows else table


ROWS_PER_SORT_PARTITION = 50_000
"""Rows per partition of a rank's distributed sort (Ray's default of 200 partitions is slow on small data)."""


def _sort_boundaries(positions: np.ndarray) -> list[int]:
    """Sort partition boundaries at quantiles of a rank's plan positions (at least two partitions)."""
    parts = max(2, -(-len(positions) // ROWS_PER_SORT_PARTITION))
    ordered = np.sort(positions)
    return sorted({int(ordered[len(ordered) * i // parts]) for i in range(1, parts)})


def _rank_dataset(files: list[str], placements: pa.Table, model_path: str, eos_token: str | None, filesystem):
    import ray

    ref = ray.put(placements.select(["sample_id", "pos", "seq"]))
    ds = ray.data.read_parquet(files, columns=_readable_columns(files, filesystem), filesystem=filesystem)
    ds.context.enable_progress_bars = False
    ds = ds.map_batches(_place_batch, batch_format="pyarrow", batch_size=512,
                        fn_kwargs={"placements": [ref], "tokenizer_path": model_path, "eos_token": eos_token})
    return ds.sort("pos", boundaries=_sort_boundaries(placements.column("pos").to_numpy()))


def _fingerprint(measured: pa.Table) -> str:
    digest = hashlib.sha256()
    for sid, n in zip(measured.column("sample_id").to_pylist(), measured.column("n_tokens").to_pylist()):
        digest.update(f"{sid}\t{n}\n".encode())
    return digest.hexdigest()[:16]


def _card(cfg: TrainConfig, plan: DataPlan, measured: pa.Table, files: list[str], snapshot_version: str | None) -> dict:
    from importlib.metadata import version

    from factory import __version__

    overlong = overlong_summary(measured.column("n_tokens").to_numpy(), cfg.max_seq_len)
    return {
        "student": cfg.student, "revision": cfg.revision, "snapshot_version": snapshot_version,
        "data_files": [f.rsplit("/", 1)[-1] for f in files], "data_fingerprint": _fingerprint(measured),
        "samples": measured.num_rows, "overlong_samples": overlong["count"],
        "dropped_samples": plan.dropped_samples, "total_steps": plan.total_steps, "curriculum": cfg.curriculum,
        "data": {"samples": measured.num_rows, "trained_samples": measured.num_rows - overlong["count"],
                 "max_seq_len": cfg.max_seq_len, "overlong_samples": overlong["count"], "overlong_lengths": overlong,
                 "partial_batch_dropped_samples": plan.dropped_samples},
        "config": cfg.model_dump(mode="json"),
        "versions": {"distill_factory": __version__,  # package metadata: importing deepspeed here costs seconds
                     **{name: version(name) for name in ("torch", "transformers", "deepspeed", "ray")}},
    }


def _result(out: Path, started: float) -> TrainResult:
    metrics = json.loads((out / METRICS).read_text())
    curve = [float(x) for x in metrics["loss_curve"]]
    return TrainResult(checkpoint_dir=metrics["checkpoint_dir"], steps=int(metrics["steps"]),
                       final_loss=curve[-1] if curve else None, loss_curve=curve, lr_curve=metrics["lr_curve"],
                       grad_norm_curve=metrics["grad_norm_curve"], tokens_per_s=float(metrics["tokens_per_s"]),
                       mfu=metrics["mfu"], peak_memory_bytes=int(metrics["peak_memory_bytes"]),
                       overlong_samples=int(metrics["data"]["overlong_samples"]), metrics_path=str(out / METRICS),
                       wall_s=time.perf_counter() - started)


def _write_metrics_of_finished_run(out: Path, plan: DataPlan, state: dict, card: dict) -> None:
    """Metrics of a run killed after its final checkpoint but before rank 0 wrote them."""
    write_json_atomic(out / METRICS, {
        "steps": state["step"], "total_steps": plan.total_steps, "start_step": state["step"],
        **{name: state.get(name, []) for name in ("loss_curve", "lr_curve", "grad_norm_curve")},
        "tokens": state["tokens"], "train_s": state["train_s"],
        "tokens_per_s": state["tokens"] / state["train_s"] if state["train_s"] > 0 else 0.0,
        "mfu": None, "peak_memory_bytes": 0, "data": card["data"],
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


def plan_data(cfg: TrainConfig, files: list[str], model_path: str, filesystem=None) -> tuple[DataPlan, pa.Table]:
    """Measure the samples (Ray Data; Ray must be initialised) and plan the run on those that fit
    ``max_seq_len``. Returns the plan and the per-sample measurements of every sample (sample_id,
    n_tokens, n_prompt, pass_rate), sorted by sample_id."""
    measured = _measure(files, model_path, cfg.eos_token, filesystem)
    fits = measured.filter(pc.less_equal(measured.column("n_tokens"), cfg.max_seq_len))
    plan = build_plan(fits.column("sample_id").to_pylist(), fits.column("n_tokens").to_numpy(),
                      fits.column("pass_rate").to_numpy(zero_copy_only=False).astype(np.float64),
                      curriculum=cfg.curriculum, seed=cfg.seed, epochs=cfg.epochs, max_seq_len=cfg.max_seq_len,
                      packing=cfg.packing, num_workers=cfg.data_parallel_size, micro_batch_size=cfg.micro_batch_size,
                      grad_accum=cfg.grad_accum, max_steps=cfg.max_steps)
    if plan.total_steps == 0:
        raise ValueError(f"{fits.num_rows} samples that fit max_seq_len {cfg.max_seq_len} (of {measured.num_rows}) "
                         f"make no full optimizer step of {plan.sequences_per_step} sequences")
    return plan, measured


def run_training(cfg: TrainConfig, data_files: list[str], out_dir: str, *, snapshot_version: str | None = None,
                 resume: bool = True, filesystem=None) -> TrainResult:
    """Fine-tune ``cfg.student`` on ``data_files`` (snapshot Parquet paths or URIs, read with the pyarrow
    ``filesystem`` when given) into ``out_dir``; see module contract."""
    from factory.models import resolve_model
    from factory.runtime import ray_session
    from factory.train.model import check_kernels
    from factory.train.tracking import check_trackers

    started = time.perf_counter()
    if not data_files:
        raise ValueError("data_files is empty: nothing to train on")
    check_kernels(cfg.attn_implementation, cfg.liger_kernels)
    check_trackers(cfg.log_to)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        for name in ("checkpoints", "deepspeed", "tensorboard"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / METRICS).unlink(missing_ok=True)
    remove_stale_temps(str(out))
    model_path = resolve_model(cfg.student)
    files = [f if "://" in f else str(Path(f).resolve()) for f in data_files]
    with ray_session():
        planning = time.perf_counter()
        plan, measured = plan_data(cfg, files, model_path, filesystem)
        card = _card(cfg, plan, measured, files, snapshot_version)
        start_step, prior_state = _resume_point(out, card) if resume else (0, None)
        if start_step >= plan.total_steps:
            if not (out / METRICS).exists():
                _write_metrics_of_finished_run(out, plan, prior_state, card)
            return _result(out, started)
        fitting = time.perf_counter()
        _fit(cfg, plan, files, model_path, out, card, start_step, prior_state, filesystem)
        _add_driver_timings(out, {"ray_start_s": planning - started, "plan_s": fitting - planning,
                                  "fit_s": time.perf_counter() - fitting})
    return _result(out, started)


def _add_driver_timings(out: Path, timings: dict) -> None:
    """The driver's share of the wall time, beside the workers' in metrics.json's ``timings``."""
    metrics = json.loads((out / METRICS).read_text())
    metrics["timings"] = {**metrics.get("timings", {}), **{k: round(v, 3) for k, v in timings.items()}}
    write_json_atomic(out / METRICS, metrics)


def _fit(cfg: TrainConfig, plan: DataPlan, files: list[str], model_path: str, out: Path, card: dict,
         start_step: int, prior_state: dict | None, filesystem) -> None:
    from ray.train import DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from transformers import AutoConfig

    from factory.train.worker import train_loop

    hidden_size = AutoConfig.from_pretrained(model_path, revision=cfg.revision,
                                             trust_remote_code=cfg.trust_remote_code).get_text_config().hidden_size
    datasets = {f"train_rank{rank}": _rank_dataset(files, plan.for_rank(rank, start_step), model_path, cfg.eos_token, filesystem)
                for rank in range(cfg.data_parallel_size)}
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "model_path": model_path, "out_dir": str(out),
                           "total_steps": plan.total_steps, "start_step": start_step, "prior_state": prior_state,
                           "card": card, "hidden_size": hidden_size},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(name="ray_train", storage_path=str(out / "ray")),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=[]),
    )
    trainer.fit()
