"""The RL loop on the tiny kit: GRPO (`factory rl`) against rejection-sampling fine-tuning at equal compute.

Starts from the standard tiny teacher (the one configs/demo.yaml distils) and measures, in one run:

1. the demo snapshot (the data half of configs/demo.yaml, built if the store has none): per-prompt pass rates;
2. GRPO: ``run_rl`` with configs/rl-demo.yaml: held-out pass@1 before and after, the curves, wall time;
3. the control a user would try first, RFT: the teacher fine-tuned (the factory's own SFT, ``run_training``) on
   its own verified samples, at equal compute: as many rollouts as GRPO drew (steps × prompts × group), from the
   same selected prompts at the same rollout sampling, through the factory's generation/verify/filter/dedup
   stages (correct samples kept), then as many sequences through forward/backward as GRPO trained on, at GRPO's
   learning rate; evaluated exactly as GRPO's checkpoint (same held-out prompts, engine, sampling);
4. ``distil_pre`` / ``distil_rl``: ``factory run configs/demo.yaml`` distilling the pre-RL teacher, and again
   the RL-tuned one (the student's held-out accuracy for each).

Prints one JSON object (also merged into ``--out``/bench_rl.json, so phases can run one at a time): pass@1
before / GRPO / RFT with their changes, the binomial bound on pass@1's standard error over the held-out
problems, rollouts, sequences trained, and seconds.

    flock /tmp/factory-heavy.lock .venv/bin/python benchmarks/bench_rl.py \
        [--phase grpo|rft|distil_pre|distil_rl|all] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def demo_snapshot(factory_cfg):
    """The demo store's latest snapshot, built by the data half of configs/demo.yaml if absent."""
    from factory.flow import build_snapshot
    from factory.runtime import ray_session
    from factory.store import SnapshotStore

    snapshot = SnapshotStore.from_config(factory_cfg.store).latest()
    if snapshot is None:
        with ray_session(factory_cfg.run.ray.address, factory_cfg.run.ray.num_cpus):
            snapshot, _ = build_snapshot(factory_cfg.model_copy(update={"train": None}))
    return snapshot


def rft_samples(rl_cfg, factory_cfg, prompts: list[dict], out: Path):
    """The teacher's verified samples on the RL prompts, as many rollouts as GRPO drew (a committed snapshot)."""
    from factory.config import parse_config
    from factory.flow import build_snapshot
    from factory.runtime import ray_session

    g = rl_cfg.grpo
    needed = g.steps * g.prompts_per_step
    chosen = [prompts[i % len(prompts)] for i in range(min(needed, len(prompts)))]
    samples_per_prompt = math.ceil(needed * g.group_size / len(chosen))
    source = out / "rft_prompts.jsonl"
    rows = [{"id": p["prompt_id"], "prompt": p["prompt"], "reference": p["reference"]} for p in chosen]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = factory_cfg.model_dump(mode="json")
    data["run"] = {**data["run"], "name": "bench-rl-rft", "work_dir": str(out)}
    data["prompts"] = {"on_bad_row": "fail", "sources": [{
        "name": "rl-prompts", "kind": "jsonl", "path": str(source), "task": "math", "id_field": "id",
        "reference_field": "reference"}]}
    data["generation"]["sampling"].update(n=samples_per_prompt, temperature=g.temperature, top_p=g.top_p,
                                          max_tokens=g.max_completion_length)
    data["filter"]["rejection"].update(require_correct=True, max_per_prompt=None)
    data["store"] = {**data["store"], "root": str(out / "datasets"), "dataset": "rft"}
    data.update(train=None, eval={"enabled": False})
    cfg = parse_config(data, "rft")
    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        snapshot, manifest = build_snapshot(cfg)
    return snapshot, len(chosen) * samples_per_prompt


