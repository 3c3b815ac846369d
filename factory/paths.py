"""Where a run's files live: the run directory and the names of the files written beside a snapshot.

Contract: a run's directory is ``<run.work_dir>/<run.name>`` (absolute); generation checkpoints,
refresh work files, training output and stored evaluations live under it. ``run_summary.json`` and
``report.html`` are written beside the snapshot's immutable ``_manifest.json`` after training and
evaluation (the manifest names them up front).
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "_manifest.json"
RUN_SUMMARY = "run_summary.json"
REPORT = "report.html"
RUN_LOG = "run.log"


def run_dir(cfg) -> Path:
    """``<run.work_dir>/<run.name>``, absolute (``cfg``: a FactoryConfig)."""
    return Path(cfg.run.work_dir).resolve() / cfg.run.name
