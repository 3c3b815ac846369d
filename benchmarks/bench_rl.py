"""The RL loop on the tiny kit: GRPO (`factory rl`) against rejection-sampling fine-tuning at equal compute.

Starts from the standard tiny teacher (the one configs/demo.yaml distils) and measures, in one run:

1. the demo snapshot (the data half of configs/demo.yaml, built if the store has none): per-prompt pass rates;
2. GRPO: ``run_rl`` with configs/rl-demo.yaml: held-out pass@1 before and after, the curves, wall time;
3. the control a user would try first, RFT: the teacher fine-tuned (the factory's own SFT, ``run_training``) on
   its own verified samples, at equal compute: as many rollouts as GRPO drew (steps × prompts × group), from the
   same selected prompts at the same rollout sampling, through the factory's generation/verify/filter/dedup
   stages (correct samples kept), then as many sequences through forward/backward as GRPO trained on, at GRPO's
   learning rate; evaluated exactly as GRPO's checkpoint (same held-out prompts, engine, sampling);
4. with ``--distil``: ``factory run configs/demo.yaml`` distilling the pre-RL teacher and again the RL-tuned one
   (the student's held-out accuracy for each).

Prints one JSON object (also written to ``--out``/bench_rl.json): pass@1 before / GRPO / RFT with their changes,
the binomial bound on pass@1's standard error over the held-out problems, rollouts, sequences trained, and seconds.

    flock /tmp/factory-heavy.lock .venv/bin/python benchmarks/bench_rl.py [--steps N] [--distil]
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
    source.write_text("".join(json.dumps({"id": p["prompt_id"], "prompt": p["prompt"], "reference": p["reference"]}) + "\n"
                              for p in chosen))
    data = factory_cfg.model_dump(mode="json")
    data["run"] = {**data["run"], "name": "bench-rl-rft", "work_dir": str(out)}
    data["prompts"] = {"on_bad_row": "fail", "sources": [{"name": "rl-prompts", "kind": "jsonl", "path": str(source),
                                                          "task": "math", "id_field": "id", "reference_field": "reference"}]}
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


def distil(teacher: str | None, name: str) -> dict:
    """``factory run configs/demo.yaml`` (teacher overridden when given): the student's held-out figures."""
    from factory.config import load_config
    from factory.flow import run_distill

    overrides = [f"run.name={name}", f"store.dataset={name}"]
    if teacher:
        overrides.append(f"generation.engine.model={teacher}")
    summary = run_distill(load_config(REPO / "configs" / "demo.yaml", tuple(overrides)))
    return {"teacher": summary.eval.get("teacher", {}).get("accuracy"),
            "student_after": summary.eval.get("student_after", {}).get("accuracy"), "seconds": round(summary.seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "rl-demo.yaml"))
    parser.add_argument("--steps", type=int, default=None, help="override grpo.steps")
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-rl"))
    parser.add_argument("--distil", action="store_true", help="also distil the pre-RL and RL-tuned teachers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from factory.models import resolve_model
    from factory.rl.config import load_rl_config
    from factory.rl.run import evaluate_policy, policy_model, run_rl
    from factory.rl.selection import select_from_snapshot
    from factory.runtime import ray_session

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = (f"grpo.steps={args.steps}",) if args.steps else ()
    rl_cfg, factory_cfg = load_rl_config(args.config, overrides + (f"run.work_dir={out}",))
    figures: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "config": args.config}

    began = time.perf_counter()
    snapshot = demo_snapshot(factory_cfg)
    figures["snapshot"] = {"version": snapshot.version, "seconds": round(time.perf_counter() - began, 1)}

    began = time.perf_counter()
    grpo = run_rl(rl_cfg, factory_cfg)
    g = rl_cfg.grpo
    rollouts = g.steps * g.prompts_per_step * g.group_size
    figures["grpo"] = {**grpo.headline(), "rollouts": rollouts, "sequences_trained": rollouts * g.num_iterations,
                       "train_s": grpo.timings.get("train_s"), "seconds": round(time.perf_counter() - began, 1),
                       "pass_at_k_before": grpo.eval["before"].get("pass_at_k"),
                       "pass_at_k_after": grpo.eval["after"].get("pass_at_k"), "k": grpo.eval["after"].get("k")}

    began = time.perf_counter()
    selection = select_from_snapshot(snapshot, rl_cfg.prompts, rl_cfg.run.seed)
    rft_snapshot, drawn = rft_samples(rl_cfg, factory_cfg, selection.prompts.to_pylist(), out)
    teacher_path = resolve_model(policy_model(rl_cfg, factory_cfg)[0])
    trained = rft_train(rl_cfg, teacher_path, rft_snapshot, out, rollouts * g.num_iterations)
    with ray_session(rl_cfg.run.ray.address, rl_cfg.run.ray.num_cpus):
        rft_eval = evaluate_policy(rl_cfg, factory_cfg, "rft_after", trained.checkpoint_dir, None)
    figures["rft"] = {"rollouts": drawn, "verified_samples_kept": rft_snapshot.num_rows,
                      "sequences_trained": trained.steps * 16, "steps": trained.steps,
                      "pass_at_1_after": rft_eval["pass_at_1"], "pass_at_k_after": rft_eval.get("pass_at_k"),
                      "train_s": round(trained.wall_s, 1), "seconds": round(time.perf_counter() - began, 1),
                      "checkpoint": trained.checkpoint_dir}

    before = grpo.eval["before"]["pass_at_1"]
    problems = grpo.eval["before"]["problems"]
    figures["summary"] = {
        "pass_at_1_before": before, "pass_at_1_grpo": figures["grpo"]["pass_at_1_after"],
        "pass_at_1_rft": rft_eval["pass_at_1"], "grpo_change": figures["grpo"]["pass_at_1_after"] - before,
        "rft_change": rft_eval["pass_at_1"] - before, "heldout_problems": problems,
        "pass_at_1_se_bound": se_bound(before, problems),
    }
    if args.distil:
        figures["distil"] = {"pre_rl_teacher": distil(None, "bench-distil-pre-rl"),
                             "rl_teacher": distil(grpo.checkpoint, "bench-distil-rl")}
    (out / "bench_rl.json").write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
