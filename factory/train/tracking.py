"""Where rank 0 sends per-step training metrics, and the progress lines users read.

Contract: :class:`Trackers` logs scalars (``train/loss``, ``train/lr``, ``train/grad_norm``,
``train/tokens_per_s``, ``train/mfu``, ``train/peak_memory_gib``; None values skipped) at each
optimizer step to TensorBoard through ``torch.utils.tensorboard.SummaryWriter`` (event files under
the run's ``tensorboard/``), and, when configured, to Weights & Biases and MLflow through Ray's own
integrations (``ray.air.integrations.wandb.setup_wandb`` / ``mlflow.setup_mlflow``).
:func:`check_trackers` fails before training starts, naming ``train.log_to``, when a package is
missing. :class:`Progress` writes about ``PROGRESS_LINES`` INFO lines per run (step/total, loss,
tokens/s, ETA) to the ``factory.train`` logger. Not covered: W&B/MLflow authentication (their own
environment variables and login files apply).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time

from factory.console import ensure_worker_logging, progress

log = logging.getLogger("factory.train")

PROGRESS_LINES = 6
"""Progress lines per run (one every total/PROGRESS_LINES steps, plus the last step)."""
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
"""Python package each ``train.log_to`` entry needs."""


def check_trackers(log_to: list[str]) -> None:
    """Raise ValueError naming ``train.log_to`` when a listed tracker's package is not installed."""
    for name in log_to:
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise ValueError(f"train.log_to: {name} needs the {PACKAGES[name]} package, which is not installed "
                             f"here; pip install {PACKAGES[name]}, or remove {name} from log_to")


class Trackers:
    """The configured metric sinks of one run (create on rank 0 only)."""

    def __init__(self, log_to: list[str], log_dir: str, project: str, mlflow_tracking_uri: str | None,
                 run_name: str, params: dict):
        self._tensorboard = self._wandb = self._mlflow = None
        if "tensorboard" in log_to:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(log_dir)
        if "wandb" in log_to:
            from ray.air.integrations.wandb import setup_wandb

            self._wandb = setup_wandb(config=params, project=project, name=run_name)
        if "mlflow" in log_to:
            from ray.air.integrations.mlflow import setup_mlflow

            self._mlflow = setup_mlflow(config=params, tracking_uri=mlflow_tracking_uri, experiment_name=project,
                                        run_name=run_name, create_experiment_if_not_exists=True)

    def log(self, step: int, scalars: dict[str, float | None]) -> None:
        """Record ``scalars`` (as ``train/<name>``) at optimizer step ``step``."""
        values = {f"train/{name}": float(value) for name, value in scalars.items() if value is not None}
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        if self._mlflow is not None:
            self._mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        """Flush and close every sink."""
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._mlflow is not None:
            self._mlflow.end_run()


def format_eta(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Progress lines for optimizer steps ``start_step+1 .. total_steps`` of this session."""

    def __init__(self, start_step: int, total_steps: int, lines: int = PROGRESS_LINES):
        self.start_step, self.total_steps = start_step, total_steps
        self.every = max(1, math.ceil((total_steps - start_step) / lines))
        self.started = time.perf_counter()

    def due(self, step: int) -> bool:
        """Whether step ``step`` gets a line."""
        return step == self.total_steps or (step - self.start_step) % self.every == 0

    def step(self, step: int, loss: float, tokens_per_s: float) -> None:
        """Log the line of step ``step`` if it is due (ETA from this session's mean step time)."""
        if not self.due(step):
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / max(step - self.start_step, 1) * (self.total_steps - step)
        progress(log, "train: step %d/%d  loss %.4f  %.0f tok/s  ETA %s", step, self.total_steps, loss, tokens_per_s,
                 format_eta(eta))


def ensure_log_handler() -> None:
    """In a Ray worker (no logging configured), send ``factory`` INFO lines to stderr, which Ray
    forwards to the driver: the run log, and the console for the progress lines."""
    ensure_worker_logging("factory")