"""Launching work as Ray jobs, idempotently.

Contract: a submission id is derived from *what* runs (command, config hash, snapshot or schedule
slot), never from the wall clock, so a scheduler that retries or fires twice for the same slot
finds the existing job instead of starting a second copy. ``factory jobs`` lists jobs or waits for
one. Local runs (no ``--submit``) execute the same functions in this process.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from factory.config import FactoryConfig, config_hash

REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
AGENT_WAIT_S = 120.0
RUNTIME_EXCLUDES = [".venv/", "runs/", ".git/", "**/__pycache__/", ".pytest_cache/"]


def submission_id(command: str, cfg: FactoryConfig, key: str) -> str:
    """Deterministic Ray job id for ``command`` on this config and ``key`` (snapshot or slot)."""
    digest = hashlib.sha256(f"{command}\0{config_hash(cfg)}\0{key}".encode()).hexdigest()[:16]
    return f"factory-{command}-{cfg.run.name}-{digest}"


def submit(command: str, cfg: FactoryConfig, config_path: str, key: str, *, address: str | None,
           extra_args: tuple[str, ...] = ()) -> tuple[str, bool]:
    """Submit ``pipelines/<command>.py`` once per (config, key). Returns (id, newly_submitted)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    job_id = submission_id(command, cfg, key)
    try:
        client.get_job_info(job_id)
        return job_id, False  # already submitted for this slot/snapshot: do not start a second copy
    except RuntimeError:
        pass
    entrypoint = " ".join(["python", f"pipelines/{command}.py", "--config", config_path, *extra_args])
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            client.submit_job(entrypoint=entrypoint, submission_id=job_id,
                              runtime_env={"working_dir": str(REPO_ROOT), "excludes": RUNTIME_EXCLUDES})
            return job_id, True
        except RuntimeError as e:
            if "already exists" in str(e):  # lost a race with an identical submission
                return job_id, False
            # A head that has just started answers before its job agent is up: wait a bounded time.
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def wait(job_id: str, address: str | None, timeout_s: float) -> str:
    """Poll until the job ends or ``timeout_s`` passes; returns the last status."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL or time.monotonic() > deadline:
            return status
        time.sleep(2.0)


def train_command(cfg: FactoryConfig, config_path: str, snapshot: str, *, submit_job: bool = False,
                  address: str | None = None, overrides: tuple[str, ...] = ()) -> int:
    """``factory train``: SFT on a committed snapshot, here or as a Ray job."""
    from factory.store import SnapshotStore

    if cfg.train is None:
        print("error: the config has no train section", file=sys.stderr)
        return 2
    store = SnapshotStore.from_config(cfg.store)
    snap = store.latest() if snapshot == "latest" else store.get(snapshot)
    if snap is None:
        print(f"error: no committed snapshot in {cfg.store.root}/{cfg.store.dataset}", file=sys.stderr)
        return 2
    if submit_job:
        extra = ("--snapshot", snap.version, *[f"--set={o}" for o in overrides])
        job_id, new = submit("train", cfg, config_path, snap.version, address=address, extra_args=extra)
        print(json.dumps({"submission_id": job_id, "submitted": new}))
        return 0
    from factory.models import prepare_tiny_models
    from factory.paths import run_dir
    from factory.runtime import ray_session
    from factory.train import run_training

    prepare_tiny_models([cfg.train.student])
    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        result = run_training(cfg.train, snap.files, str(run_dir(cfg) / "train" / snap.version),
                              snapshot_version=snap.version, filesystem=snap.filesystem)
    print(json.dumps({"checkpoint": result.checkpoint_dir, "steps": result.steps, "final_loss": result.final_loss}))
    return 0


def jobs_command(address: str | None, wait_for: str | None, timeout_s: float) -> int:
    """``factory jobs``: list jobs, or wait for one and exit non-zero unless it succeeded."""
    from ray.job_submission import JobSubmissionClient

    if wait_for:
        status = wait(wait_for, address, timeout_s)
        print(json.dumps({"submission_id": wait_for, "status": status}))
        return 0 if status == "SUCCEEDED" else 1
    for job in JobSubmissionClient(address).list_jobs():
        print(json.dumps({"submission_id": job.submission_id, "status": str(job.status.value),
                          "entrypoint": job.entrypoint}))
    return 0
