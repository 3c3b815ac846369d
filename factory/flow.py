"""The distillation flow, in the order the data flows.

``pipelines/distill.py`` (a ``ray job submit`` entrypoint) and ``factory run`` both call
:func:`run_distill`, so a submitted job and a local run execute the same code:

1. prompts in: every source read and validated, stable ids (:func:`factory.stages.ingest.ingest`);
2. reuse: prompts a parent snapshot already generated are carried over, not regenerated
   (:func:`factory.reuse.plan_reuse`; a refresh only);
3. the prompt-side stages (:data:`PROMPT_STAGES`): eval-set problems leave before any teacher compute;
4. the sample-side stages (:data:`SAMPLE_STAGES`): teacher samples, verdicts, rewards, filters,
   dedup, response decontamination — one streaming Ray Data pipeline (stage protocol:
   :mod:`factory.pipeline`);
5. commit: kept rows as a versioned Parquet snapshot, dropped rows, MinHash signatures and per-prompt
   estimates (``prompts``) as side tables, and a manifest with every stage's counts, drops, timings and
   stats, atomically;
6. student SFT on the committed files, held-out evaluation of teacher and student, the report.

Contract: config and prompts are validated before Ray starts. Generation checkpoints under the run
directory, so rerunning the same run after a crash resumes instead of regenerating. The snapshot's
manifest is immutable once committed: training, evaluation and the report are written beside it
(``run_summary.json``, ``report.html``), named in the manifest up front.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from factory.commit import scored_rows, snapshot_sink, write_prompt_table
from factory.config import FactoryConfig, config_hash
from factory.console import say
from factory.models import configured_models, prepare_tiny_models
from factory.paths import MANIFEST, REPORT, RUN_SUMMARY, run_dir
from factory.pipeline import Pipeline, RunContext, StageRecord, new_meter
from factory.reuse import plan_reuse
from factory.rows import kept_rows
from factory.runtime import ray_session
from factory.stage_lines import StageLines, ended
from factory.schema import DATASET_SCHEMA, PROMPT_FIELDS
from factory.stages.decontam import DecontaminatePrompts, DecontaminateSamples
from factory.stages.dedup import Dedup
from factory.stages.filter.infra import FailedUpstream
from factory.stages.filter.language import Language
from factory.stages.filter.quality import Quality
from factory.stages.filter.rejection import Rejection
from factory.stages.generate import AdaptiveGenerate, Generate
from factory.stages.ingest import ingest
from factory.stages.reward import Reward
from factory.stages.verify import VerifyStage, check_code_sandbox
from factory.store import SnapshotStore

log = logging.getLogger("factory")

PROMPT_STAGES = [DecontaminatePrompts]
"""Stages over prompt rows, before any teacher compute."""
GENERATION = [Generate, AdaptiveGenerate]
"""Prompts → teacher samples: the expensive part, checkpointed and never redone for a carried prompt;
exactly one is enabled (``generation.adaptive.mode``: fixed | adaptive)."""
SCORING_STAGES = [VerifyStage, Reward, FailedUpstream, Quality, Language, Rejection, Dedup, DecontaminateSamples]
"""Samples → scored, filtered, deduplicated samples, in order (cheap: a refresh re-runs them on carried
rows when their configuration changed)."""
PROMPT_COLUMNS = {field.name for field in PROMPT_FIELDS}


@dataclass
class RunSummary:
    """What a run produced; printed by ``factory run`` (last line: one-line JSON)."""

    dataset: str
    snapshot_version: str
    manifest: str
    report: str | None
    checkpoint: str | None
    stages: list[dict]
    drops: dict[str, int]
    eval: dict[str, Any]
    phases: dict[str, float]
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


def build_snapshot(cfg: FactoryConfig, parent=None) -> tuple[Any, dict]:
    """The data half: prompts → committed snapshot (steps 1–5 of the module docstring). With
    ``parent`` (a committed Snapshot: incremental refresh) prompts whose generation key it already
    holds are carried over, and new rows are deduplicated against the carried rows' signatures."""
    started = time.perf_counter()
    prompts = ingest(cfg.prompts)
    ingest_s = time.perf_counter() - started
    if "code" in prompts.tasks:
        check_code_sandbox(cfg.verify)  # before any teacher compute: a sandbox that cannot run code stops the run
    plan = plan_reuse(cfg, prompts.data, parent)  # a Table, or a Ray Dataset for large files (stages/ingest)
    run = RunContext(run_dir=str(run_dir(cfg)), meter=new_meter(), extras={"prior_signatures": plan.prior_signatures()})
    prompt_side = Pipeline(PROMPT_STAGES, cfg, run)
    generation, scoring = Pipeline(GENERATION, cfg, run), Pipeline(SCORING_STAGES, cfg, run)
    prompt_side.check(PROMPT_COLUMNS)
    scoring.check(generation.check(PROMPT_COLUMNS))
    skipped = f", {sum(prompts.skipped.values())} bad rows skipped" if prompts.skipped else ""
    say(f"✓ ingest: {prompts.num_rows} prompts from {len(cfg.prompts.sources)} source(s){skipped}"
        + (f"; {plan.counts['prompts_reused']} already in {plan.parent_version}" if plan.parent else ""))
    checked = prompt_side.apply(plan.todo_dataset())
    with StageLines(run.meter, [stage.name for stage in prompt_side.stages]):
        # Barrier: the generation ETA needs the number of prompts to generate.
        todo = checked.map_batches(kept_rows, batch_format="pyarrow").select_columns(
            [field.name for field in PROMPT_FIELDS]).materialize()
    ended(prompt_side.records())
    run.extras["total_prompts"] = todo.count()
    recheck = plan.carried_for_recheck(keep_verdicts=cfg.generation.adaptive_mode) if plan.recheck else None
    if recheck is not None:
        say(f"  re-checking {plan.counts['rows_rechecked']} carried rows: {', '.join(plan.recheck)}")
    names = [stage.name for stage in generation.stages + scoring.stages]
    with SnapshotStore.from_config(cfg.store).begin(parent=plan.parent_version or "latest",
                                                    schema=DATASET_SCHEMA) as staged:
        sink = snapshot_sink(staged, cfg)
        # The lines start before the stages are applied: a barrier stage (dedup) executes what is upstream of it then.
        with StageLines(run.meter, names, extras=run.extras):
            rows = _sample_rows(plan, generation, scoring, todo, run.extras["total_prompts"], recheck)
            started = time.perf_counter()
            rows.write_datasink(sink)  # the stages after the last barrier, then data files and side tables
        ended(generation.records() + scoring.records())
        write_prompt_table(staged, cfg, sink)  # per-prompt estimates, from every row the sink took
        commit = {"name": "commit", "rows_in": sink.counts["kept"] + sink.counts["dropped"],
                  "rows_out": sink.counts["kept"], "wall_s": round(time.perf_counter() - started, 3)}
        ingest_record = StageRecord(name="ingest", section="prompts", barrier=None, requires=[],
                                    adds=sorted(PROMPT_COLUMNS), rows_out=prompts.num_rows,
                                    kept_out=prompts.num_rows, busy_s=round(ingest_s, 3),
                                    drops={key.split(":", 1)[1]: n for key, n in sorted(prompts.skipped.items())})
        records = [ingest_record] + prompt_side.records() + generation.records() + scoring.records()
        snapshot = staged.commit(_manifest(cfg, records, 1 + len(prompt_side.stages), commit, plan))
    return snapshot, snapshot.manifest


