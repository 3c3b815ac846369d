"""What the rest of the flow does with adaptive sampling: the flow generates with exactly one stage per
mode and verifies each sample once, rejection's pass rate is the unbiased estimate, and evaluation
draws a fixed n whatever the run's mode."""

from __future__ import annotations

import pyarrow as pa
import pytest

from config_helpers import make_config
from factory.evaluate import _generation_for
from factory.flow import GENERATION, PROMPT_COLUMNS, SCORING_STAGES
from factory.pipeline import check_assembly
from factory.stages.filter.rejection import RejectionConfig, reject_group
from factory.stages.generate import AdaptiveGenerate, Generate
from factory.stages.verify import VerifyStage

ADAPTIVE = {"adaptive": {"mode": "adaptive", "k": 2, "max_samples": 8}}


def _enabled(stages, cfg) -> list[type]:
    return [stage for stage in stages if stage.enabled(cfg)]


@pytest.mark.parametrize(("generation", "expected"), [({}, Generate), (ADAPTIVE, AdaptiveGenerate)])
def test_exactly_one_generation_stage_per_mode(generation, expected):
    assert _enabled(GENERATION, make_config(generation=generation)) == [expected]


@pytest.mark.parametrize(("generation", "verifies"), [({}, True), (ADAPTIVE, False)])
def test_verify_stage_runs_only_when_generation_did_not_verify(generation, verifies):
    assert (VerifyStage in _enabled(SCORING_STAGES, make_config(generation=generation))) is verifies


def test_adaptive_flow_assembles_without_the_verify_stage():
    cfg = make_config(generation=ADAPTIVE)
    columns = check_assembly(_enabled(GENERATION, cfg) + _enabled(SCORING_STAGES, cfg), PROMPT_COLUMNS)
    assert {"verdict", "pass_rate", "pass_rate_estimate", "sample_round"} <= columns


def _prompt_rows(verdicts: list[str], estimate: float | None) -> pa.Table:
    n = len(verdicts)
    return pa.table({
        "prompt_id": ["p"] * n, "sample_index": list(range(n)), "verdict": verdicts,
        "completion_tokens": [10] * n, "drop_reason": pa.nulls(n, pa.string()), "drop_stage": pa.nulls(n, pa.string()),
        "pass_rate_estimate": pa.array([estimate] * n, pa.float64()),
    })


def test_rejection_pass_rate_is_the_unbiased_estimate_of_adaptive_rows():
    out = reject_group(_prompt_rows(["wrong", "correct", "wrong", "correct"], 1 / 3), RejectionConfig())
    assert out["pass_rate"].to_pylist() == [pytest.approx(1 / 3)] * 4  # not the biased share 0.5


def test_rejection_pass_rate_band_filters_on_the_estimate():
    out = reject_group(_prompt_rows(["wrong", "correct", "wrong", "correct"], 1 / 3),
                       RejectionConfig(min_pass_rate=0.4))
    assert set(out["drop_reason"].to_pylist()) == {"pass_rate_below_min"}  # the share 0.5 would pass


def test_rejection_pass_rate_of_fixed_n_rows_is_the_share_correct():
    out = reject_group(_prompt_rows(["wrong", "correct", "wrong", "correct"], None), RejectionConfig())
    assert set(out["pass_rate"].to_pylist()) == {0.5}


@pytest.mark.parametrize("student", [True, False])
def test_eval_draws_a_fixed_n_in_an_adaptive_run(student):
    cfg = make_config(generation=ADAPTIVE)
    generation = _generation_for(cfg, "some-model", student)
    assert not generation.adaptive_mode and generation.sampling.n == cfg.eval.samples
    assert _enabled(GENERATION, cfg.model_copy(update={"generation": generation})) == [Generate]
