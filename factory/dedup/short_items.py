"""Exact and formula matching of short eval items, the ones a word n-gram index cannot see.

Word n-grams (:mod:`factory.dedup.ngrams`) drop symbols, skip entries of fewer than ``ceil(n/2)``
words and match entries shorter than ``n`` words only as the whole word sequence, so a short
arithmetic item ("What is 7+2+2+2+1+2?") is invisible to them once reworded, and its operators are
lost ("7-2+2" reads as "7 2 2"). For entries of fewer than ``n`` words this index keeps two keys,
symbols included:

- the **text**: lowercased, NFKC-normalised, all whitespace removed, trailing ``?``/``.``/``!`` stripped
  ("What is 7 + 2?" and "what is 7+2" are one key);
- every **formula** in it: a run of at least ``MIN_OPERANDS`` numbers joined by ``+ - * / × ÷ ^`` (spaces
  ignored), e.g. ``7+2+2+2+1+2``. A training prompt containing the same formula is the same problem
  reworded ("Compute 7 + 2 + 2 + 2 + 1 + 2.").

Contract: :meth:`ShortItemIndex.match` names the first benchmark (in build order) whose short entry
shares the text key or a formula with each text, else None. Entries of ``n`` words or more (which
the n-gram index matches window by window) are not indexed here. Not covered: numbers written as words, reordered operands, formulas of fewer
than ``MIN_OPERANDS`` numbers (too common to mean the same problem).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

MIN_OPERANDS = 3
"""Numbers a formula needs to identify a problem; ``2+2`` appears in unrelated texts."""
_NUMBER = r"\d+(?:\.\d+)?"
_FORMULA = re.compile(rf"{_NUMBER}(?:\s*[-+*/×÷^]\s*{_NUMBER}){{{MIN_OPERANDS - 1},}}")
_WORD = re.compile(r"[^\W_]+")


def text_key(text: str) -> str:
    """The whitespace- and case-insensitive form of a whole text, symbols kept."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", "", folded).rstrip("?.!")


def formulas(text: str) -> set[str]:
    """The formulas of at least MIN_OPERANDS numbers in ``text``, whitespace removed."""
    return {re.sub(r"\s+", "", found) for found in _FORMULA.findall(unicodedata.normalize("NFKC", text))}


def word_count(text: str) -> int:
    """Words as the n-gram index counts them (alphanumeric runs)."""
    return len(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class ShortItemIndex:
    """Text keys and formulas of the short entries of each benchmark."""

    names: tuple[str, ...]
    texts: dict[str, int]
    """text key -> index of the first benchmark with it."""
    formula_owner: dict[str, int]
    """formula -> index of the first benchmark with it."""
    entries: dict[str, int]
    """benchmark -> how many of its entries are short (indexed here)."""

    @classmethod
    def build(cls, benchmarks: dict[str, Sequence[str]], max_words: int) -> "ShortItemIndex":
        """Index the entries of fewer than ``max_words`` words (the n-gram length; name -> texts, in
        priority order)."""
        texts: dict[str, int] = {}
        owners: dict[str, int] = {}
        entries = {}
        for index, (name, items) in enumerate(benchmarks.items()):
            short = [item for item in items if item.strip() and word_count(item) < max_words]
            entries[name] = len(short)
            for item in short:
                texts.setdefault(text_key(item), index)
                for formula in formulas(item):
                    owners.setdefault(formula, index)
        return cls(tuple(benchmarks), texts, owners, entries)

    def match(self, texts: Sequence[str]) -> list[str | None]:
        """Name of the first benchmark whose short entry is each text (by key or formula), or None."""
        found = []
        for text in texts:
            hits = [self.texts.get(text_key(text))] + [self.formula_owner.get(f) for f in formulas(text)]
            owners = [hit for hit in hits if hit is not None]
            found.append(self.names[min(owners)] if owners else None)
        return found