def rft_train(rl_cfg, teacher_path: str, snapshot, out: Path, sequences: int):
    """SFT of the teacher on the RFT snapshot: ``sequences`` sequences through forward/backward."""
    from factory.train import TrainConfig, run_training

    micro = 16
    cfg = TrainConfig(student=teacher_path, num_workers=1, cpus_per_worker=2, zero_stage=2, precision="fp32",
                      lr=rl_cfg.grpo.learning_rate, warmup_ratio=0.05, schedule="constant_decay", epochs=1000,
                      micro_batch_size=micro, max_seq_len=256, max_steps=max(1, sequences // micro), seed=0,
                      log_to=[])
    return run_training(cfg, snapshot.files, str(out / "rft_train"), snapshot_version=snapshot.version, resume=False)


def se_bound(pass_at_1: float | None, problems: int) -> float | None:
    """Upper bound of pass@1's standard error over ``problems`` held-out problems (binomial, p(1-p)/n)."""
    return None if pass_at_1 is None else math.sqrt(pass_at_1 * (1 - pass_at_1) / problems)


def distil(teacher: str | None) -> dict:
    """``factory run configs/demo.yaml`` as it is (the pre-RL teacher: the demo's own run, whose snapshot the
    RL prompts come from), or with ``teacher`` as the teacher (run ``demo-rl``, dataset ``demo-arith-rl``)."""
    from factory.config import load_config
    from factory.flow import run_distill

    overrides = () if teacher is None else (f"generation.engine.model={teacher}", "run.name=demo-rl",
                                            "store.dataset=demo-arith-rl")
    summary = run_distill(load_config(REPO / "configs" / "demo.yaml", overrides))
    keys = ("accuracy", "pass_at_1", "model_identity")
    return {name: {k: summary.eval.get(name, {}).get(k) for k in keys} for name in ("teacher", "student_after")} | {
        "ratio": summary.eval.get("ratio"), "snapshot": summary.snapshot_version,
        "seconds": round(summary.seconds, 1)}


def grpo_phase(rl_cfg, factory_cfg) -> dict:
    """Phase ``grpo``: ``run_rl`` from the standard teacher (and the demo snapshot, built if absent)."""
    from factory.rl.run import run_rl

    began = time.perf_counter()
    snapshot = demo_snapshot(factory_cfg)
    snapshot_s = time.perf_counter() - began
    began = time.perf_counter()
    grpo = run_rl(rl_cfg, factory_cfg)
    g = rl_cfg.grpo
    rollouts = g.steps * g.prompts_per_step * g.group_size
    return {**grpo.headline(), "snapshot": snapshot.version, "snapshot_s": round(snapshot_s, 1), "rollouts": rollouts,
            "sequences_trained": rollouts * g.num_iterations, "train_s": grpo.timings.get("train_s"),
            "timings": grpo.timings, "seconds": round(time.perf_counter() - began, 1),
            "heldout_problems": grpo.eval["before"]["problems"], "k": grpo.eval["after"].get("k"),
            "pass_at_k_before": grpo.eval["before"].get("pass_at_k"),
            "pass_at_k_after": grpo.eval["after"].get("pass_at_k"),
            "pass_at_1_se_bound": se_bound(grpo.eval["before"]["pass_at_1"], grpo.eval["before"]["problems"])}


def rft_phase(rl_cfg, factory_cfg, out: Path) -> dict:
    """Phase ``rft``: the control at equal compute (module docstring), evaluated like GRPO's checkpoint."""
    from factory.models import resolve_model
    from factory.rl.run import evaluate_policy, policy_model
    from factory.rl.selection import select_from_snapshot
    from factory.runtime import ray_session

    began = time.perf_counter()
    g = rl_cfg.grpo
    sequences = g.steps * g.prompts_per_step * g.group_size * g.num_iterations
    selection = select_from_snapshot(demo_snapshot(factory_cfg), rl_cfg.prompts, rl_cfg.run.seed)
    snapshot, drawn = rft_samples(rl_cfg, factory_cfg, selection.prompts.to_pylist(), out)
    generated_s = time.perf_counter() - began
    # The worker takes the RL run's CPUs; one more lets Ray Data's read tasks feed it (with exactly the worker's
    # CPUs in the session, the reads could never be scheduled and the run hung).
    with ray_session(rl_cfg.run.ray.address, rl_cfg.run.ray.num_cpus + 1):
        trained = rft_train(rl_cfg, resolve_model(policy_model(rl_cfg, factory_cfg)[0]), snapshot, out, sequences)
    with ray_session(rl_cfg.run.ray.address, rl_cfg.run.ray.num_cpus):
        result = evaluate_policy(rl_cfg, factory_cfg, "rft_after", trained.checkpoint_dir, None)
    return {"rollouts": drawn, "verified_samples_kept": snapshot.num_rows, "steps": trained.steps,
            "sequences_trained": trained.steps * 16, "pass_at_1_after": result["pass_at_1"],
            "pass_at_k_after": result.get("pass_at_k"), "k": result.get("k"), "generate_s": round(generated_s, 1),
            "train_s": round(trained.wall_s, 1), "seconds": round(time.perf_counter() - began, 1),
            "checkpoint": trained.checkpoint_dir}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "rl-demo.yaml"))
    parser.add_argument("--phase", choices=["grpo", "rft", "distil_pre", "distil_rl", "all"], default="all",
                        help="run one phase (each under ~12 min here); results merge into --out/bench_rl.json")
    parser.add_argument("--steps", type=int, default=None, help="override grpo.steps")
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-rl"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from factory.rl.config import load_rl_config

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = (f"grpo.steps={args.steps}",) if args.steps else ()
    rl_cfg, factory_cfg = load_rl_config(args.config, overrides + (f"run.work_dir={out}",))
    path = out / "bench_rl.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures.update(config=args.config, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    if args.phase in ("grpo", "all"):
        figures["grpo"] = grpo_phase(rl_cfg, factory_cfg)
    if args.phase in ("rft", "all"):
        figures["rft"] = rft_phase(rl_cfg, factory_cfg, out)
    if args.phase in ("distil_pre", "all"):
        figures.setdefault("distil", {})["pre_rl_teacher"] = distil(None)
    if args.phase in ("distil_rl", "all"):
        figures.setdefault("distil", {})["rl_teacher"] = distil(figures["grpo"]["checkpoint"])
    if "grpo" in figures:
        grpo = figures["grpo"]
        summary = {"pass_at_1_before": grpo["pass_at_1_before"], "pass_at_1_grpo": grpo["pass_at_1_after"],
                   "grpo_change": grpo["pass_at_1_after"] - grpo["pass_at_1_before"],
                   "pass_at_1_se_bound": grpo["pass_at_1_se_bound"]}
        if "rft" in figures:
            summary.update(pass_at_1_rft=figures["rft"]["pass_at_1_after"],
                           rft_change=figures["rft"]["pass_at_1_after"] - grpo["pass_at_1_before"])
        figures["summary"] = summary
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
