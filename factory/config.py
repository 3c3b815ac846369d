"""Typed, validated run configuration: YAML → :class:`FactoryConfig`.

Contract: :func:`load_config` rejects, before any Ray work starts, unknown keys, wrong types
(validation is pydantic's strict mode over the YAML's JSON form, so ``"False"`` is not a bool and
``"3"`` is not an int), and contradictory values; every error names the dotted field path. Each
stage owns its section class in its own module; this module only composes them and checks rules
that span sections. YAML files hold values only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from factory.eval_fields import apply_preset
from factory.sections import Section
from factory.stages.decontam import DecontamConfig
from factory.stages.dedup import DedupConfig
from factory.stages.filter import FilterConfig
from factory.stages.generate import GenerationConfig
from factory.stages.ingest import PromptsConfig, PromptSource
from factory.stages.reward import RewardConfig
from factory.stages.verify import VerifyConfig
from factory.store import StoreConfig
from factory.train.config import TrainConfig


class RayConfig(Section):
    """How the driver joins Ray."""

    address: str | None = None
    """``None`` joins the cluster a submitted job runs in, or starts a local instance."""
    num_cpus: int | None = None
    """CPUs of a local instance (ignored when joining a cluster)."""


class RunConfig(Section):
    """Run identity and where run-local files go."""

    name: str
    """Names the run directory and the Ray job."""
    work_dir: str = "runs"
    """Run directories (checkpoints, logs, training output) live under here, outside git."""
    seed: int = 0
    """Base seed; every stage derives its own from it."""
    ray: RayConfig = RayConfig()
    """Ray connection."""
    cluster_mounts: tuple[str, ...] = ()
    """Shared volumes that exist on the cluster's nodes (e.g. /mnt/factory): files under them are not
    checked by ``factory validate`` on a machine that does not mount them."""


class EvalConfig(Section):
    """Held-out evaluation of teacher and student through the generation stage and verifiers."""

    preset: Literal["r1"] | None = None
    """Named protocol filling samples/temperature/top_p not set here (factory.eval_fields.EVAL_PRESETS):
    r1 = 16 samples at temperature 0.6, top_p 0.95, pass@1 averaged over them (DeepSeek-R1's evaluation)."""
    enabled: bool = True
    """Off skips evaluation (e.g. dataset-only refresh runs)."""
    heldout: list[PromptSource] = []
    """Verifiable held-out prompt sets (never trained on)."""
    temperature: float = 0.0
    """0 = greedy pass@1; >0 with ``samples > 1`` gives maj@k."""
    top_p: float = 1.0
    """Nucleus sampling for maj@k runs."""
    samples: int = 1
    """Samples per problem (k of maj@k)."""
    max_tokens: int = 256
    """Generation budget per answer."""
    evaluate_teacher: bool = True
    """Teacher accuracy is the reference the student ratio is taken against."""
    evaluate_student_before: bool = True
    """The untrained student's accuracy shows what distillation added."""
    student_tensor_parallel_size: int = 1
    """Students are small: one device per engine even when the teacher needs tensor parallelism."""
    reuse_results: bool = True
    """Reuse a model's stored result when model weights, engine, sampling, prompting, verifier and held-out
    rows are all unchanged: a scheduled refresh would otherwise re-evaluate the same teacher every run."""

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        return apply_preset(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _check(self) -> "EvalConfig":
        if self.enabled and not self.heldout:
            raise ValueError("heldout must name at least one prompt source when eval is enabled")
        if self.samples <= 0:
            raise ValueError("samples must be > 0")
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0 (greedy samples are identical)")
        return self


class FactoryConfig(Section):
    """A whole distillation run."""

    run: RunConfig
    """Run identity."""
    prompts: PromptsConfig
    """Prompt sources."""
    generation: GenerationConfig
    """Teacher generation."""
    verify: VerifyConfig = VerifyConfig()
    """Rule-based verifiers."""
    reward: RewardConfig = RewardConfig()
    """Reward-model scoring."""
    filter: FilterConfig = FilterConfig()
    """Quality filters and rejection sampling."""
    dedup: DedupConfig = DedupConfig()
    """Exact and MinHash dedup."""
    decontam: DecontamConfig = DecontamConfig()
    """Decontamination against eval sets."""
    store: StoreConfig
    """Where the snapshot is committed."""
    train: TrainConfig | None = None
    """Student SFT; absent = dataset only."""
    eval: EvalConfig = EvalConfig(enabled=False)
    """Held-out evaluation."""

    @model_validator(mode="after")
    def _cross_checks(self) -> "FactoryConfig":
        rejection = self.filter.rejection
        if (rejection.min_reward is not None or rejection.best_of_n) and not self.reward.enabled:
            raise ValueError("filter.rejection uses rewards (min_reward/best_of_n) but reward.enabled is false")
        return self


class ConfigError(ValueError):
    """A config file that does not validate; the message lists every bad field by dotted path."""


M = TypeVar("M", bound=BaseModel)


def format_errors(error: ValidationError, origin: str, kind: str = "config", prefix: str = "") -> str:
    """One line per error, each naming its field path (``prefix`` + pydantic's location)."""
    lines = [f"  {prefix}{'.'.join(str(p) for p in item['loc']) or '(top level)'}: {item['msg']}"
             for item in error.errors()]
    return f"{origin}: invalid {kind}\n" + "\n".join(lines)


def validate_strict(model: type[M], data: Any, origin: str, overrides: tuple[str, ...] = (), kind: str = "config",
                    prefix: str = "") -> M:
    """``data`` (parsed YAML) with ``overrides`` applied, validated in pydantic's strict JSON mode into ``model``:
    the one way every config kind (distillation, RL, ablation) is checked, so their errors read alike."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: top level must be a mapping, got {type(data).__name__}")
    for assignment in overrides:
        _apply_override(data, assignment)
    try:
        text = json.dumps(data)
    except TypeError as e:  # dates and other YAML-only types are not config values
        raise ConfigError(f"{origin}: {e}") from e
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as e:
        raise ConfigError(format_errors(e, origin, kind, prefix)) from None


def _apply_override(data: dict, assignment: str) -> None:
    """``a.b.c=value``: value parsed as YAML, so ``n=4`` is an int and ``x=false`` a bool."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {assignment!r} must look like section.field=value")
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
    node[leaf] = yaml.safe_load(raw)


def parse_config(data: Any, origin: str = "<config>", overrides: tuple[str, ...] = ()) -> FactoryConfig:
    """Validate already-parsed YAML data (strictly) into a FactoryConfig."""
    return validate_strict(FactoryConfig, data, origin, overrides)


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML file at ``path``; a syntax error is a ConfigError naming the file."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def top_level_keys(path: str | Path) -> set[str]:
    """The top-level keys of the YAML mapping at ``path`` (empty when it is not a mapping or not valid YAML:
    the loader that reads it reports the error). How the CLI tells config kinds apart."""
    try:
        data = read_yaml(path)
    except ConfigError:
        return set()
    return set(data) if isinstance(data, dict) else set()


def load_config(path: str | Path, overrides: tuple[str, ...] = ()) -> FactoryConfig:
    """Read a YAML file and validate it; see the module docstring."""
    return parse_config(read_yaml(path), str(path), overrides)


def config_hash(section: Section) -> str:
    """Stable hash of a config (or section) value: same values → same hash, across processes."""
    canonical = json.dumps(section.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
