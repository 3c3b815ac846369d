"""Filter stages: upstream failures (:mod:`.infra`), per-row quality checks (:mod:`.quality`), the
script-share check (:mod:`.language`), then per-prompt rejection sampling with pass rates
(:mod:`.rejection`).

Contract (docs/ARCHITECTURE.md): no row is ever removed. Rejected rows get ``drop_reason`` and
``drop_stage`` (``infra``, ``quality``, ``language`` or ``rejection``) when their ``drop_reason`` is still null;
rows dropped by an earlier stage pass through untouched (but still count towards the prompt's
``pass_rate``, which is set on every row). Infrastructure failures are dropped with their own
reasons (``gen_*``, ``verify_error``, ``verify_timeout``, ``reward_error``), never scored 0.
Rejection decides per ``prompt_id`` over the judged columns only and marks the rows where they are; a
row's outcome depends only on its prompt's rows and the config.
"""

from __future__ import annotations

from factory.sections import Section
from factory.stages.filter.language import LanguageConfig
from factory.stages.filter.quality import QualityConfig
from factory.stages.filter.rejection import RejectionConfig

__all__ = ["FilterConfig", "LanguageConfig", "QualityConfig", "RejectionConfig"]


class FilterConfig(Section):
    """Quality filters and rejection sampling."""

    quality: QualityConfig = QualityConfig()
    """Per-row checks of the reasoning trace (format, truncation, repetition, length)."""
    language: LanguageConfig = LanguageConfig()
    """Script-share check of the reasoning trace (R1's language mixing)."""
    rejection: RejectionConfig = RejectionConfig()
    """Per-prompt policies (correctness, reward, best-of-n, caps, pass-rate band)."""
