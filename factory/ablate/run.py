"""``run_ablation``: one generation pool, students trained under named data policies, scored with paired intervals.

Steps (``factory ablate CONFIG`` and ``pipelines/ablate.py`` both run :func:`run_ablation`):

1. the pool: the factory config's snapshot ``ablate.snapshot`` (kept rows + ``dropped`` side table);
   the held-out problems (``ablate.heldout`` or the factory config's ``eval.heldout``), at least
   ``ablate.min_heldout_problems`` of them;
2. per policy, its rows (:mod:`factory.ablate.policies`) written to ``policies/<name>/part-00000.parquet``
   under the run directory ``<work_dir>/<name>`` (on a cluster that directory must be on storage every
   node reads, like any training input);
3. the teacher, then per policy × seed a student: :func:`factory.train.run_training` (a Ray Train ×
   DeepSpeed run exactly as ``factory run``/``factory train`` start one) into
   ``students/<policy>/seed<k>``, then :func:`factory.evaluate.evaluate_model` on vLLM (the factory
   config's engine) under the factory config's eval decoding, the same for every model, with each
   problem's outcome kept; results are stored under ``eval/`` keyed by everything that determines them
   (:func:`factory.evaluate.result_key`), and a finished student's training is not redone
   (``run_training`` resumes), so rerunning an interrupted ablation continues where it stopped;
4. the paired bootstrap (:mod:`factory.ablate.stats`) over problems and seeds; ``ablation.json`` and
   ``report.html`` (table and interval plot) in the run directory.

Contract: configs are validated before Ray starts; a policy that selects no row is an error naming it.
Problems some model has no judged answer for (engine or verifier failures) leave the comparison for
every model and are counted (an infrastructure failure is never a wrong answer). Ray is started only if
not already initialised.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from factory.ablate.config import AblateConfig, eval_config, student_train_config
from factory.config import FactoryConfig

log = logging.getLogger("factory")
SUMMARY = "ablation.json"
REPORT = "report.html"
TEACHER = "teacher"


def run_dir(cfg: AblateConfig) -> Path:
    """``<run.work_dir>/<run.name>``, absolute."""
    return Path(cfg.run.work_dir).resolve() / cfg.run.name


def _evaluate(ecfg: FactoryConfig, out: Path, name: str, model: str, prompts, student: bool) -> dict:
    """A stored identical evaluation (with per-problem outcomes) or a new one."""
    from factory.atomic import write_atomic
    from factory.evaluate import evaluate_model, result_key

    key = result_key(ecfg, model, prompts, student)
    path = out / "eval" / f"{key[:24]}.json" if key else None
    if path is not None and path.exists():
        stored = json.loads(path.read_text())
        if "per_problem" in stored:
            return {**stored, "reused_from": str(path)}
    result = evaluate_model(ecfg, name, model, prompts, student=student, per_problem=True)
    if path is not None:
        write_atomic(str(path), json.dumps(result, indent=2, sort_keys=True).encode())
    return result


def _train(run_training, train_cfg, files: list[str], out_dir: Path, version: str):
    """The student's training, resumed (or found finished) when its directory holds a checkpoint of the same
    config and rows; started over when the config or the policy's rows changed since (a rerun with other settings)."""
    try:
        return run_training(train_cfg, files, str(out_dir), snapshot_version=version)
    except ValueError as error:
        if "cannot resume" not in str(error):
            raise
        log.info("ablate: %s; training %s again from the start", error, out_dir)
        return run_training(train_cfg, files, str(out_dir), snapshot_version=version, resume=False)


def _pool(cfg: AblateConfig, factory_cfg: FactoryConfig):
    from factory.store import SnapshotStore

    store = SnapshotStore.from_config(factory_cfg.store)
    version = cfg.ablate.snapshot
    snapshot = store.latest() if version == "latest" else store.get(version)
    if snapshot is None:
        raise ValueError(f"ablate.snapshot: the store {factory_cfg.store.root}/{factory_cfg.store.dataset} has no "
                         f"snapshot yet; run `factory run {cfg.factory}` first (it commits the pool)")
    return snapshot


def _select_policies(cfg: AblateConfig, snapshot, heldout: set[str], prompting, out: Path) -> tuple[dict, dict]:
    from factory.ablate.policies import eligible, pool_index, select, write_policy

    pool, left_out = eligible(pool_index(snapshot), heldout)
    policies = {}
    for spec in cfg.ablate.policies:
        rows = select(pool, spec)
        if rows.num_rows == 0:
            raise ValueError(f"ablate.policies: policy {spec.name!r} (select {spec.select}) selects no row of "
                             f"snapshot {snapshot.version}")
        correct = pc.sum(pc.fill_null(pc.equal(rows["verdict"], "correct"), False).cast("int64")).as_py()
        files = write_policy(snapshot, rows["sample_id"].to_pylist(), out / "policies" / spec.name, prompting)
        policies[spec.name] = {"select": spec.select, "curriculum": spec.curriculum, "epochs": spec.epochs,
                               "rm_top_k": spec.rm_top_k,
                               "min_reward": spec.min_reward, "rows": rows.num_rows,
                               "prompts": len(set(rows["prompt_id"].to_pylist())),
                               "correct_share": correct / rows.num_rows, "files": files, "students": []}
    pool_info = {"snapshot": snapshot.path, "version": snapshot.version, "pool_rows": pool.num_rows + sum(left_out.values()),
                 "eligible_rows": pool.num_rows, "left_out": left_out}
    return pool_info, policies


def _matrix(results: list[dict], problems: list[str]) -> np.ndarray:
    """(seeds, problems) per-problem credit: correct share of the judged samples."""
    return np.array([[r["per_problem"][p][1] / r["per_problem"][p][0] for p in problems] for r in results])


