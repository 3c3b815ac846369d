"""``factory eval`` on real tiny models in a local Ray session: teacher and student generate on the
same held-out problems with the same engine, get verified and scored, and each model's generation
cost (throughput, latency, peak memory) is measured. The transformers backend keeps this quick; the
demo's integration test runs the same evaluation with vLLM."""

from __future__ import annotations

import pytest

from factory.config import load_config
from factory.evaluate import COMPARED, COST_FIELDS, eval_command

PROBLEMS = 12


@pytest.fixture(scope="module")
def results(ray_local, tiny_models):
    cfg = load_config("configs/demo.yaml", (
        "generation.engine.backend=transformers",
        f"eval.heldout=[{{name: heldout, kind: synthetic, task: math, synthetic_n: {PROBLEMS}, "
        "synthetic_split: heldout, synthetic_seed: 3}]",
        "eval.evaluate_student_before=false",
        "eval.max_tokens=96",
    ))
    # the untrained tiny student stands in for a trained checkpoint: what is measured is the eval itself
    return eval_command(cfg, checkpoint=tiny_models.student)


def test_teacher_and_student_are_scored_on_the_same_problems(results):
    assert set(results) == {"teacher", "student_after", "ratio", "student_vs_teacher"}
    for name in ("teacher", "student_after"):
        assert results[name]["problems"] == results[name]["samples"] == PROBLEMS and results[name]["errors"] == 0
    assert results["teacher"]["accuracy"] > 0.5
    assert list(results["teacher"]["by_source"]) == ["heldout"]  # the held-out set's name
    assert results["ratio"] == results["student_after"]["accuracy"] / results["teacher"]["accuracy"]


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
