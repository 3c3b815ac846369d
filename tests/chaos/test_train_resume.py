"""A training run killed (SIGKILL, driver and its Ray cluster) after a checkpoint resumes from it and
ends exactly where an unkilled run ends: same step count, and the same loss curve as a single-process
replay of the whole run (so optimizer state and data position were restored exactly)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from factory.train import TrainConfig

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

STEPS = 120
"""Long enough (seconds of training) that the kill lands between the first checkpoint and the end."""
LOSS_RTOL = 1e-4
"""Two gloo ranks vs one process: float summation order only."""

KILLED_RUN = """
import json, sys, ray
from factory.train import TrainConfig, run_training
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=sys.argv[4])
cfg = TrainConfig.model_validate_json(sys.argv[1])
run_training(cfg, json.loads(sys.argv[2]), sys.argv[3], snapshot_version="snap-chaos")
"""
"""The run to kill: its own Ray cluster under a private temp dir, so its processes can be found."""


def _write_snapshot(directory: Path, tokenizer_path: str) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ray"))
    from test_train import write_snapshot

    return write_snapshot(directory, tokenizer_path, n=48, seed=3)


def _processes_of(ray_dir: str) -> list[int]:
    """Pids whose command line names ``ray_dir`` (the killed run's raylet, GCS and Ray Train workers)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and ray_dir.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _kill_after_first_checkpoint(process: subprocess.Popen, run_dir: Path, ray_dir: str, timeout_s: float) -> None:
    """SIGKILL the driver and every process of its Ray cluster once the first checkpoint is complete
    (killing the driver alone leaves the workers training for a moment)."""
    deadline = time.monotonic() + timeout_s
    marker = run_dir / "checkpoints" / "latest"
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training ended (rc={process.returncode}) before its first checkpoint")
        time.sleep(0.05)
    for pid in [process.pid, *_processes_of(ray_dir)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def test_killed_run_resumes_from_checkpoint_and_ends_like_unkilled_run(tiny_models, ray_local, tmp_path):
    from factory.train import run_training
    from factory.train.reference import encode_files, replay
    from factory.train.run import plan_data

    files = _write_snapshot(tmp_path / "snapshot", tiny_models.student)
    cfg = TrainConfig(student=tiny_models.student, num_workers=2, cpus_per_worker=0.5, zero_stage=2, lr=1e-3,
                      micro_batch_size=1, grad_accum=2, max_seq_len=192, packing=True, epochs=40,
                      checkpoint_every_steps=STEPS // 4, max_steps=STEPS)
    run_dir = tmp_path / "run"
    ray_dir = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, cfg.model_dump_json(), json.dumps(files), str(run_dir), ray_dir],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_after_first_checkpoint(process, run_dir, ray_dir, timeout_s=600)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert not (run_dir / "metrics.json").exists(), "the run finished before it was killed"
    killed_at = int((run_dir / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))
    assert 0 < killed_at < STEPS

    result = run_training(cfg, files, str(run_dir), snapshot_version="snap-chaos")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    plan, _ = plan_data(cfg, files, tiny_models.student)
    unkilled = replay(cfg, tiny_models.student, plan, encode_files(files, tiny_models.student))

    assert metrics["start_step"] == killed_at
    assert result.steps == plan.total_steps == len(unkilled.loss_curve) == STEPS
    assert result.loss_curve == pytest.approx(unkilled.loss_curve, rel=LOSS_RTOL)
    assert result.grad_norm_curve == pytest.approx(unkilled.grad_norm_curve, rel=LOSS_RTOL)
    assert len(metrics["lr_curve"]) == STEPS  # curves carried across the resume
