"""Config loading: every shipped YAML validates; bad values fail naming the field path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory.config import ConfigError, config_hash, load_config, parse_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert len(CONFIGS) >= 4, CONFIGS  # demo + cluster configs, found recursively


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_shipped_config_validates(path):
    from factory.ablate.config import is_ablate_config, load_ablate_config
    from factory.rl.config import is_rl_config, load_rl_config

    if is_ablate_config(path):
        load_ablate_config(path)  # an ablation config, and the distillation config it names
    elif is_rl_config(path):
        load_rl_config(path)  # an RL config, and the distillation config it names
    else:
        load_config(path)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_shipped_config_says_how_to_run_it(path):
    header = path.read_text().splitlines()[0]
    assert header.startswith("#") and ("factory" in header or "ray job submit" in header), header


def _demo() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text())


@pytest.mark.parametrize(
    "override, field",
    [
        ("generation.sampling.n=0", "generation.sampling.n"),
        ("generation.sampling.n=-2", "generation.sampling.n"),
        ("generation.sampling.n='4'", "generation.sampling.n"),
        ("generation.engine.enforce_eager='False'", "generation.engine.enforce_eager"),
        ("generation.engine.trust_remote_code=true", "generation.engine.trust_remote_code"),
        ("train.trust_remote_code=true", "train.trust_remote_code"),
        ("generation.engine.backend=tgi", "generation.engine.backend"),
        ("generation.engine.colour=blue", "generation.engine.colour"),
        ("store.rows_per_file=0", "store.rows_per_file"),
        ("prompts.on_bad_row=ignore", "prompts.on_bad_row"),
        ("verify.code_limits.memry_mb=64", "verify.code_limits.memry_mb"),
        ("verify.code_limits.cpu_s='3'", "verify.code_limits.cpu_s"),
        ("verify.code_limits.memory_mb=0", "memory_mb must be > 0"),
    ],
)
def test_bad_value_fails_naming_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        parse_config(_demo(), "demo.yaml", overrides=(override,))
    assert field in str(err.value)


def test_unknown_top_level_section_is_an_error():
    data = _demo()
    data["extras"] = {"x": 1}
    with pytest.raises(ConfigError, match="extras"):
        parse_config(data)


def test_trust_remote_code_is_allowed_with_a_pinned_revision():
    cfg = parse_config(_demo(), overrides=("generation.engine.revision=abc123", "generation.engine.trust_remote_code=true"))
    assert cfg.generation.engine.trust_remote_code


def test_rejection_on_reward_without_a_reward_model_is_contradictory():
    with pytest.raises(ConfigError, match="reward.enabled"):
        parse_config(_demo(), overrides=("reward.enabled=false", "filter.rejection.min_reward=0.5"))


def test_override_values_are_parsed_as_yaml():
    cfg = parse_config(_demo(), overrides=("generation.sampling.n=3", "generation.sampling.temperature=0.9"))
    assert cfg.generation.sampling.n == 3 and cfg.generation.sampling.temperature == 0.9


def test_malformed_override_is_reported():
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_config(_demo(), overrides=("generation.sampling.n",))


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        parse_config([1, 2])


def test_config_hash_is_stable_and_value_sensitive():
    a, b = parse_config(_demo()), parse_config(_demo())
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(parse_config(_demo(), overrides=("run.seed=7",)))


def test_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def _eval(**values) -> dict:
    return {"heldout": [{"name": "h", "kind": "synthetic", "synthetic_n": 2}], **values}


def test_r1_eval_preset_sets_the_r1_protocol():
    from config_helpers import make_config

    e = make_config(eval=_eval(preset="r1")).eval
    assert (e.samples, e.temperature, e.top_p) == (16, 0.6, 0.95)


def test_values_set_beside_a_preset_win():
    from config_helpers import make_config

    e = make_config(eval=_eval(preset="r1", samples=4)).eval
    assert (e.samples, e.temperature) == (4, 0.6)


def test_unknown_eval_preset_is_an_error_naming_the_field():
    from config_helpers import MINIMAL_CONFIG

    with pytest.raises(ConfigError, match="eval.preset"):
        parse_config({**MINIMAL_CONFIG, "eval": _eval(preset="r2")})
