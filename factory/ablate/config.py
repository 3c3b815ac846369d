"""The ablation config: which data policies to train students under, how many seeds, and how to compare them.

An ablation reads one committed generation pool (a snapshot of the distillation config it names under
``factory:``, kept rows plus its ``dropped`` side table), so like an RL config it names that config
instead of repeating it; the distillation config stays valid and unchanged. Its ``train`` section is
each student's base, its ``eval`` section the one decoding setting every student and the teacher are
evaluated under. :func:`load_ablate_config` validates both strictly before any Ray work; every error
names the dotted field (``ablate.policies.1.select``), unknown keys are errors, ``--set k=v`` overrides
apply to this file. An ablation config is told apart from an RL config by its top-level ``ablate:`` key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from factory.config import (ConfigError, FactoryConfig, RunConfig, load_config, read_yaml, top_level_keys,
                            validate_strict)
from factory.sections import Section
from factory.stages.ingest import PromptSource
from factory.train.config import TrainConfig

SELECTIONS = ("all", "verified", "rm_best", "dedup")
"""What a policy trains on, from the pool (see :mod:`factory.ablate.policies`)."""


class PolicySpec(Section):
    """One named data policy: a selection over the pool and the sample order it is trained in."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Names the policy in the table, the plot and its run directory (a plain file name)."""
    select: Literal["all", "verified", "rm_best", "dedup"]
    """all: every generated sample with a response (wrong and filtered ones too); verified: verdict correct;
    rm_best: per prompt the rm_top_k highest reward-scored correct samples; dedup: the snapshot's kept rows
    (correct, past every filter and the dedup stage)."""
    curriculum: Literal["shuffle", "easy_to_hard"] | None = None
    """Sample order of this policy's students; None: the ablation's train section's (curriculum on/off)."""
    epochs: int | None = Field(default=None, ge=1)
    """Passes over this policy's rows; None: the ablation's train epochs (set it to give a small policy as many
    optimizer steps as a big one: equal compute instead of equal passes)."""
    rm_top_k: int = Field(default=1, ge=1)
    """rm_best: samples kept per prompt (best-of-n keeps 1)."""
    min_reward: float | None = None
    """rm_best: also require a reward of at least this (a threshold policy); None: no threshold."""

    @model_validator(mode="after")
    def _rm_fields(self) -> "PolicySpec":
        if self.select != "rm_best" and (self.rm_top_k != 1 or self.min_reward is not None):
            raise ValueError("rm_top_k and min_reward apply only to select: rm_best")
        return self


class BootstrapConfig(Section):
    """The paired bootstrap behind every interval (:mod:`factory.ablate.stats`)."""

    resamples: int = Field(default=2000, ge=100)
    """Bootstrap draws; 2000 puts the 2.5% and 97.5% percentiles on 50 draws each."""
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    """Coverage of the percentile intervals."""
    seed: int = 0
    """Seeds the draws, so a rerun on the same results prints the same intervals."""


class AblateSection(Section):
    """The ablation itself."""

    snapshot: str = "latest"
    """Version of the factory config's store that is the generation pool (kept rows + dropped side table)."""
    policies: list[PolicySpec] = Field(min_length=2)
    """The policies compared; each is trained once per seed."""
    baseline: str | None = None
    """Policy the differences are taken against (e.g. the unfiltered one); None: the first policy."""
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1)
    """Training seeds (sample order) per policy; the bootstrap resamples them with the problems."""
    train: dict[str, Any] = {}
    """Overrides of the factory config's train section for every student (e.g. epochs), validated as train.*."""
    heldout: list[PromptSource] | None = None
    """Held-out problems every model is scored on; None: the factory config's eval.heldout."""
    min_heldout_problems: int = Field(default=1000, ge=1)
    """Fewer held-out problems than this is an error: intervals over a few hundred problems are too wide to rank policies."""
    evaluate_teacher: bool = True
    """Score the teacher under the same decoding, so each student's gap to it gets an interval too."""
    bootstrap: BootstrapConfig = BootstrapConfig()
    """Interval settings."""

    @model_validator(mode="after")
    def _names(self) -> "AblateSection":
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ValueError(f"policies: names must be unique, got {names}")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the policies {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if "seed" in self.train or "curriculum" in self.train:
            raise ValueError("train: seed and curriculum are set per student (ablate.seeds, policies.*.curriculum)")
        return self

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.policies[0].name


class AblateConfig(Section):
    """A whole ablation job."""

    factory: str
    """The distillation config (YAML) whose store holds the pool and whose train and eval sections the students use."""
    run: RunConfig
    """Run identity: policy files, students, evaluations, ablation.json and report.html go to ``<work_dir>/<name>``."""
    ablate: AblateSection
    """Policies, seeds and intervals."""


def is_ablate_config(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is an ablation config (a top-level ``ablate:`` key)."""
    return "ablate" in top_level_keys(path)


def parse_ablate_config(data, origin: str = "<ablation config>", overrides: tuple[str, ...] = ()) -> AblateConfig:
    """Validate parsed YAML (strictly, as :func:`factory.config.parse_config`) into an AblateConfig."""
    return validate_strict(AblateConfig, data, origin, overrides, kind="ablation config")


def student_train_config(cfg: AblateConfig, factory_cfg: FactoryConfig, origin: str = "<ablation config>") -> TrainConfig:
    """The factory config's train section with ``ablate.train`` applied, validated strictly (errors name
    ``ablate.train.<field>``); seed and curriculum are then set per student."""
    if factory_cfg.train is None:
        raise ConfigError(f"{origin}: invalid ablation config\n  factory: {cfg.factory} has no train section")
    merged = {**factory_cfg.train.model_dump(mode="json"), **cfg.ablate.train}
    return validate_strict(TrainConfig, merged, origin, kind="ablation config", prefix="ablate.train.")


def check_against_factory(cfg: AblateConfig, factory_cfg: FactoryConfig, origin: str) -> None:
    """Rules spanning both files (ConfigError naming the ablation field)."""
    student_train_config(cfg, factory_cfg, origin)
    if cfg.ablate.heldout is None and not factory_cfg.eval.heldout:
        raise ConfigError(f"{origin}: invalid ablation config\n  ablate.heldout: not set, and {cfg.factory} names "
                          "no eval.heldout prompt sources")
    if any(p.select == "rm_best" for p in cfg.ablate.policies) and not factory_cfg.reward.enabled:
        raise ConfigError(f"{origin}: invalid ablation config\n  ablate.policies: select rm_best needs reward "
                          f"scores, but reward.enabled is false in {cfg.factory}")


def load_ablate_config(path: str | Path, overrides: tuple[str, ...] = ()) -> tuple[AblateConfig, FactoryConfig]:
    """The ablation config at ``path`` and the factory config it names, both validated (module docstring)."""
    cfg = parse_ablate_config(read_yaml(path), str(path), overrides)
    factory_cfg = load_config(cfg.factory)
    check_against_factory(cfg, factory_cfg, str(path))
    return cfg, factory_cfg


def eval_config(cfg: AblateConfig, factory_cfg: FactoryConfig) -> FactoryConfig:
    """The factory config every model of the ablation is evaluated with: its eval section (one decoding
    setting for all), on ``ablate.heldout`` when set, results stored under the ablation's run directory."""
    update: dict[str, Any] = {"enabled": True}
    if cfg.ablate.heldout is not None:
        update["heldout"] = cfg.ablate.heldout
    return factory_cfg.model_copy(update={"run": cfg.run, "eval": factory_cfg.eval.model_copy(update=update)})
