"""``factory ablate``: does a data policy help? Students trained under named policies from one generation pool,
scored on the same held-out problems under one decoding setting, compared with paired-bootstrap intervals.

``factory ablate CONFIG`` and ``pipelines/ablate.py`` run :func:`ablate_command`: load and validate the
ablation config and the distillation config it names (:mod:`factory.ablate.config`), then
:func:`factory.ablate.run.run_ablation`. Modules: ``config`` (sections, loader), ``policies`` (selections
over the pool), ``stats`` (the paired bootstrap), ``run`` (the job), ``report`` (HTML and console table).
Importing this package imports neither torch, transformers, vllm, deepspeed nor ray.
"""

from __future__ import annotations

__all__ = ["ablate_command"]


def ablate_command(config: str, overrides: tuple[str, ...] = (), verbose: bool = False) -> int:
    """``factory ablate CONFIG [--set k=v]``: validate, run with the console showing progress lines and the
    table (everything else in the run's log), the JSON path as the last line; exit code."""
    import logging
    import time

    from factory.ablate.config import load_ablate_config
    from factory.ablate.run import run_ablation, run_dir
    from factory.console import capture, error_summary, say

    cfg, factory_cfg = load_ablate_config(config, overrides)
    log_path = run_dir(cfg) / "logs" / f"ablate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"
    with capture(str(log_path), verbose=verbose):
        say(f"distill-factory ablate {cfg.run.name} (full log: {log_path})")
        try:
            run_ablation(cfg, factory_cfg)
        except Exception as error:
            logging.getLogger("factory").exception("ablate failed")
            say(f"error: {error_summary(error)}")
            say(f"the ablation failed; the full log with the traceback: {log_path}")
            return 1
    return 0
