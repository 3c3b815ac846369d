"""Generation config: defaults from the R1 recipe, validation naming fields, hashing, resources."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from factory.stages.generate import GenerationConfig, gen_key, generation_config_hash, map_batches_resources


def test_defaults_follow_r1_recipe():
    cfg = GenerationConfig()
    assert (cfg.sampling.temperature, cfg.sampling.top_p) == (0.6, 0.95)
    assert cfg.prompting.system_prompt is None and cfg.prompting.force_think
    assert cfg.prompting.instruction == "Please reason step by step, and put your final answer within \\boxed{}."
    assert cfg.engine.backend == "vllm" and cfg.engine.trust_remote_code is False


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"engine": {"trust_remote_code": True}}, "trust_remote_code"),
        ({"sampling": {"n": 0}}, "n"),
        ({"engine": {"backend": "tgi"}}, "backend"),
        ({"engine": {"dtype": "int4"}}, "dtype"),
        ({"engine": {"tensor_parallel_size": 0}}, "tensor_parallel_size"),
        ({"resources": {"max_actor_restarts": 1000}}, "max_actor_restarts"),
        ({"engine": {"max_retries": -1}}, "max_retries"),
        ({"sampling": {"temprature": 0.7}}, "temprature"),
    ],
)
def test_invalid_config_error_names_field(data, field):
    with pytest.raises(ValidationError) as info:
        GenerationConfig.model_validate(data)
    assert field in str(info.value)


def test_trust_remote_code_allowed_with_pinned_revision():
    cfg = GenerationConfig.model_validate({"engine": {"trust_remote_code": True, "revision": "abc123"}})
    assert cfg.engine.trust_remote_code


@pytest.mark.parametrize(
    ("change", "changes_hash"),
    [
        ({"sampling": {"temperature": 0.7}}, True),
        ({"sampling": {"n": 8}}, True),
        ({"engine": {"model": "other"}}, True),
        ({"engine": {"revision": "r2"}}, True),
        ({"prompting": {"instruction": "Think."}}, True),
        ({"engine": {"dtype": "bfloat16", "max_num_seqs": 8}}, False),
        ({"engine": {"backend": "transformers"}}, False),
        ({"resources": {"num_actors": 4, "batch_size": 7}}, False),
    ],
)
def test_config_hash_tracks_only_what_determines_samples(change, changes_hash):
    base = generation_config_hash(GenerationConfig())
    assert (generation_config_hash(GenerationConfig.model_validate(change)) != base) is changes_hash


def test_gen_key_is_stable_and_prompt_specific():
    h = generation_config_hash(GenerationConfig())
    assert gen_key(h, "1+1?") == gen_key(h, "1+1?")
    assert gen_key(h, "1+1?") != gen_key(h, "1+2?")


@pytest.mark.parametrize(
    ("data", "has_gpus", "num_gpus", "placement_group"),
    [
        ({}, False, 0, False),
        ({}, True, 1, False),
        ({"engine": {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}}, True, 0, True),
        ({"engine": {"backend": "openai", "tensor_parallel_size": 2}}, True, 0, False),
        ({"resources": {"num_gpus_per_actor": 0.5}}, True, 0.5, False),
    ],
)
def test_map_batches_resources(data, has_gpus, num_gpus, placement_group):
    cfg = GenerationConfig.model_validate(data)
    kwargs = map_batches_resources(cfg, cluster_has_gpus=has_gpus)
    assert kwargs["num_gpus"] == num_gpus
    assert ("ray_remote_args_fn" in kwargs) is placement_group
    assert (kwargs["max_restarts"], kwargs["max_task_retries"]) == (2, 2)
