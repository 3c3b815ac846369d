"""Teacher generation on Ray Data with the real vLLM backend (CPU) and the tiny teacher.

One vLLM run is shared by the module (an engine start costs ~30 s); a rerun on its checkpoint
(with the cheap transformers backend: the backend is not part of the sample identity) checks
resume without a second vLLM start.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from factory import schema, synthetic
from config_helpers import make_config
from factory.pipeline import run_small
from factory.stages.generate import Generate, GenerationConfig

N = 3
TOO_LONG = "long-prompt"


def _generate(prompts: pa.Table, cfg: GenerationConfig, run_dir: str) -> tuple[pa.Table, dict]:
    """The generation stage's output and stats (checkpoint under ``<run_dir>/generation``)."""
    out, [record] = run_small([Generate], make_config(generation=cfg), prompts, run_dir=run_dir,
                              extras={"total_prompts": prompts.num_rows})
    return out, record.stats


def _prompts() -> pa.Table:
    rows = [dict(p, source="synthetic", source_row=i + 1) for i, p in enumerate(synthetic.make_problems(6, seed=1))]
    rows.append(dict(prompt_id=TOO_LONG, task="math", prompt="1+" * 400 + "1?", source="synthetic", source_row=99))
    return schema.conform(pa.Table.from_pylist(rows), schema.PROMPT_SCHEMA)