def _compare(policies: dict, teacher: dict | None, prompt_ids: list[str], cfg: AblateConfig) -> dict:
    from factory.ablate.stats import summarize

    results = {name: [s["eval"] for s in p["students"]] for name, p in policies.items()}
    if teacher is not None:
        results[TEACHER] = [teacher]
    judged_by_all = [pid for pid in prompt_ids
                     if all(r["per_problem"].get(pid, [0, 0])[0] > 0 for rs in results.values() for r in rs)]
    scores = {name: _matrix(rs, judged_by_all) for name, rs in results.items()}
    b = cfg.ablate.bootstrap
    summary = summarize(scores, cfg.ablate.baseline_name, resamples=b.resamples, confidence=b.confidence,
                        seed=b.seed, also_against=TEACHER if teacher is not None else None)
    summary["problems_excluded"] = len(prompt_ids) - len(judged_by_all)
    return summary


def run_ablation(cfg: AblateConfig, factory_cfg: FactoryConfig) -> dict:
    """The whole ablation (module docstring); returns what ``ablation.json`` holds."""
    from factory.ablate.policies import pool_prompting
    from factory.ablate.report import console_table, write_report
    from factory.atomic import write_atomic
    from factory.console import say
    from factory.models import prepare_tiny_models
    from factory.runtime import ray_session
    from factory.stages.ingest import heldout_prompts
    from factory.train import run_training

    started = time.perf_counter()
    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    ecfg = eval_config(cfg, factory_cfg)
    prompts = heldout_prompts(ecfg)
    if prompts.num_rows < cfg.ablate.min_heldout_problems:
        raise ValueError(f"ablate.min_heldout_problems: the held-out sets hold {prompts.num_rows} problems, fewer "
                         f"than {cfg.ablate.min_heldout_problems}")
    snapshot = _pool(cfg, factory_cfg)
    pool, policies = _select_policies(cfg, snapshot, set(prompts["prompt"].to_pylist()),
                                      pool_prompting(snapshot, factory_cfg.generation.prompting), out)
    say(f"ablate: pool {snapshot.version}: {pool['eligible_rows']} samples eligible (left out {pool['left_out']}); "
        + ", ".join(f"{name} {p['rows']} rows" for name, p in policies.items()))
    base = student_train_config(cfg, factory_cfg)
    teacher_model = factory_cfg.generation.engine.model
    prepare_tiny_models([teacher_model, base.student])
    teacher = None
    timings: dict[str, float] = {"train_s": 0.0, "eval_s": 0.0}
    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        if cfg.ablate.evaluate_teacher:
            began = time.perf_counter()
            teacher = _evaluate(ecfg, out, TEACHER, teacher_model, prompts, student=False)
            timings["eval_s"] += time.perf_counter() - began
            say(f"✓ eval teacher: {prompts.num_rows} held-out problems, accuracy {teacher['accuracy']:.3f}, "
                f"{time.perf_counter() - began:.0f} s")
        for spec in cfg.ablate.policies:
            policy = policies[spec.name]
            for seed in cfg.ablate.seeds:
                train_cfg = base.model_copy(update={"seed": seed, "curriculum": spec.curriculum or base.curriculum,
                                                    "epochs": spec.epochs or base.epochs})
                say(f"▶ {spec.name} seed {seed}: training on {policy['rows']} rows × {train_cfg.epochs} epochs "
                    f"({train_cfg.curriculum})")
                began = time.perf_counter()
                trained = _train(run_training, train_cfg, policy["files"], out / "students" / spec.name / f"seed{seed}",
                                 snapshot.version)
                train_s = time.perf_counter() - began
                began = time.perf_counter()
                result = _evaluate(ecfg, out, f"{spec.name}-seed{seed}", trained.checkpoint_dir, prompts, student=True)
                eval_s = time.perf_counter() - began
                timings["train_s"] += train_s
                timings["eval_s"] += eval_s
                policy["students"].append({"seed": seed, "curriculum": train_cfg.curriculum,
                                           "checkpoint": trained.checkpoint_dir, "steps": trained.steps,
                                           "final_loss": trained.final_loss, "accuracy": result["accuracy"],
                                           "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "eval": result})
                say(f"✓ {spec.name} seed {seed}: accuracy {result['accuracy']:.3f} ({trained.steps} steps, "
                    f"train {train_s:.0f} s, eval {eval_s:.0f} s)")
    comparison = _compare(policies, teacher, prompts["prompt_id"].to_pylist(), cfg)
    e = ecfg.eval
    summary = {
        "config": cfg.model_dump(mode="json"), "factory_config": cfg.factory, "pool": pool,
        "heldout": {"problems": prompts.num_rows, "sources": sorted(set(prompts["source"].to_pylist()))},
        "decoding": {"backend": ecfg.generation.engine.backend, "temperature": e.temperature, "top_p": e.top_p,
                     "samples": e.samples, "max_tokens": e.max_tokens},
        "train": base.model_dump(mode="json"), "baseline": cfg.ablate.baseline_name,
        "teacher": None if teacher is None else {"model": teacher_model, "accuracy": teacher["accuracy"]},
        "policies": {name: {**p, "students": [{k: v for k, v in s.items() if k != "eval"} for s in p["students"]]}
                     for name, p in policies.items()},
        "comparison": comparison,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    summary["report"] = str(out / REPORT)
    summary["summary"] = str(out / SUMMARY)
    write_atomic(str(out / SUMMARY), json.dumps(summary, indent=2, default=str).encode())
    write_report(str(out / REPORT), summary)
    for line in console_table(summary):
        say(line)
    return summary