def _sample_rows(plan, generation: Pipeline, scoring: Pipeline, todo, todo_prompts: int, recheck):
    """The lazy dataset of every row the commit takes: generated (and re-checked) rows through the
    scoring stages, then the carried rows that keep their verdicts."""
    if recheck is None or todo_prompts:  # nothing to generate: only carried rows are scored
        samples = generation.apply(todo)
        samples = samples if recheck is None else samples.union(recheck)
    else:
        samples = recheck
    rows = scoring.apply(samples).map_batches(scored_rows, batch_format="pyarrow")
    if not plan.recheck:  # carried rows keep their verdicts and drops; they stream from the parent's files
        for carried in (plan.carried_kept(), plan.carried_dropped()):
            rows = rows if carried is None else rows.union(carried.map_batches(scored_rows, batch_format="pyarrow"))
    return rows


def drop_summary(records: list[StageRecord], prompt_records: int) -> dict[str, int]:
    """``{"stage:reason": samples}`` over the sample-side stages and ``{"prompts:stage:reason": prompts}``
    over the prompt side (prompts dropped before generation), keys sorted."""
    drops = {}
    for index, record in enumerate(records):
        prefix = "prompts:" if index < prompt_records else ""
        drops.update({f"{prefix}{record.name}:{reason}": n for reason, n in record.drops.items()})
    return dict(sorted(drops.items()))


