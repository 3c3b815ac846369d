"""``factory eval`` on real tiny models in a local Ray session: teacher and student generate on the
same held-out problems with the same engine, get verified and scored, and each model's generation
cost (throughput, latency, peak memory) is measured; an identical later evaluation reuses the stored
result. The transformers backend keeps this quick; the demo's integration test runs the same
evaluation with vLLM."""

from __future__ import annotations

import os

import pytest

from factory import evaluate
from factory.config import load_config
from factory.eval_fields import FIELDS
from factory.evaluate import eval_command

COST_FIELDS = [field.key for field in FIELDS if field.progress_stat]
COMPARED = [field.key for field in FIELDS if field.compared]

PROBLEMS = 12


def _config(work_dir, *overrides):
    return load_config("configs/demo.yaml", (
        f"run.work_dir={work_dir}",
        "generation.engine.backend=transformers",
        f"eval.heldout=[{{name: heldout, kind: synthetic, task: math, synthetic_n: {PROBLEMS}, "
        "synthetic_split: heldout, synthetic_seed: 3}]",
        "eval.evaluate_student_before=false",
        "eval.max_tokens=96",
        *overrides,
    ))


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("eval-runs")


@pytest.fixture(scope="module")
def results(ray_local, tiny_models, work_dir):
    # the untrained tiny student stands in for a trained checkpoint: what is measured is the eval itself
    return eval_command(_config(work_dir), checkpoint=tiny_models.student)


def test_teacher_and_student_are_scored_on_the_same_problems(results):
    assert set(results) == {"teacher", "student_after", "ratio", "student_vs_teacher"}
    for name in ("teacher", "student_after"):
        assert results[name]["problems"] == results[name]["samples"] == PROBLEMS and results[name]["errors"] == 0
        assert "reused_from" not in results[name]
    assert results["teacher"]["accuracy"] > 0  # the fallible kit's teacher: ~0.5 greedy over 200, 2 of these 12
    assert list(results["teacher"]["by_source"]) == ["heldout"]  # the held-out set's name
    assert results["ratio"] == results["student_after"]["accuracy"] / results["teacher"]["accuracy"]


def test_each_result_records_its_model_identity_and_pass_at_1(results, tiny_models):
    from factory.models import model_identity

    assert results["teacher"]["model_identity"] == model_identity(tiny_models.teacher)
    assert results["student_after"]["model_identity"] == model_identity(tiny_models.student)
    for name in ("teacher", "student_after"):  # greedy, one sample each: pass@1 is the accuracy
        result = results[name]
        assert result["pass_at_1"] == result["accuracy"] and result["k"] == 1
        assert result["pass_at"] == {"1": result["accuracy"]}


def test_sampled_evaluation_reports_pass_at_k_and_majority_vote(ray_local, tiny_models, work_dir):
    cfg = _config(work_dir, "eval.samples=4", "eval.temperature=0.6", "eval.top_p=0.95", "eval.reuse_results=false")
    teacher = eval_command(cfg, checkpoint=None)["teacher"]
    assert teacher["samples"] == 4 * PROBLEMS and teacher["k"] == 4 and set(teacher["pass_at"]) == {"1", "2", "4"}
    assert teacher["pass_at_1"] <= teacher["pass_at"]["2"] <= teacher["pass_at_k"]
    assert 0 <= teacher["maj_at_k"] <= teacher["pass_at_k"]


def test_each_model_has_its_generation_cost(results):
    for name in ("teacher", "student_after"):
        result = results[name]
        assert set(COST_FIELDS) <= set(result)
        assert result["output_tokens_per_s"] > 0 and result["generation_s"] > 0 and result["engine_start_s"] > 0
        assert 0 < result["latency_p50_s"] <= result["latency_p90_s"]
        assert 0 < result["token_latency_p50_s"] < result["latency_p50_s"]
        assert result["peak_rss_bytes"] > result["weights_bytes"] > 0 and result["actors"] == 1
        assert result["peak_device_bytes"] is None  # CPU


