"""Language filter stage: drop traces that mix in letters of scripts the dataset should not contain
(R1-Zero's "language mixing": a chain that switches to Chinese halfway).

Contract: for each row whose ``drop_reason`` is still null, the share of its completion's letters
that belong to scripts outside ``allowed_scripts`` is computed; above ``max_foreign_script_share``
the row is marked ``language_mixing`` (``drop_stage = "language"``). One row out per row in.
Scripts are read from Unicode character names (CJK ideographs are ``Han``); letters of no listed
script (mathematical alphanumerics, letter-like symbols) are ignored, and so are digits and symbols.
Not covered: which natural language a Latin-script text is in (English vs French); a language-ID
model would be its own stage.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import pyarrow as pa
from pydantic import field_validator

from factory.pipeline import Stage, StageOutput
from factory.rows import mark_drops, values
from factory.sections import Section

KNOWN_SCRIPTS = frozenset(
    {
        "Latin", "Greek", "Cyrillic", "Armenian", "Hebrew", "Arabic", "Syriac", "Thaana", "Devanagari",
        "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala",
        "Thai", "Lao", "Tibetan", "Myanmar", "Georgian", "Hangul", "Ethiopic", "Cherokee", "Khmer",
        "Mongolian", "Hiragana", "Katakana", "Bopomofo", "Han",
    }
)  # fmt: skip
"""Script names accepted in ``allowed_scripts`` (Unicode script names; CJK ideographs are ``Han``)."""

_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_ASCII_NON_LETTERS = bytes(code for code in range(128) if not chr(code).isalpha())


class LanguageConfig(Section):
    """Script-share check of the reasoning trace."""

    allowed_scripts: tuple[str, ...] = ("Latin", "Greek")
    """Scripts the traces should be written in; Greek is allowed for math symbols."""
    max_foreign_script_share: float | None = 0.01
    """Drop when more than this share of letters belong to other scripts; None turns the stage off."""

    @field_validator("allowed_scripts")
    @classmethod
    def _known_scripts(cls, scripts: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(scripts) - KNOWN_SCRIPTS)
        if unknown:
            raise ValueError(f"allowed_scripts has unknown scripts {unknown}; known: {sorted(KNOWN_SCRIPTS)}")
        return scripts

    @field_validator("max_foreign_script_share")
    @classmethod
    def _share(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError("max_foreign_script_share must be within [0, 1]")
        return value


@lru_cache(maxsize=1 << 16)
def script_of(char: str) -> str | None:
    """Unicode script of a letter from its character name (``Han`` for CJK ideographs), or ``None``
    for non-letters and letters of no script in :data:`KNOWN_SCRIPTS`."""
    if not char.isalpha():
        return None
    if char.isascii():
        return "Latin"
    words = unicodedata.name(char, "").split(" ")
    if words[0] in ("FULLWIDTH", "HALFWIDTH") and len(words) > 1:
        words = words[1:]
    script = "Han" if words[0] == "CJK" else words[0].capitalize()
    return script if script in KNOWN_SCRIPTS else None


def foreign_script_share(text: str, allowed: frozenset[str]) -> float:
    """Share of ``text``'s script letters whose script is not in ``allowed`` (0 without letters)."""
    ascii_letters = len(text.encode("ascii", "ignore").translate(None, _ASCII_NON_LETTERS))
    foreign = 0
    counted = ascii_letters
    for char in () if text.isascii() else _NON_ASCII.findall(text):
        script = script_of(char)
        if script is not None:
            counted += 1
            foreign += script not in allowed
    if "Latin" not in allowed:
        foreign += ascii_letters
    return foreign / counted if counted else 0.0


class LanguageFilter:
    """Callable for ``map_batches(batch_format="pyarrow")``: marks ``language_mixing`` (module docstring)."""

    def __init__(self, cfg: LanguageConfig):
        self.allowed = frozenset(cfg.allowed_scripts)
        self.limit = cfg.max_foreign_script_share

    def __call__(self, table: pa.Table) -> pa.Table:
        reasons = [
            None if dropped is not None or foreign_script_share(completion or "", self.allowed) <= self.limit
            else "language_mixing"
            for dropped, completion in zip(values(table, "drop_reason"), values(table, "completion"), strict=True)
        ]
        return mark_drops(table, reasons, Language.name)


class Language(Stage):
    """Script-share filter of the reasoning trace (module docstring)."""

    name = "language"
    section = "filter.language"
    requires = ("completion", "drop_reason", "drop_stage")
    adds = ("drop_reason", "drop_stage")

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.filter.language.max_foreign_script_share is not None

    def apply(self, ds) -> StageOutput:
        return StageOutput(self.map_batches(ds, LanguageFilter(self.config), udf_modifying_row_count=False))