def _manifest(cfg: FactoryConfig, records: list[StageRecord], prompt_records: int, commit: dict, plan) -> dict:
    """The pipeline's part of the snapshot manifest (the store adds files, schema, version, parent)."""
    from factory.reuse import scoring_hash, scoring_identity
    from factory.store import code_version

    engine = cfg.generation.engine
    stages = [record.as_manifest() for record in records] + [commit]
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
            "scoring": scoring_identity(cfg),
            "scoring_hash": scoring_hash(cfg),
        },
        "refresh": plan.summary(),
        "stages": stages,
        "drops": drop_summary(records, prompt_records),
        "run_summary": RUN_SUMMARY,
        "report": REPORT,
    }
    return manifest


def run_distill(cfg: FactoryConfig, *, incremental: bool = False) -> RunSummary:
    """The whole factory for one config; see the module docstring. ``incremental`` (``factory
    refresh``) reuses the latest snapshot's samples for unchanged prompts."""
    from factory.evaluate import evaluate_models

    from factory.config import ConfigError
    from factory.config_paths import check_paths

    start = time.perf_counter()
    problems, _ = check_paths(cfg)
    if problems:  # before Ray starts: a missing file should not cost a cluster's start-up
        raise ConfigError("config names files that do not exist:\n  " + "\n  ".join(problems))
    prepare_tiny_models(configured_models(cfg))
    phases: dict[str, float] = {}
    parent = SnapshotStore.from_config(cfg.store).latest() if incremental else None
    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        if cfg.run.ray.address is None:
            check_cpu_headroom(cfg)
        snapshot, manifest = build_snapshot(cfg, parent)
        phases["data"] = round(time.perf_counter() - start, 3)
        checkpoint = None
        train_result = None
        if cfg.train is not None:
            from factory.train import run_training

            if not manifest["num_rows"]:
                raise RuntimeError(f"snapshot {snapshot.version} has no rows to train on; drops: {manifest['drops']}")
            began = time.perf_counter()
            train_result = run_training(cfg.train, snapshot.files, str(run_dir(cfg) / "train" / snapshot.version),
                                        snapshot_version=snapshot.version, filesystem=snapshot.filesystem)
            checkpoint = train_result.checkpoint_dir
            phases["train"] = round(time.perf_counter() - began, 3)
        results = {}
        if cfg.eval.enabled:
            began = time.perf_counter()
            results = evaluate_models(cfg, checkpoint)
            phases["eval"] = round(time.perf_counter() - began, 3)
    run_summary = {"phases": phases, "eval": results, "train": _train_summary(train_result), "checkpoint": checkpoint}
    snapshot.write_file(RUN_SUMMARY, json.dumps(run_summary, indent=2, default=str).encode())
    report = _report(snapshot)
    return RunSummary(
        dataset=snapshot.path, snapshot_version=snapshot.version, manifest=f"{snapshot.path}/{MANIFEST}",
        report=report, checkpoint=checkpoint, stages=manifest["stages"], drops=manifest["drops"], eval=results,
        phases=phases, seconds=time.perf_counter() - start,
    )


def check_cpu_headroom(cfg: FactoryConfig) -> None:
    """On a local Ray instance (a fixed CPU count, no autoscaler): the generation and reward actors hold
    their CPUs for the whole data half, so at least one must be left for the tasks between them, or the
    pipeline stalls without an error (Ray Data backpressures the tasks forever). Raises ConfigError."""
    import ray

    from factory.config import ConfigError

    total = ray.cluster_resources().get("CPU", 0.0)
    resources = cfg.generation.resources
    held = resources.num_actors * resources.num_cpus_per_actor + (cfg.reward.num_actors if cfg.reward.enabled else 0)
    if total - held < 1:
        raise ConfigError(
            f"run.ray.num_cpus: Ray has {total:g} CPUs and the generation and reward actors hold {held:g} of them "
            "for the whole run, leaving less than one for the tasks between them (the pipeline would stall). "
            "Raise run.ray.num_cpus (logical CPUs; more than the cores is fine), or lower "
            "generation.resources.num_actors/num_cpus_per_actor or reward.num_actors.")


def _train_summary(result) -> dict | None:
    if result is None:
        return None
    data = asdict(result)
    for curve in ("loss_curve", "lr_curve", "grad_norm_curve"):  # per-step lists: the metrics file has them
        data.pop(curve, None)
    return data


def _report(snapshot) -> str | None:
    from factory.report import build_report

    try:
        return build_report(snapshot)
    except Exception:  # the report is a view: a plotting failure must not fail a committed run
        log.exception("report: failed to build for %s", snapshot.path)
        return None