def test_student_vs_teacher_ratios(results):
    ratios = results["student_vs_teacher"]
    assert ratios["student"] == "student_after" and set(COMPARED) <= set(ratios)
    assert ratios["weights_bytes"] < 1  # the tiny student has fewer, narrower layers
    assert ratios["output_tokens_per_s"] > 0 and ratios["peak_rss_bytes"] > 0 and ratios["peak_device_bytes"] is None


def test_identical_evaluation_is_reused_without_generating(results, work_dir, tiny_models, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("an identical evaluation generated again")

    monkeypatch.setattr(evaluate, "evaluate_model", must_not_run)
    again = eval_command(_config(work_dir), checkpoint=tiny_models.student)
    for name in ("teacher", "student_after"):
        assert again[name]["reused_from"].startswith(str(work_dir))
        assert {k: v for k, v in again[name].items() if k != "reused_from"} == results[name]
    assert results["student_vs_teacher"]["costs_comparable"] is True
    assert again["student_vs_teacher"]["costs_comparable"] is False  # reused costs were measured another time
    assert again["student_vs_teacher"]["accuracy"] == results["student_vs_teacher"]["accuracy"]
    assert again["student_vs_teacher"]["output_tokens_per_s"] is None


@pytest.mark.parametrize("change", ["eval.max_tokens=80", "verify.math_timeout_s=4.0", "eval.heldout[0]"])
def test_a_changed_evaluation_is_not_reused(work_dir, tiny_models, change):
    cfg = _config(work_dir)
    prompts = evaluate.heldout_prompts(cfg)
    key = evaluate.result_key(cfg, tiny_models.teacher, prompts, student=False)
    if change == "eval.heldout[0]":
        changed = evaluate.result_key(cfg, tiny_models.teacher, prompts.slice(1), student=False)
    else:
        changed = evaluate.result_key(_config(work_dir, change), tiny_models.teacher, prompts, student=False)
    assert key is not None and changed != key


def test_rewritten_weights_are_not_reused(tiny_models, work_dir, tmp_path):
    """A retrain re-staged in place: same file names, sizes and mtime, other weights."""
    import shutil

    model = tmp_path / "student"
    shutil.copytree(tiny_models.student, model)
    cfg = _config(work_dir)
    prompts = evaluate.heldout_prompts(cfg)
    before = evaluate.result_key(cfg, str(model), prompts, student=True)
    weights = next(model.glob("*.safetensors"))
    stat, data = weights.stat(), bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # the last tensor's last values: the header, and so the size, stay the same
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert evaluate.result_key(cfg, str(model), prompts, student=True) != before


def test_touched_but_unchanged_weights_are_reused(tiny_models, work_dir, tmp_path):
    import shutil

    model = tmp_path / "student"
    shutil.copytree(tiny_models.student, model)
    cfg = _config(work_dir)
    prompts = evaluate.heldout_prompts(cfg)
    before = evaluate.result_key(cfg, str(model), prompts, student=True)
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert evaluate.result_key(cfg, str(model), prompts, student=True) == before


def test_library_versions_are_part_of_the_identity(tiny_models, work_dir, monkeypatch):
    cfg = _config(work_dir)
    prompts = evaluate.heldout_prompts(cfg)
    before = evaluate.result_key(cfg, tiny_models.teacher, prompts, student=False)
    real = evaluate._installed_version
    monkeypatch.setattr(evaluate, "_installed_version", lambda name: "9.9" if name == "math-verify" else real(name))
    assert evaluate.result_key(cfg, tiny_models.teacher, prompts, student=False) != before


def test_unpinned_hub_model_is_never_reused(work_dir):
    cfg = _config(work_dir)
    assert evaluate.result_key(cfg, "Qwen/Qwen2.5-1.5B", evaluate.heldout_prompts(cfg), student=True) is None
