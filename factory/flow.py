"""The distillation flow: prompts → teacher samples → scores → filters → dedup → decontamination →
committed snapshot → student SFT → evaluation → report.

``pipelines/distill.py`` (a ``ray job submit`` entrypoint) and ``factory run`` both call
:func:`run_distill`, so a submitted job and a local run execute the same code. Stages say *what*
is done; resources come from each stage's config section.

Contract: config and prompts are validated before Ray starts. Generation checkpoints under the run
directory, so rerunning the same run after a crash resumes instead of regenerating. The snapshot is
committed atomically by the store; training reads only the committed, manifest-listed files. The
snapshot's manifest is immutable once committed: training, evaluation and the report are written
beside it (``run_summary.json``, ``report.html``), named in the manifest up front.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from factory.config import FactoryConfig, config_hash
from factory.runtime import ray_session
from factory.stages.ingest import ingest

log = logging.getLogger("factory")

RUN_SUMMARY = "run_summary.json"
REPORT = "report.html"


@dataclass
class StageLog:
    """Per-stage rows in/out and wall time, for the manifest, the logs and the report."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, rows_in: int) -> Iterator[dict]:
        out: dict[str, int] = {}
        start = time.perf_counter()
        log.info("stage %s: start, %d rows in", name, rows_in)
        yield out
        seconds = time.perf_counter() - start
        rows_out = out.get("rows_out", rows_in)
        self.counts[name] = {"in": rows_in, "out": rows_out}
        self.timings[name] = {"seconds": round(seconds, 3), "rows_per_s": round(rows_in / seconds, 2) if seconds else 0.0}
        log.info("stage %s: done, %d → %d rows in %.1fs", name, rows_in, rows_out, seconds)


@dataclass
class RunSummary:
    """What a run produced; printed by ``factory run`` (last line: one-line JSON)."""

    dataset: str
    snapshot_version: str
    manifest: str
    report: str | None
    checkpoint: str | None
    counts: dict[str, dict[str, int]]
    drops: dict[str, int]
    eval: dict[str, Any]
    seconds: float

    def headline(self) -> dict[str, Any]:
        def acc(key: str) -> float | None:
            return self.eval.get(key, {}).get("accuracy")

        return {
            "teacher_acc": acc("teacher"),
            "student_acc_before": acc("student_before"),
            "student_acc_after": acc("student_after"),
            "dataset": self.dataset,
            "checkpoint": self.checkpoint,
            "manifest": self.manifest,
            "seconds": round(self.seconds, 1),
        }


def run_dir(cfg: FactoryConfig) -> Path:
    return Path(cfg.run.work_dir).resolve() / cfg.run.name


def build_snapshot(cfg: FactoryConfig, stages: StageLog, parent=None) -> tuple[Any, dict]:
    """Run the data half of the factory and commit a snapshot. Returns (snapshot, manifest).

    With ``parent`` (a committed Snapshot: incremental refresh), prompts whose generation key
    (prompt × teacher revision × sampling × template) the parent already holds are not regenerated:
    their committed rows are carried over, and only new rows go through scoring, filtering and
    dedup (against the carried rows' signatures)."""
    import pyarrow.compute as pc
    import ray

    from factory.refresh import plan_reuse
    from factory.rows import collect, drop_counts, kept_count, kept_rows, with_filter_columns
    from factory.stages.decontam import decontaminate
    from factory.stages.dedup import dedup
    from factory.stages.filter import apply_filters
    from factory.stages.generate import generate, read_generation_stats
    from factory.stages.reward import score
    from factory.stages.verify import verify
    from factory.store import SnapshotStore

    with stages.stage("ingest", 0) as out:
        prompts = ingest(cfg.prompts)
        out["rows_out"] = prompts.table.num_rows
    plan = plan_reuse(cfg, prompts.table, parent, run_dir(cfg) / "refresh")
    # Decontaminate prompts before generation: no teacher compute is spent on eval-set problems.
    with stages.stage("decontam_prompts", plan.todo.num_rows) as out:
        prompt_cfg = cfg.decontam.model_copy(update={"check_responses": False})
        checked, prompt_report = decontaminate(ray.data.from_arrow(with_filter_columns(plan.todo)), prompt_cfg)
        checked = collect(checked)
        todo = kept_rows(checked).select(plan.todo.column_names)
        out["rows_out"] = todo.num_rows
    stages.counts["decontam_prompts"]["stats"] = prompt_report
    prompt_drops = Counter(prompts.skipped)
    for reason in checked.filter(pc.is_valid(checked["drop_reason"])).column("drop_reason").to_pylist():
        prompt_drops[f"decontam:{reason}"] += 1
    directory = run_dir(cfg)
    gen_dir = directory / "generation"
    ds = ray.data.from_arrow(todo)
    with stages.stage("generate", todo.num_rows) as out:
        ds = generate(ds, cfg.generation, checkpoint_dir=str(gen_dir), total_prompts=todo.num_rows).map_batches(
            with_filter_columns, batch_format="pyarrow").materialize()
        out["rows_out"] = ds.count()
    samples = ds.count()
    with stages.stage("verify", samples):
        ds = verify(ds, cfg.verify).materialize()
    if cfg.reward.enabled:
        with stages.stage("reward", samples):
            ds = score(ds, cfg.reward).materialize()
    steps = [
        ("filter", lambda d: (apply_filters(d, cfg.filter), None)),
        ("dedup", lambda d: dedup(d, cfg.dedup, prior_signatures=plan.prior_signatures)),
    ]
    if cfg.decontam.check_responses:  # prompts are already clean; this catches quoted eval items
        steps.append(("decontam", lambda d: decontaminate(d, cfg.decontam)))
    for name, step in steps:
        rows_in = kept_count(ds)
        with stages.stage(name, rows_in) as out:
            ds, stats = step(ds)
            ds = ds.materialize()
            out["rows_out"] = kept_count(ds)
        if stats is not None:
            stages.counts[name]["stats"] = stats
    drops = dict(sorted(drop_counts(ds).items()))  # samples, by "stage:reason"
    drops.update({f"prompts:{reason}": n for reason, n in sorted(prompt_drops.items())})  # prompts never generated
    store = SnapshotStore.from_config(cfg.store)
    with stages.stage("commit", kept_count(ds) + plan.reused.num_rows) as out:
        snapshot, manifest = _commit(cfg, store, ds, stages, drops, read_generation_stats(str(gen_dir), cfg.generation),
                                     plan)
        out["rows_out"] = sum(f["rows"] for f in manifest["files"])
    return snapshot, manifest


