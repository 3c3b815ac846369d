"""Where a run's files live: the run directory and the names of the files written beside a snapshot.

Contract: a run's directory is ``<run.work_dir>/<run.name>`` (absolute); generation checkpoints,
refresh work files, training output and stored evaluations live under it. ``run_summary.json`` and
``report.html`` are written beside the snapshot's immutable ``_manifest.json`` after training and
evaluation (the manifest names them up front). Each CLI invocation logs to its own file under ``logs/``.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "_manifest.json"
RUN_SUMMARY = "run_summary.json"
REPORT = "report.html"


def run_dir(cfg) -> Path:
    """``<run.work_dir>/<run.name>``, absolute (``cfg``: a FactoryConfig)."""
    return Path(cfg.run.work_dir).resolve() / cfg.run.name


def run_log(cfg, command: str) -> Path:
    """A new log file for one ``factory <command>`` invocation: ``<run dir>/logs/<command>-<UTC time>.log``."""
    import time

    return run_dir(cfg) / "logs" / f"{command}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"
