"""Circuit breaker over sandbox runs: stop a run whose sandbox is failing instead of dropping its samples.

An ``ErrorWindow`` keeps the outcome of the last ``window`` sandbox runs (whether each was
``sandbox_error``). It opens when, with at least ``min_runs`` runs in the window, the share of
``sandbox_error`` exceeds ``max_error_share``, and stays open: every later ``record`` reports it again.
Plain Python (stdlib only); the verify stage keeps one per stage in a small Ray actor, so the window
covers every verify task of the run (see ``factory.stages.verify``).
Not covered: other statuses (a ``timeout`` or ``fail`` is the program's doing, not the sandbox's).
"""

from __future__ import annotations

from collections import deque


class SandboxCircuitOpen(RuntimeError):
    """The share of ``sandbox_error`` over the recent window passed its bound."""


class ErrorWindow:
    """The last ``window`` sandbox runs and the share of ``sandbox_error`` among them (module doc)."""

    def __init__(self, max_error_share: float, window: int, min_runs: int):
        self.max_error_share, self.window, self.min_runs = max_error_share, window, min_runs
        self._recent: deque[bool] = deque(maxlen=window)
        self._errors_in_window = 0
        self.runs = 0
        self.errors = 0
        self.opened: str | None = None

    def record(self, errors: list[bool], last_error: str = "") -> str | None:
        """Add runs in order (True: ``sandbox_error``); the reason the breaker is open, or None."""
        for error in errors:
            if len(self._recent) == self.window:
                self._errors_in_window -= self._recent[0]
            self._recent.append(error)
            self._errors_in_window += error
            self.runs += 1
            self.errors += error
            if self.opened is None and len(self._recent) >= self.min_runs:
                share = self._errors_in_window / len(self._recent)
                if share > self.max_error_share:
                    self.opened = (
                        f"{self._errors_in_window} of the last {len(self._recent)} sandbox runs ({share:.1%}) were "
                        f"sandbox_error, above verify.circuit_breaker.max_error_share={self.max_error_share:.1%} "
                        f"(window {self.window} runs, min_runs {self.min_runs}); last error: {last_error or '?'}")
        return self.opened

    def summary(self) -> dict:
        """Totals for the stage's manifest entry."""
        circuit = "open" if self.opened else "closed"
        return {"sandbox_runs": self.runs, "sandbox_errors": self.errors, "circuit": circuit}