def _commit(cfg: FactoryConfig, store, ds, stages: StageLog, drops: dict, generation_stats: dict | None, plan):
    import ray

    from factory.rows import dropped_rows, kept_rows, to_dataset_rows
    from factory.schema import DATASET_SCHEMA
    from factory.stages.dedup import write_signatures
    from factory.store import code_version

    staged = store.begin(parent=plan.parent_version or "latest", schema=DATASET_SCHEMA)
    kept = ds.map_batches(kept_rows, batch_format="pyarrow")
    dataset = kept.map_batches(to_dataset_rows, fn_kwargs={"prompting": cfg.generation.prompting}, batch_format="pyarrow")
    if plan.reused.num_rows:
        dataset = dataset.union(ray.data.from_arrow(plan.reused.cast(DATASET_SCHEMA)))
    dataset = dataset.sort(["prompt_id", "sample_index"]).materialize()
    dataset.write_parquet(staged.data_dir, **staged.ray_write_kwargs())
    if cfg.store.keep_dropped_side_table:
        ds.map_batches(dropped_rows, batch_format="pyarrow").write_parquet(staged.side_dir("dropped"),
                                                                           **staged.ray_write_kwargs())
    write_signatures(dataset, cfg.dedup, staged.side_dir("signatures"))
    engine = cfg.generation.engine
    manifest = {
        "run": cfg.run.name,
        "config": cfg.model_dump(mode="json"),
        "config_hash": config_hash(cfg),
        "code_version": code_version(),
        "lineage": {
            "parent": plan.parent_version,
            "teacher": {"model": engine.model, "revision": engine.revision, "backend": engine.backend},
            "sampling": cfg.generation.sampling.model_dump(mode="json"),
            "prompting": cfg.generation.prompting.model_dump(mode="json"),
            "reward_model": ({"model": cfg.reward.model, "revision": cfg.reward.revision} if cfg.reward.enabled else None),
            "prompt_sources": [s.model_dump(mode="json") for s in cfg.prompts.sources],
        },
        "refresh": plan.summary(),
        "counts": stages.counts,
        "timings": stages.timings,
        "drops": drops,
        "generation": generation_stats,
        "dedup": stages.counts.get("dedup", {}).get("stats"),
        "decontam": stages.counts["decontam_prompts"]["stats"],  # prompts, per benchmark
        "decontam_responses": stages.counts.get("decontam", {}).get("stats"),
        "run_summary": RUN_SUMMARY,
        "report": REPORT,
    }
    snapshot = staged.commit(manifest)
    return snapshot, snapshot.manifest


def run_distill(cfg: FactoryConfig, *, incremental: bool = False) -> RunSummary:
    """The whole factory for one config; see the module docstring. ``incremental`` (``factory
    refresh``) reuses the latest snapshot's samples for unchanged prompts."""
    from factory.evaluate import evaluate_models
    from factory.store import SnapshotStore
    from factory.store.layout import write_atomic

    start = time.perf_counter()
    stages = StageLog()
    parent = SnapshotStore.from_config(cfg.store).latest() if incremental else None
    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        snapshot, manifest = build_snapshot(cfg, stages, parent)
        checkpoint = None
        train_result = None
        if cfg.train is not None:
            from factory.train import run_training

            if not manifest["num_rows"]:
                raise RuntimeError(f"snapshot {snapshot.version} has no rows to train on; drops: {manifest['drops']}")

            with stages.stage("train", sum(f["rows"] for f in manifest["files"])):
                train_result = run_training(cfg.train, snapshot.files, str(run_dir(cfg) / "train" / snapshot.version),
                                            snapshot_version=snapshot.version)
            checkpoint = train_result.checkpoint_dir
        results = {}
        if cfg.eval.enabled:
            with stages.stage("eval", 0):
                results = evaluate_models(cfg, checkpoint)
    summary_path = Path(snapshot.path) / RUN_SUMMARY
    run_summary = {
        "counts": stages.counts,
        "timings": stages.timings,
        "eval": results,
        "train": _train_summary(train_result),
        "checkpoint": checkpoint,
    }
    write_atomic(str(summary_path), json.dumps(run_summary, indent=2, default=str).encode())  # never half a file
    report = _report(snapshot.path)
    return RunSummary(
        dataset=str(snapshot.path), snapshot_version=snapshot.version, manifest=str(Path(snapshot.path) / "_manifest.json"),
        report=report, checkpoint=checkpoint, counts=stages.counts, drops=manifest["drops"], eval=results,
        seconds=time.perf_counter() - start,
    )


def _train_summary(result) -> dict | None:
    if result is None:
        return None
    data = asdict(result)
    data.pop("loss_curve", None)
    return data


def _report(snapshot_path: str) -> str | None:
    from factory.report import build_report

    try:
        return build_report(snapshot_path)
    except Exception:  # the report is a view: a plotting failure must not fail a committed run
        log.exception("report: failed to build for %s", snapshot_path)
        return None
