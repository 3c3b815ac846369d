"""Adaptive sampling ("sample until k verified") on Ray Data with the real vLLM backend (CPU), the
tiny teacher and the factory's own verifier in the loop.

One vLLM run is shared by the module; some prompts carry a reference no sample can match, so they
run to the cap over several rounds while the others stop at k. A rerun on the checkpoint (with the
cheap transformers backend: the backend is not part of the sample identity) must serve everything
without loading an engine; the token budget is checked with the transformers backend too.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from config_helpers import make_config
from factory import schema, synthetic
from factory.pipeline import run_small
from factory.stages.generate import AdaptiveGenerate, GenerationConfig
from factory.stages.generate.policy import pass_rate_estimate, prompt_table
from factory.stages.verify import OUTPUT_FIELDS, Verify, VerifyConfig

K, CAP, ROUND = 2, 6, 2
UNSOLVABLE = 3  # prompts whose reference is wrong: every sample is judged wrong


def _prompts(n: int = 8, seed: int = 5) -> pa.Table:
    rows = [dict(p, source="synthetic", source_row=i + 1) for i, p in enumerate(synthetic.make_problems(n, seed=seed))]
    for row in rows[:UNSOLVABLE]:
        row["reference"] = "-1"
    return schema.conform(pa.Table.from_pylist(rows), schema.PROMPT_SCHEMA)


def _config(tiny_models, backend: str, **adaptive) -> GenerationConfig:
    return GenerationConfig.model_validate({
        "engine": {"backend": backend, "model": tiny_models.teacher, "dtype": "float32", "enforce_eager": True,
                   "max_num_seqs": 32, "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}},
        "sampling": {"max_tokens": 96, "seed": 3},
        "adaptive": {"mode": "adaptive", "k": K, "max_samples": CAP, "round_size": ROUND, **adaptive},
        "resources": {"batch_size": 4},
        "checkpoint": {"flush_every_s": 0.5},
    })


def _generate(prompts: pa.Table, cfg: GenerationConfig, run_dir: str | None):
    out, [record] = run_small([AdaptiveGenerate], make_config(generation=cfg), prompts, run_dir=run_dir,
                              extras={"total_prompts": prompts.num_rows})
    return out, record.stats


@pytest.fixture(scope="module")
def adaptive_run(ray_local, tiny_models, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("adaptive-run"))
    prompts = _prompts()
    cfg = _config(tiny_models, "vllm")
    out, stats = _generate(prompts, cfg, run_dir)
    return {"prompts": prompts, "out": out, "stats": stats, "run_dir": run_dir, "cfg": cfg}


def _by_prompt(table: pa.Table) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        rows.setdefault(row["prompt_id"], []).append(row)
    return rows


def test_output_has_sample_verify_and_filter_columns(adaptive_run):
    expected = pa.schema(list(schema.SAMPLE_SCHEMA) + OUTPUT_FIELDS + schema.FILTER_FIELDS)
    assert adaptive_run["out"].schema.equals(expected)


def test_each_prompt_stops_at_k_correct_or_at_the_cap(adaptive_run):
    for rows in _by_prompt(adaptive_run["out"]).values():
        correct = sum(r["verdict"] == "correct" for r in rows)
        assert [r["sample_index"] for r in rows] == list(range(len(rows)))
        assert correct >= K or len(rows) == CAP
        before_last = [r for r in rows if r["sample_round"] < rows[-1]["sample_round"]]
        assert sum(r["verdict"] == "correct" for r in before_last) < K and len(before_last) < CAP


def test_unsolvable_prompts_run_to_the_cap_over_several_rounds(adaptive_run):
    unsolvable = adaptive_run["prompts"]["prompt_id"].to_pylist()[:UNSOLVABLE]
    rows = _by_prompt(adaptive_run["out"])
    for prompt_id in unsolvable:
        assert len(rows[prompt_id]) == CAP and rows[prompt_id][-1]["sample_round"] >= 1
        assert {r["verdict"] for r in rows[prompt_id]} <= {"wrong", "no_answer"}


def test_rounds_are_in_draw_order_and_the_first_has_round_size(adaptive_run):
    for rows in _by_prompt(adaptive_run["out"]).values():
        rounds = [r["sample_round"] for r in rows]
        assert rounds == sorted(rounds) and rounds[:ROUND] == [0] * ROUND and rounds[ROUND:ROUND + 1] != [0]


def test_sample_seeds_follow_their_index_whatever_the_round(adaptive_run):
    for rows in _by_prompt(adaptive_run["out"]).values():
        assert [r["seed"] - r["sample_index"] for r in rows] == [rows[0]["seed"]] * len(rows)


def test_every_row_carries_its_prompts_unbiased_estimate(adaptive_run):
    for rows in _by_prompt(adaptive_run["out"]).values():
        expected = pass_rate_estimate([r["verdict"] for r in rows], K)
        assert {r["pass_rate_estimate"] for r in rows} == {expected}


def test_in_loop_verdicts_are_the_verify_stages(adaptive_run):
    out = adaptive_run["out"]
    again = Verify(VerifyConfig())(out.select([f.name for f in schema.SAMPLE_SCHEMA]))
    assert again["verdict"].to_pylist() == out["verdict"].to_pylist()


def test_stats_carry_per_round_figures(adaptive_run):
    stats, out = adaptive_run["stats"], adaptive_run["out"]
    rounds = stats["rounds"]
    assert [r["round"] for r in rounds] == list(range(len(rounds))) and len(rounds) >= 2
    assert sum(r["samples"] for r in rounds) == out.num_rows == stats["samples_generated"]
    assert sum(r["correct"] for r in rounds) == out["verdict"].to_pylist().count("correct")
    assert rounds[0]["prompts"] == len(out["prompt_id"].unique())
    assert sum(stats["stop_reasons"].values()) == rounds[0]["prompts"] and stats["stop_reasons"]["cap_reached"] >= 3


def test_side_table_lists_unsolved_prompts_with_estimates(adaptive_run):
    table = prompt_table(adaptive_run["out"], adaptive_run["cfg"].adaptive)
    rows = {r["prompt_id"]: r for r in table.to_pylist()}
    for prompt_id in adaptive_run["prompts"]["prompt_id"].to_pylist()[:UNSOLVABLE]:
        assert (rows[prompt_id]["difficulty"], rows[prompt_id]["pass_rate_estimate"]) == ("unsolved", 0.0)
    assert sorted(r["stop_reason"] for r in rows.values()) == sorted(
        [k for k, n in adaptive_run["stats"]["stop_reasons"].items() for _ in range(n)])


def test_rerun_serves_every_prompt_from_checkpoint(adaptive_run, tiny_models):
    again, stats = _generate(adaptive_run["prompts"], _config(tiny_models, "transformers"), adaptive_run["run_dir"])
    assert again.sort_by("sample_id").to_pylist() == adaptive_run["out"].sort_by("sample_id").to_pylist()
    assert (stats["prompts_resumed"], stats["samples_generated"], stats["engine_start_s"]) == (8, 0, None)


def test_token_budget_bounds_the_run_and_stops_prompts(ray_local, tiny_models):
    budget = 400  # a few rounds of 96-token worst cases
    out, stats = _generate(_prompts(6, seed=6), _config(tiny_models, "transformers", token_budget=budget), None)
    assert stats["budget_spent_tokens"] == sum(out["completion_tokens"].to_pylist()) <= budget
    assert stats["stop_reasons"].get("budget", 0) >= 1
