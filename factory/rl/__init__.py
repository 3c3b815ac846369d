"""RL-tuning of the teacher with verifiable rewards (GRPO on TRL's ``GRPOTrainer``), closing the loop RL → distil.

``factory rl CONFIG`` and ``pipelines/rl.py`` run :func:`rl_command`: load and validate the RL config
and the distillation config it names (:mod:`factory.rl.config`), then :func:`factory.rl.run.run_rl`.
Modules: ``config`` (sections, loader), ``selection`` (prompts by pass rate), ``rewards`` (the factory's
verifiers and RM as TRL reward functions, infrastructure failures excluded), ``worker`` (one
DeepSpeed rank under Ray Train), ``run`` (the job), ``checkpoint`` (lineage, identity), ``curves`` and
``report``. Importing this package imports neither torch, transformers, trl, deepspeed nor ray.
"""

from __future__ import annotations

__all__ = ["load_rl_config", "rl_command", "run_rl"]


def rl_command(config: str, overrides: tuple[str, ...] = ()) -> int:
    """``factory rl CONFIG [--set k=v]``: validate, run, print the headline as one JSON line; exit code."""
    import json

    from factory.rl.config import load_rl_config
    from factory.rl.run import run_rl

    cfg, factory_cfg = load_rl_config(config, overrides)
    result = run_rl(cfg, factory_cfg)
    print(f"report: {result.report}")
    print(json.dumps(result.headline()))
    return 0


def __getattr__(name: str):
    if name == "load_rl_config":
        from factory.rl.config import load_rl_config

        return load_rl_config
    if name == "run_rl":
        from factory.rl.run import run_rl

        return run_rl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
