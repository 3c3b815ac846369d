"""Generation config: defaults from the R1 recipe, validation naming fields, hashing, resources."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from factory.stages.generate import GenerationConfig, gen_key, generation_config_hash


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


ADAPTIVE = {"mode": "adaptive"}


@pytest.mark.parametrize(
    ("before", "after", "changes_hash"),
    [
        ({}, {"adaptive": ADAPTIVE}, True),
        ({"adaptive": ADAPTIVE}, {"adaptive": {**ADAPTIVE, "k": 2}}, True),
        ({"adaptive": ADAPTIVE}, {"adaptive": {**ADAPTIVE, "round_size": 8}}, True),
        ({"adaptive": ADAPTIVE}, {"adaptive": {**ADAPTIVE, "round_quantile": 0.5}}, True),  # later round sizes
        ({"adaptive": ADAPTIVE}, {"adaptive": {**ADAPTIVE, "token_budget": 1000}}, False),
        ({"adaptive": ADAPTIVE}, {"adaptive": ADAPTIVE, "sampling": {"n": 9}}, False),
        ({}, {"adaptive": {"k": 2}}, False),  # fixed mode: the adaptive settings draw nothing
    ],
)
def test_adaptive_hash_tracks_rounds_not_budget_nor_n(before, after, changes_hash):
    first = generation_config_hash(GenerationConfig.model_validate(before))
    assert (generation_config_hash(GenerationConfig.model_validate(after)) != first) is changes_hash


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"adaptive": {"mode": "adaptive", "k": 8, "max_samples": 4}}, "max_samples"),
        ({"adaptive": {"mode": "adaptive"}, "sampling": {"temperature": 0.0}}, "temperature"),
        ({"adaptive": {"mode": "sometimes"}}, "mode"),
        ({"adaptive": {"k": 0}}, "k"),
        ({"adaptive": {"token_budget": 0}}, "token_budget"),
        ({"resources": {"device": "cpu", "num_gpus_per_actor": 1}}, "num_gpus_per_actor"),
        ({"resources": {"device": "tpu"}}, "device"),
        ({"resources": {"wait_for_resources_s": 0}}, "wait_for_resources_s"),
        ({"engine": {"tensor_parallel_size": 2}, "resources": {"num_gpus_per_actor": 1}}, "num_gpus_per_actor"),
    ],
)
def test_invalid_adaptive_or_resource_config_names_field(data, field):
    with pytest.raises(ValidationError) as info:
        GenerationConfig.model_validate(data)
    assert field in str(info.value)


def test_resource_defaults_wait_longer_than_a_node_scale_up():
    resources = GenerationConfig().resources
    assert resources.device == "auto" and resources.wait_for_resources_s == 1200
