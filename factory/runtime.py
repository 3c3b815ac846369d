"""Ray session handling shared by every entrypoint.

Contract: :func:`ray_session` joins the cluster a submitted job runs in (or ``address``), else starts
a local instance bound to this machine; environment variables the workers need (vLLM CPU cache
size, offline hub) are passed through ``runtime_env`` so they reach workers on every node. It shuts
Ray down only if it started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

log = logging.getLogger("factory")

# Variables forwarded to every Ray worker when set on the driver.
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_CPU_OMP_THREADS_BIND",
    "FACTORY_CACHE",
    "TORCH_EXTENSIONS_DIR",
    "DS_ACCELERATOR",
    "OMP_NUM_THREADS",
)
# Defaults that keep a CPU-only machine working offline; a cluster's runtime_env may override them.
DEFAULT_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": "1"}


def worker_env() -> dict[str, str]:
    """Environment for Ray workers: the defaults, overridden by what the driver has set."""
    env = dict(DEFAULT_ENV)
    env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
    return env


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Join or start Ray for the duration of the block."""
    import ray

    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    started = False
    if not ray.is_initialized():
        joining = address or os.environ.get("RAY_ADDRESS")
        kwargs = {"runtime_env": {"env_vars": worker_env()}, "log_to_driver": True}
        if joining:
            ray.init(address=joining, **kwargs)
        else:
            # "local": always a fresh instance, never a `ray start` cluster that happens to run here
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
        started = True
        log.info("ray: %s", "joined " + joining if joining else "started a local instance")
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """This process's environment holds ``values`` inside the block; each variable's earlier value (or its
    absence) is restored after it, also when the block raises."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


IN_PROCESS_MAX_ROWS = 20_000
"""Up to this many rows, a step over narrow columns (the ``prompts`` side table's groupby) or a streamed per-row
pass (training's token-length pass) runs in the calling process instead of in Ray Data tasks: there the task and
worker start-up (~10 s a step on 2 cores) outweighs the work, and the process holds only narrow columns or one
batch of text at a time. ``benchmarks/bench_small_steps.py`` measures both ways. Above it, Ray Data: no process
holds O(rows) state."""


def runs_in_process(rows: int) -> bool:
    """Whether a step over ``rows`` rows runs in the calling process (:data:`IN_PROCESS_MAX_ROWS`)."""
    return rows <= IN_PROCESS_MAX_ROWS


MAX_GROUPBY_PARTITIONS = 200
"""Ray Data's own default for a hash-shuffle groupby, kept as the ceiling on large clusters."""


def groupby_partitions() -> int:
    """Hash-shuffle partitions for a ``groupby``: two per CPU of the cluster, between 2 and 200. Ray's fixed
    default of 200 spends ~10 s of task start-up on a small machine for a few thousand rows (the demo's
    rejection stage), while a partition count that follows the cluster keeps every CPU busy at scale."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(2, min(MAX_GROUPBY_PARTITIONS, 2 * cpus))
