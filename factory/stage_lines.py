"""The console lines of a running pipeline: one when a stage starts, one when it ends (rows in/out,
drops, seconds), and the generation stage's rate and ETA while it runs.

Contract: a driver thread polls the run's meter (:func:`factory.pipeline.new_meter`) and the generation
progress actor (``extras["progress"]``, read at each poll: the stage makes it when applied) every ``every_s`` seconds and prints through :func:`factory.console.say`; a stage
"starts" when its first input batch is counted. End lines are printed by :func:`ended` once the
stages' dataset has executed (a streaming pipeline's stages overlap, so only then are their counts
final). The generation rate and ETA count from the first batch the engine generated (engine start-up
excluded), so a long model load does not inflate the ETA. Not covered: per-stage ETAs.
"""

from __future__ import annotations

import logging
import threading

from factory.console import say

log = logging.getLogger("factory")


def _generation_line(stats: dict) -> str | None:
    total, done, resumed = stats.get("prompts_total"), stats.get("prompts_done", 0), stats.get("prompts_resumed", 0)
    span, generated = stats.get("generation_s"), done - resumed
    if not total or not span or generated <= 0:
        return None
    eta = (total - done) * span / generated
    return (f"  generate: {done}/{total} prompts, {stats.get('samples_generated', 0) / span:.1f} samples/s, "
            f"{stats.get('output_tokens', 0) / span:.0f} output tok/s, ETA {eta:.0f} s")


class StageLines:
    """Context manager running the polling thread for stages ``names`` (see the module docstring)."""

    def __init__(self, meter, names: list[str], extras: dict | None = None, every_s: float = 10.0):
        self._meter, self._names, self._extras, self._every_s = meter, names, extras or {}, every_s
        self._started: set[str] = set()
        self._last_line: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="factory-stage-lines", daemon=True)

    def __enter__(self) -> "StageLines":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._poll(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            self._poll(final=False)

    def _poll(self, final: bool) -> None:
        import ray

        try:
            measured = ray.get(self._meter.snapshot.remote(), timeout=30)
        except Exception:  # the meter is a view: a slow or gone actor must not fail the run
            return
        new = [name for name in self._names
               if name not in self._started and measured.get(name, {}).get("first_start") is not None]
        if new:  # streaming stages start together: one line for those that started since the last poll
            self._started.update(new)
            say(f"▶ {', '.join(new)}: started")
        progress = self._extras.get("progress")  # the generation stage's actor, once it has made one
        if progress is not None and not final and "generate" in self._started:
            try:
                line = _generation_line(ray.get(progress.stats.remote(), timeout=30))
            except Exception:  # a view, as above; the log says why the line is missing
                log.warning("stage lines: no generation progress", exc_info=True)
                line = None
            if line and line != self._last_line:  # a line per new progress report, not one per poll
                self._last_line = line
                say(line)


def ended(records) -> None:
    """One line per finished stage: rows in → out, kept, drops (the largest reasons), busy seconds."""
    for record in records:
        dropped = sum(record.drops.values())
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(record.drops.items(), key=lambda kv: -kv[1])[:3])
        drops = f", dropped {dropped} ({reasons}{', …' if len(record.drops) > 3 else ''})" if dropped else ""
        say(f"✓ {record.name}: {record.rows_in} → {record.rows_out} rows, {record.kept_out} kept{drops}, "
            f"{record.busy_s:.1f} s")