def _config(tiny_models, backend: str) -> GenerationConfig:
    return GenerationConfig.model_validate(
        {
            "engine": {"backend": backend, "model": tiny_models.teacher, "enforce_eager": True, "max_num_seqs": 32,
                       "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}},
            "sampling": {"n": N, "max_tokens": 64, "seed": 7},
            "resources": {"batch_size": 3},
        }
    )


@pytest.fixture(scope="module")
def vllm_run(ray_local, tiny_models, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("gen-run"))
    prompts = _prompts()
    cfg = _config(tiny_models, "vllm")
    out, stats = _generate(prompts, cfg, run_dir)
    return {"prompts": prompts, "out": out, "cfg": cfg, "run_dir": run_dir, "stats": stats}


def test_output_has_sample_schema_and_filter_columns(vllm_run):
    assert vllm_run["out"].schema.equals(pa.schema(list(schema.SAMPLE_SCHEMA) + schema.FILTER_FIELDS))


def test_each_prompt_has_n_rows_grouped_by_prompt(vllm_run):
    out = vllm_run["out"]
    ids, indexes = out["prompt_id"].to_pylist(), out["sample_index"].to_pylist()
    assert sorted(set(ids)) == sorted(vllm_run["prompts"]["prompt_id"].to_pylist())
    for start in range(0, len(ids), N):
        assert ids[start : start + N] == [ids[start]] * N and indexes[start : start + N] == list(range(N))


def test_fixed_n_samples_are_round_zero_without_an_estimate(vllm_run):
    out = vllm_run["out"]
    assert set(out["sample_round"].to_pylist()) == {0} and out["pass_rate_estimate"].null_count == out.num_rows


def test_too_long_prompt_is_isolated_as_status(vllm_run):
    rows = vllm_run["out"].to_pylist()
    assert {r["gen_status"] for r in rows if r["prompt_id"] == TOO_LONG} == {"prompt_too_long"}
    assert {r["gen_status"] for r in rows if r["prompt_id"] != TOO_LONG} == {"ok"}
    assert all(r["completion"] is None and "max_model_len" in r["gen_error"] for r in rows if r["prompt_id"] == TOO_LONG)


def test_provenance_columns_are_filled(vllm_run):
    import vllm

    ok = [r for r in vllm_run["out"].to_pylist() if r["gen_status"] == "ok"]
    assert {(r["backend"], r["backend_version"], r["teacher_model"]) for r in ok} == {
        ("vllm", vllm.__version__, vllm_run["cfg"].engine.model)
    }
    assert json.loads(ok[0]["sampling_json"]) == vllm_run["cfg"].sampling.model_dump(mode="json")
    assert len({r["seed"] for r in ok}) == len(ok)
    assert len({r["sample_id"] for r in ok}) == len(ok)
    assert all(r["prompt_text"].endswith("<｜Assistant｜><think>\n") for r in ok)


def test_completion_is_split_into_reasoning_and_answer(vllm_run):
    for r in vllm_run["out"].to_pylist():
        if r["gen_status"] != "ok":
            continue
        if "</think>" in r["completion"]:
            assert r["completion"].split("</think>")[0].strip() == r["reasoning"]
            assert r["answer"] is not None
        else:
            assert r["answer"] is None


def test_token_counts_finish_reason_and_logprob_are_recorded(vllm_run):
    for r in vllm_run["out"].to_pylist():
        if r["gen_status"] == "ok":
            assert r["prompt_tokens"] > 0 and 0 < r["completion_tokens"] <= 64
            assert r["finish_reason"] in ("stop", "length") and r["cumulative_logprob"] <= 0
            assert (r["finish_reason"] == "length") == (r["completion_tokens"] == 64)


def test_tiny_teacher_answers_in_r1_format(vllm_run):
    answers = [r["answer"] for r in vllm_run["out"].to_pylist() if r["gen_status"] == "ok"]
    assert sum("\\boxed{" in (a or "") for a in answers) >= len(answers) // 2


def test_stats_for_manifest(vllm_run):
    stats = vllm_run["stats"]
    assert stats["prompts_done"] == 7 and stats["status_counts"] == {"ok": 6 * N, "prompt_too_long": N}
    assert stats["samples_per_s"] > 0 and stats["output_tokens_per_s"] > 0
    # engine-side cost (factory eval compares models by these): start-up apart from the generation span
    assert stats["engine_output_tokens_per_s"] >= stats["output_tokens_per_s"]
    assert 0 < stats["generation_s"] <= stats["elapsed_s"] and stats["engine_start_s"] > 0
    assert 0 < stats["latency_p50_s"] <= stats["latency_p90_s"] <= stats["generation_s"]
    assert 0 < stats["token_latency_p50_s"] < stats["latency_p50_s"]
    assert stats["actors"] == 1 and stats["peak_rss_bytes"] > 300 * 2**20  # actor + vLLM engine-core process
    assert stats["peak_device_bytes"] is None  # no GPU
    assert stats["resources"] == {"device": "cpu", "actors": 1, "bundles": [{"CPU": 1.0}]}
    [placement] = stats["placements"]
    assert placement["resources"].get("CPU") == 1.0 and placement["gpu_ids"] == []


def test_placement_groups_are_removed_once_the_stage_has_run(vllm_run):
    import ray

    ours = [pg for pg in ray.util.placement_group_table().values() if pg["name"].startswith("factory-generation-")]
    assert ours and {pg["state"] for pg in ours} == {"REMOVED"}


def test_rerun_serves_every_prompt_from_checkpoint(vllm_run, ray_local, tiny_models):
    cfg = _config(tiny_models, "transformers")
    again, stats = _generate(vllm_run["prompts"], cfg, vllm_run["run_dir"])
    first = vllm_run["out"].sort_by("sample_id").to_pylist()
    assert again.sort_by("sample_id").to_pylist() == first
    assert (stats["prompts_resumed"], stats["samples_generated"]) == (7, 0)
    assert stats["engine_start_s"] is None and stats["generation_s"] is None  # no engine was loaded


def test_the_stage_kills_the_progress_actor_it_made(vllm_run):
    """Named actors outlive their handles: one left per run would pile up in a long-lived driver."""
    import time

    import ray

    def left() -> list[str]:
        return [name for name in ray.util.list_named_actors() if name.startswith("factory-gen-progress-")]

    deadline = time.monotonic() + 20  # ray.kill returns before the GCS marks the actor dead
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left() == []
