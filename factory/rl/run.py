"""``run_rl``: select prompts, evaluate the starting policy, run GRPO on Ray Train workers, record, evaluate again.

Steps (``factory rl CONFIG`` and ``pipelines/rl.py`` both run :func:`run_rl`):

1. prompt selection from the factory config's snapshot (:mod:`factory.rl.selection`), written to
   ``selection.json``; no selected prompt is an error naming the counts;
2. held-out pass@1 of the starting policy (``before``, unless ``eval.before`` is off) through the
   factory's own evaluation (its generation engine, vLLM by default, and verifiers) at ``eval``'s sampling;
3. GRPO (:func:`factory.rl.worker.grpo_loop`) on ``workers.num_workers`` Ray Train workers, one
   DeepSpeed rank each (gloo/fp32 on CPU, NCCL on GPU); with ``grpo.save_every_steps`` the run
   directory ``<work_dir>/<name>`` holds resumable trainer checkpoints, and rerunning an interrupted
   run resumes from the last one (without it, a rerun starts over);
4. the final HF checkpoint gets its ``rl_card.json`` (lineage) and identity (:mod:`factory.rl.checkpoint`);
5. held-out pass@1 of the checkpoint (``after``), loaded by the same engine as the teacher was;
6. ``rl_summary.json`` (everything above, the curves included) and ``report.html`` (curves charted).

Contract: configs are validated before Ray starts (:func:`factory.rl.config.load_rl_config`); an
infrastructure failure of a verifier during RL excludes that completion (counted in ``excluded``),
it is never scored 0. Ray is started only if not already initialised.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from factory.atomic import write_atomic
from factory.config import FactoryConfig
from factory.rl.config import RLConfig

log = logging.getLogger("factory")
SUMMARY = "rl_summary.json"
SELECTION = "selection.json"
REPORT = "report.html"


@dataclass
class RLResult:
    """What an RL run produced; ``rl_summary.json`` holds the same."""

    checkpoint: str
    """The final HF model directory (usable as ``generation.engine.model``)."""
    identity: str | None
    """:func:`factory.models.model_identity` of the checkpoint directory."""
    steps: int
    """Optimizer steps taken."""
    selection: dict
    """Prompt selection report (counts by reason)."""
    eval: dict
    """Held-out results ``before`` / ``after`` (:func:`factory.evaluate.evaluate_model`'s), and ``delta``
    (after - before pass@1)."""
    curves: dict
    """Per-step curves (:mod:`factory.rl.curves`)."""
    excluded: dict
    """Completions excluded from their group for verifier failures, by verdict."""
    judged: int
    """Completions judged in all."""
    report: str
    """The run's HTML report."""
    seconds: float
    """Wall time of the run."""
    timings: dict
    """Seconds per phase."""

    def headline(self) -> dict:
        before = self.eval.get("before", {}).get("pass_at_1")
        after = self.eval.get("after", {}).get("pass_at_1")
        correctness = [v for v in self.curves.get("correctness", []) if v is not None]
        return {"checkpoint": self.checkpoint, "identity": self.identity, "steps": self.steps,
                "pass_at_1_before": before, "pass_at_1_after": after,
                "correctness_first_step": correctness[0] if correctness else None,
                "correctness_last_step": correctness[-1] if correctness else None,
                "excluded": self.excluded, "selected_prompts": self.selection["selected"],
                "seconds": round(self.seconds, 1)}


def run_dir(cfg: RLConfig) -> Path:
    """``<run.work_dir>/<run.name>``, absolute."""
    return Path(cfg.run.work_dir).resolve() / cfg.run.name


def policy_model(cfg: RLConfig, factory_cfg: FactoryConfig) -> tuple[str, str | None]:
    """The starting policy's name and revision (default: the factory config's teacher)."""
    if cfg.policy.model is not None:
        return cfg.policy.model, cfg.policy.revision
    return factory_cfg.generation.engine.model, factory_cfg.generation.engine.revision


def _eval_config(cfg: RLConfig, factory_cfg: FactoryConfig, revision: str | None) -> FactoryConfig:
    engine = factory_cfg.generation.engine.model_copy(update={"revision": revision})
    e = cfg.eval
    return factory_cfg.model_copy(update={
        "generation": factory_cfg.generation.model_copy(update={"engine": engine}),
        "eval": factory_cfg.eval.model_copy(update={"samples": e.samples, "temperature": e.temperature,
                                                    "top_p": e.top_p, "max_tokens": e.max_tokens})})


def evaluate_policy(cfg: RLConfig, factory_cfg: FactoryConfig, name: str, model: str, revision: str | None) -> dict:
    """Held-out pass@1 of ``model`` with the factory's own evaluation (Ray must be up)."""
    from factory.evaluate import evaluate_model, heldout_prompts

    eval_cfg = _eval_config(cfg, factory_cfg, revision)
    return evaluate_model(eval_cfg, name, model, heldout_prompts(eval_cfg), student=False)


def _fit(cfg: RLConfig, model_path: str, prompts: list[dict], rewards_spec: dict, out: Path) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from factory.rl.worker import grpo_loop

    w = cfg.workers
    resources = {"CPU": w.cpus_per_worker, **({"GPU": w.gpus_per_worker} if w.use_gpu else {})}
    trainer = TorchTrainer(
        grpo_loop,
        train_loop_config={"rl": cfg.model_dump(mode="json"), "model_path": model_path, "prompts": prompts,
                           "rewards_spec": rewards_spec, "out_dir": str(out)},
        scaling_config=ScalingConfig(num_workers=w.num_workers, use_gpu=w.use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if w.use_gpu else "gloo"),
        run_config=RunConfig(name="ray_train", storage_path=str(out / "ray")),
    )
    trainer.fit()


def _card(cfg: RLConfig, factory_cfg: FactoryConfig, base: tuple[str, str | None], base_path: str,
          selection: dict, metrics: dict) -> dict:
    import deepspeed
    import torch
    import transformers
    import trl

    from factory import __version__
    from factory.models import model_identity
    from factory.verifiers import code_verifier, math_verifier

    reward_model = None
    if cfg.rewards.reward_model > 0:
        reward_model = {"model": factory_cfg.reward.model, "revision": factory_cfg.reward.revision}
    return {
        "base": {"model": base[0], "revision": base[1], "path": base_path,
                 "identity": model_identity(base[0], base[1])},
        "prompts": {**selection, "factory_config": cfg.factory, "store_root": factory_cfg.store.root,
                    "dataset": factory_cfg.store.dataset},
        "rewards": {"weights": cfg.rewards.model_dump(mode="json"), "reward_model": reward_model,
                    "verifiers": {"math": math_verifier.VERSION, "code": code_verifier.VERSION},
                    "verify": factory_cfg.verify.model_dump(mode="json")},
        "prompting": factory_cfg.generation.prompting.model_dump(mode="json"),
        "grpo": cfg.grpo.model_dump(mode="json"), "rollout": cfg.rollout.model_dump(mode="json"),
        "workers": cfg.workers.model_dump(mode="json"), "steps": metrics["steps"], "excluded": metrics["excluded"],
        "engine": "trl.GRPOTrainer",
        "versions": {"distill_factory": __version__, "trl": trl.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "deepspeed": deepspeed.__version__},
    }


def run_rl(cfg: RLConfig, factory_cfg: FactoryConfig) -> RLResult:
    """The whole RL job (module docstring)."""
    from factory.models import resolve_model
    from factory.rl.checkpoint import finish_checkpoint
    from factory.rl.report import write_report
    from factory.rl.selection import select_from_snapshot
    from factory.runtime import ray_session
    from factory.store import SnapshotStore

    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    store = SnapshotStore.from_config(factory_cfg.store)
    snapshot = store.latest() if cfg.prompts.snapshot == "latest" else store.get(cfg.prompts.snapshot)
    if snapshot is None:
        raise ValueError(f"prompts.snapshot: the store {factory_cfg.store.root}/{factory_cfg.store.dataset} has no "
                         f"snapshot yet; run `factory run {cfg.factory}` first")
    selection = select_from_snapshot(snapshot, cfg.prompts, cfg.run.seed)
    write_atomic(str(out / SELECTION), json.dumps(selection.report, indent=2).encode())
    log.info("rl: prompts %s", selection.report)
    if not selection.report["selected"]:
        raise ValueError(f"prompts: no prompt of snapshot {snapshot.version} is in the pass-rate band "
                         f"{selection.report['band']}; left out: {selection.report['left_out']}")
    base = policy_model(cfg, factory_cfg)
    base_path = resolve_model(base[0])
    rewards_spec = {"verify": factory_cfg.verify.model_dump(mode="json"),
                    "reward": factory_cfg.reward.model_dump(mode="json"),
                    "prompting": factory_cfg.generation.prompting.model_dump(mode="json")}
    results: dict = {}
    timings["select_s"] = round(time.perf_counter() - started, 3)
    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        if cfg.eval.enabled and cfg.eval.before:
            began = time.perf_counter()
            results["before"] = evaluate_policy(cfg, factory_cfg, "rl_before", base[0], base[1])
            timings["eval_before_s"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        _fit(cfg, base_path, selection.prompts.to_pylist(), rewards_spec, out)
        timings["train_s"] = round(time.perf_counter() - began, 3)
        metrics = json.loads((out / "metrics.json").read_text())
        identity = finish_checkpoint(metrics["checkpoint_dir"],
                                     _card(cfg, factory_cfg, base, base_path, selection.report, metrics))
        if cfg.eval.enabled:
            began = time.perf_counter()
            results["after"] = evaluate_policy(cfg, factory_cfg, "rl_after", metrics["checkpoint_dir"], None)
            timings["eval_after_s"] = round(time.perf_counter() - began, 3)
    if results.get("before", {}).get("pass_at_1") is not None and results.get("after", {}).get("pass_at_1") is not None:
        results["delta"] = results["after"]["pass_at_1"] - results["before"]["pass_at_1"]
    result = RLResult(checkpoint=metrics["checkpoint_dir"], identity=identity, steps=metrics["steps"],
                      selection=selection.report, eval=results, curves=metrics["curves"], excluded=metrics["excluded"],
                      judged=metrics["judged"], report=str(out / REPORT), seconds=time.perf_counter() - started,
                      timings={**timings, **{f"worker_{k}": v for k, v in metrics["timings"].items()}})
    summary = asdict(result)
    write_atomic(str(out / SUMMARY), json.dumps(summary, indent=2, default=str).encode())
    write_report(str(out / REPORT), summary)
    return result
