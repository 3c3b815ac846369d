"""Where a configured model name points: a local directory, a hub id, or one of the tiny test models.

Contract: :func:`resolve_model` maps ``tiny:<name>`` to the locally built tiny model's directory
(building the tiny kit once if needed) and returns every other name unchanged. The tiny kit is
imported only for ``tiny:`` names, so production code never depends on it otherwise.
"""

from __future__ import annotations

TINY_PREFIX = "tiny:"
TINY_NAMES = ("tokenizer", "teacher", "student", "reward")


def is_tiny(name: str) -> bool:
    """Whether ``name`` names one of the locally built tiny models."""
    return name.startswith(TINY_PREFIX)


def resolve_model(name: str) -> str:
    """``tiny:<tokenizer|teacher|student|reward>`` -> the ensured local directory; other names unchanged."""
    if not is_tiny(name):
        return name
    which = name.removeprefix(TINY_PREFIX)
    if which not in TINY_NAMES:
        raise ValueError(f"unknown tiny model {name!r}: use one of " + ", ".join(TINY_PREFIX + n for n in TINY_NAMES))
    from factory import tiny

    return getattr(tiny.ensure(), which)
