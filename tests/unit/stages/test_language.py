"""Language stage: script-share check on tables of cases, and LanguageFilter on hand-made pyarrow tables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from test_filters import MIXED, rows_table

from factory.stages.filter.language import LanguageConfig, LanguageFilter, foreign_script_share, script_of


@pytest.mark.parametrize(
    ("char", "expected"),
    [("a", "Latin"), ("é", "Latin"), ("π", "Greek"), ("я", "Cyrillic"), ("中", "Han"), ("の", "Hiragana"),
     ("한", "Hangul"), ("Ａ", "Latin"), ("1", None), ("+", None), ("𝑥", None)],
)  # fmt: skip
def test_script_of_reads_unicode_names(char, expected):
    assert script_of(char) == expected


@pytest.mark.parametrize(
    ("text", "allowed", "expected"),
    [
        ("plain ascii text", {"Latin"}, 0.0),
        ("abcd中", {"Latin"}, 1 / 5),
        ("abcd中", {"Latin", "Han"}, 0.0),
        ("αβ ab", {"Latin"}, 2 / 4),
        ("中文", {"Han"}, 0.0),
        ("ab中文", {"Han"}, 2 / 4),
        ("123 + 𝑥", {"Latin"}, 0.0),
    ],
)
def test_foreign_script_share_counts_letters_outside_allowed_scripts(text, allowed, expected):
    assert foreign_script_share(text, frozenset(allowed)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("config", "expected"),
    [({}, "language_mixing"), ({"allowed_scripts": ("Latin", "Han")}, None), ({"max_foreign_script_share": 0.5}, None)],
)
def test_language_filter_marks_mixed_traces(config, expected):
    out = LanguageFilter(LanguageConfig(**config))(rows_table({"completion": MIXED}))
    assert out.column("drop_reason").to_pylist() == [expected]
    assert out.column("drop_stage").to_pylist() == [None if expected is None else "language"]


def test_language_filter_keeps_earlier_drop_reasons():
    table = rows_table({"completion": MIXED, "drop_reason": "truncated", "drop_stage": "quality"})
    out = LanguageFilter(LanguageConfig())(table)
    assert out.select(["drop_reason", "drop_stage"]).to_pylist() == [{"drop_reason": "truncated", "drop_stage": "quality"}]


def test_language_stage_is_off_without_a_share():
    from config_helpers import make_config

    from factory.stages.filter.language import Language

    assert Language.enabled(make_config())
    assert not Language.enabled(make_config(filter={"language": {"max_foreign_script_share": None}}))


@pytest.mark.parametrize(
    ("config", "field"),
    [({"allowed_scripts": ("Latin", "Klingon")}, "allowed_scripts"), ({"max_foreign_script_share": 1.5}, "max_foreign_script_share")],
)
def test_language_config_errors_name_the_field(config, field):
    with pytest.raises(ValidationError, match=field):
        LanguageConfig(**config)
