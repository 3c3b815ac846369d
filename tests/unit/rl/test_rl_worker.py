"""The per-worker GRPO setup: prompts rendered as generation renders them, TRL/DeepSpeed settings from the RL config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory.rl.config import parse_rl_config
from factory.rl.worker import deepspeed_config, policy_prompt, trainer_kwargs

REPO = Path(__file__).resolve().parents[3]


def _cfg(*overrides: str):
    return parse_rl_config(yaml.safe_load((REPO / "configs" / "rl-demo.yaml").read_text()), overrides=overrides)


def _tokenizer(adds_bos: bool):
    from tokenizers import processors

    from factory.tiny_build import build_tokenizer

    tokenizer = build_tokenizer()
    if adds_bos:
        bos = tokenizer.bos_token
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)])
    return tokenizer


def test_a_bos_the_tokenizer_adds_itself_is_not_doubled():
    tokenizer = _tokenizer(adds_bos=True)
    text = tokenizer.bos_token + "<｜User｜>What is 1+2?<｜Assistant｜><think>\n"
    ids = tokenizer(policy_prompt(tokenizer, text))["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1


def test_a_tokenizer_that_adds_no_bos_gets_the_rendered_text_unchanged():
    tokenizer = _tokenizer(adds_bos=False)
    text = tokenizer.bos_token + "<｜User｜>What is 1+2?<｜Assistant｜><think>\n"
    assert policy_prompt(tokenizer, text) == text


def test_deepspeed_leaves_batch_clipping_and_precision_to_the_trainer():
    config = deepspeed_config(_cfg())
    assert config["train_micro_batch_size_per_gpu"] == config["gradient_clipping"] == "auto"
    assert config["bf16"] == {"enabled": "auto"} and config["zero_optimization"] == {"stage": 2}
    assert config["zero_force_ds_cpu_optimizer"] is False  # a plain torch AdamW: no DeepSpeed op compiled on CPU


def test_zero3_gathers_the_weights_when_the_model_is_saved():
    zero = deepspeed_config(_cfg("workers.zero_stage=3"))["zero_optimization"]
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True


def test_trainer_arguments_follow_the_grpo_section(tmp_path):
    cfg = _cfg("grpo.beta=0.02", "grpo.epsilon_high=0.28", "grpo.micro_batch_size=16")
    args = trainer_kwargs(cfg, str(tmp_path), [1.0])
    assert (args["beta"], args["epsilon"], args["epsilon_high"], args["num_generations"]) == (0.02, 0.2, 0.28, 8)
    assert args["per_device_train_batch_size"] == 16 and args["gradient_accumulation_steps"] == 4  # 64 a step
    assert args["max_steps"] == cfg.grpo.steps and args["max_completion_length"] == cfg.grpo.max_completion_length
    assert args["bf16"] is False and args["use_cpu"] is True and "use_vllm" not in args


def test_accelerate_is_told_to_use_the_state_configured_on_ray_trains_process_group(tmp_path):
    args = trainer_kwargs(_cfg(), str(tmp_path), [1.0])
    assert args["accelerator_config"] == {"use_configured_state": True} and "stage" in str(args["deepspeed"])


@pytest.mark.parametrize("engine, mode", [("vllm_colocate", "colocate"), ("vllm_server", "server")])
def test_vllm_rollouts_map_to_trls_modes(tmp_path, engine, mode):
    cfg = _cfg("workers.use_gpu=true", "workers.precision=auto", f"rollout.engine={engine}",
               "rollout.vllm_server_base_url=http://h:8000")
    args = trainer_kwargs(cfg, str(tmp_path), [1.0])
    assert args["use_vllm"] is True and args["vllm_mode"] == mode and args["bf16"] is True


def test_every_argument_is_one_trls_grpo_config_takes():
    import dataclasses

    from trl import GRPOConfig

    cfg = _cfg("workers.use_gpu=true", "rollout.engine=vllm_colocate")
    names = {field.name for field in dataclasses.fields(GRPOConfig)}
    assert set(trainer_kwargs(cfg, "out", [1.0])) <= names


def test_ranks_run_in_process_one_after_another_get_a_deepspeed_state_of_one_process():
    import json
    import subprocess
    import sys

    code = ("import json, os; import torch.distributed as dist; from accelerate import PartialState; "
            "from factory.rl.worker import distributed_world\n"
            "seen = []\n"
            "for run in range(2):\n"
            "    with distributed_world(False):\n"
            "        s = PartialState(); seen.append([str(s.distributed_type), s.num_processes, str(s.device)])\n"
            "    seen.append(['RANK' in os.environ, PartialState._shared_state == {}])\n"
            "print(json.dumps(seen))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    # each run: a one-process DeepSpeed state on CPU; after each: environment and accelerate state undone
    inside, after = ["DistributedType.DEEPSPEED", 1, "cpu"], [False, True]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [inside, after, inside, after]
