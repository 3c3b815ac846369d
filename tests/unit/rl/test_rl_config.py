"""The RL config: shipped RL configs validate with the factory configs they name; bad values fail naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory.config import ConfigError
from factory.rl.config import load_rl_config, parse_rl_config

REPO = Path(__file__).resolve().parents[3]
RL_CONFIGS = [REPO / "configs" / "rl-demo.yaml", *sorted((REPO / "configs" / "cluster").glob("grpo-*.yaml"))]


def _demo() -> dict:
    return yaml.safe_load((REPO / "configs" / "rl-demo.yaml").read_text())


def test_cluster_grpo_configs_for_1_5b_and_7b_exist():
    assert {p.name for p in RL_CONFIGS} >= {"rl-demo.yaml", "grpo-1.5b.yaml", "grpo-7b.yaml"}


@pytest.mark.parametrize("path", RL_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_rl_config_validates_with_its_factory_config(path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg, factory_cfg = load_rl_config(path)
    assert factory_cfg.generation.engine.model
    assert cfg.grad_accum >= 1


@pytest.mark.parametrize("path", RL_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_rl_config_says_how_to_run_it(path):
    header = path.read_text().splitlines()[0]
    assert header.startswith("# Run:") and ("factory rl" in header or "pipelines/rl.py" in header), header


def test_cluster_configs_train_on_gpus_with_vllm_rollouts(monkeypatch):
    monkeypatch.chdir(REPO)
    for path in RL_CONFIGS[1:]:
        cfg, _ = load_rl_config(path)
        assert cfg.workers.use_gpu and cfg.workers.dtype == "bf16" and cfg.rollout.engine == "vllm_colocate"


@pytest.mark.parametrize(
    "override, field",
    [
        ("grpo.group_size=1", "grpo.group_size"),
        ("grpo.group_size='8'", "grpo.group_size"),
        ("grpo.beta=-0.1", "grpo.beta"),
        ("grpo.epsilon=0", "grpo.epsilon"),
        ("grpo.learning_rate=0", "grpo.learning_rate"),
        ("grpo.max_completion_length=2", "grpo.max_completion_length"),
        ("grpo.steps=0", "grpo.steps"),
        ("grpo.loss_type=ppo", "grpo.loss_type"),
        ("grpo.clip=0.2", "grpo.clip"),
        ("prompts.min_pass_rate=1.5", "prompts.min_pass_rate"),
        ("rewards.correctness=-1", "rewards.correctness"),
        ("workers.zero_stage=4", "workers.zero_stage"),
        ("workers.precision=bf16", "workers"),
        ("rollout.engine=vllm_server", "rollout"),
        ("extras.x=1", "extras"),
    ],
)
def test_bad_value_fails_naming_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        parse_rl_config(_demo(), "rl-demo.yaml", overrides=(override,))
    assert field in str(err.value)


def test_a_batch_the_workers_cannot_split_is_rejected():
    with pytest.raises(ConfigError, match="multiple of"):
        parse_rl_config(_demo(), overrides=("grpo.prompts_per_step=3", "grpo.group_size=3", "grpo.micro_batch_size=2"))


def test_an_empty_pass_rate_band_is_rejected():
    with pytest.raises(ConfigError, match="min_pass_rate must be < max_pass_rate"):
        parse_rl_config(_demo(), overrides=("prompts.min_pass_rate=0.6", "prompts.max_pass_rate=0.4"))


def test_all_zero_reward_weights_are_rejected():
    with pytest.raises(ConfigError, match="rewards"):
        parse_rl_config(_demo(), overrides=("rewards.correctness=0",))


def test_vllm_rollouts_need_gpu_workers():
    with pytest.raises(ConfigError, match="rollout.engine vllm_colocate needs workers.use_gpu"):
        parse_rl_config(_demo(), overrides=("rollout.engine=vllm_colocate",))


def test_reward_model_weight_needs_the_factory_reward_model(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    factory = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    factory["reward"]["enabled"] = False
    factory["filter"]["rejection"].pop("min_reward", None)
    (tmp_path / "factory.yaml").write_text(yaml.safe_dump(factory))
    data = _demo()
    data["factory"] = str(tmp_path / "factory.yaml")
    data["rewards"]["reward_model"] = 0.5
    (tmp_path / "rl.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="rewards.reward_model"):
        load_rl_config(tmp_path / "rl.yaml")


def test_a_missing_factory_config_is_reported(tmp_path):
    data = _demo()
    data["factory"] = str(tmp_path / "absent.yaml")
    (tmp_path / "rl.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        load_rl_config(tmp_path / "rl.yaml")
