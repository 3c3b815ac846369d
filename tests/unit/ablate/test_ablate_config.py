"""The ablation config: the shipped ones validate with the factory configs they name; bad values fail naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory.ablate.config import (eval_config, is_ablate_config, load_ablate_config, parse_ablate_config,
                                   student_train_config)
from factory.config import ConfigError
from factory.rl.config import is_rl_config

REPO = Path(__file__).resolve().parents[3]
ABLATE_CONFIGS = [REPO / "configs" / "ablate-demo.yaml", REPO / "configs" / "cluster" / "ablate-qwen-1.5b.yaml"]


def _demo() -> dict:
    return yaml.safe_load((REPO / "configs" / "ablate-demo.yaml").read_text())


@pytest.mark.parametrize("path", ABLATE_CONFIGS, ids=lambda p: p.name)
def test_shipped_ablation_configs_validate_with_their_factory_configs(path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert is_ablate_config(path) and not is_ablate_config(REPO / "configs" / "demo.yaml")
    cfg, factory_cfg = load_ablate_config(path)
    names = [p.name for p in cfg.ablate.policies]
    assert names == ["unfiltered", "verified", "rm_best", "dedup", "dedup_curriculum"]
    assert cfg.ablate.baseline_name == "unfiltered" and len(cfg.ablate.seeds) >= 3
    assert student_train_config(cfg, factory_cfg).epochs == cfg.ablate.train["epochs"]


def test_the_demo_ablation_scores_a_thousand_problems_under_the_demo_decoding(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg, factory_cfg = load_ablate_config(REPO / "configs" / "ablate-demo.yaml")
    ecfg = eval_config(cfg, factory_cfg)
    assert ecfg.eval.heldout[0].synthetic_n == 1000 == cfg.ablate.min_heldout_problems
    assert ecfg.eval.temperature == factory_cfg.eval.temperature == 0.0 and ecfg.run.name == "ablate-demo"


def test_an_ablation_config_is_not_taken_for_an_rl_config_by_validate(monkeypatch, capsys):
    from factory.cli import main

    monkeypatch.chdir(REPO)
    assert is_rl_config(REPO / "configs" / "ablate-demo.yaml")  # it names a factory config too
    assert main(["validate", "configs/ablate-demo.yaml"]) == 0
    assert '"ablate"' in capsys.readouterr().out


@pytest.mark.parametrize("override, field", [
    ("ablate.seeds=[]", "ablate.seeds"),
    ("ablate.seeds=[1, 1]", "seeds must be distinct"),
    ("ablate.policies=[{name: a, select: everything}, {name: b, select: all}]", "ablate.policies.0.select"),
    ("ablate.policies=[{name: a, select: all}, {name: b, select: verified, rm_top_k: 2}]",
     "rm_top_k and min_reward apply only to select: rm_best"),
    ("ablate.policies=[{name: a, select: all}, {name: a, select: verified}]", "names must be unique"),
    ("ablate.policies=[{name: a, select: all}]", "ablate.policies"),
    ("ablate.policies=[{name: a/b, select: all}, {name: b, select: all}]", "ablate.policies.0.name"),
    ("ablate.baseline=nobody", "baseline 'nobody' is not one of the policies"),
    ("ablate.colour=blue", "ablate.colour"),
    ("ablate.bootstrap.confidence=1.5", "ablate.bootstrap.confidence"),
    ("ablate.train.seed=3", "seed and curriculum are set per student"),
])
def test_bad_value_fails_naming_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        parse_ablate_config(_demo(), "ablate-demo.yaml", overrides=(override,))
    assert field in str(err.value)


def test_train_overrides_are_validated_as_the_train_section(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    for override, field in (("ablate.train.epochs=0", "ablate.train.epochs"),
                            ("ablate.train.epoch=3", "ablate.train.epoch"),
                            ("ablate.train.epochs='3'", "ablate.train.epochs")):
        with pytest.raises(ConfigError) as err:
            load_ablate_config(REPO / "configs" / "ablate-demo.yaml", (override,))
        assert field in str(err.value), str(err.value)


def test_rm_best_needs_the_reward_model(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    factory = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    factory["reward"] = {"enabled": False}
    factory["filter"]["rejection"].pop("min_reward", None)
    (tmp_path / "factory.yaml").write_text(yaml.safe_dump(factory))
    data = _demo()
    data["factory"] = str(tmp_path / "factory.yaml")
    (tmp_path / "ablate.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="select rm_best needs reward scores"):
        load_ablate_config(tmp_path / "ablate.yaml")


def test_a_policy_may_set_its_own_epochs_for_equal_compute():
    cfg = parse_ablate_config(_demo(), overrides=(
        "ablate.policies=[{name: unfiltered, select: all}, {name: verified_steps, select: verified, epochs: 29}]",))
    assert [p.epochs for p in cfg.ablate.policies] == [None, 29]
    with pytest.raises(ConfigError, match="ablate.policies.1.epochs"):
        parse_ablate_config(_demo(), overrides=(
            "ablate.policies=[{name: unfiltered, select: all}, {name: v, select: verified, epochs: 0}]",))


def test_a_student_whose_settings_changed_is_trained_again_from_the_start(tmp_path):
    from factory.ablate.run import _train

    calls = []

    def run_training(cfg, files, out_dir, *, snapshot_version, resume=True):
        calls.append(resume)
        if resume:
            raise ValueError(f"cannot resume {out_dir}: its checkpoint was made with a different config")
        return "trained"

    assert _train(run_training, None, ["f"], tmp_path, "v1") == "trained" and calls == [True, False]
