"""The result every verifier returns: a status, the verifier's name and version, and a detail.

Statuses (``VERDICT_STATUSES``): ``correct`` and ``wrong`` are judgements; ``no_answer`` means the
sample gave no extractable final answer; ``timeout`` means the check ran out of time; ``error`` means
the check itself could not be carried out (bad reference, sandbox failure, crashed worker). Only
``correct``/``wrong`` are scores: callers must never read ``timeout`` or ``error`` as ``wrong``.
"""

from __future__ import annotations

from dataclasses import dataclass

VERDICT_STATUSES = ("correct", "wrong", "no_answer", "timeout", "error")


@dataclass(frozen=True)
class VerdictResult:
    """One verifier's judgement of one sample."""

    status: str
    """One of ``VERDICT_STATUSES``."""
    verifier: str
    """Verifier name, e.g. ``"math"``."""
    version: str
    """Verifier version; changes whenever the same input could be judged differently."""
    detail: str = ""
    """Short human-readable reason (extracted answer, failing assertion, error message)."""
    code_status: str | None = None
    """Code verifier only: the sandbox status (pass, fail, timeout, memory, sandbox_error)."""

    def __post_init__(self) -> None:
        if self.status not in VERDICT_STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {VERDICT_STATUSES}")

    @property
    def verifier_id(self) -> str:
        """``name@version``, the value stored in the ``verifier`` column."""
        return f"{self.verifier}@{self.version}"
