"""Live progress and final throughput of a generation run, gathered from all actors.

One small Ray actor per ``generate`` call receives a report per finished batch, logs progress
(prompts done / total, samples/s, output tokens/s, ETA) at most every ``log_every_s`` seconds, and
keeps a stats file (atomically replaced) beside the generation checkpoint, for a user watching a
long run; its ``stats()`` at the end are the generate stage's stats in the manifest. Rates count only
newly generated samples (resumed ones are free); the clock starts when the actor does (engine start-up
is included, as a user waits for it too).

The engine-side figures compare models under one engine (``factory eval``): ``generation_s`` spans
the first generating batch's start to the last one's end over all actors (engine start-up excluded,
reported apart as ``engine_start_s``), ``engine_output_tokens_per_s`` divides the output tokens by
it, ``latency_*_s`` are per-request (one prompt's n samples) latencies, ``token_latency_p50_s`` the
median request latency per decode step (models whose answers differ in length compare by it), and
``peak_*_bytes`` are per-actor peaks (:mod:`factory.stages.generate.metrics`): the largest actor's
(``*_per_actor``), and the sum over actors. ``placements`` says where each actor ran and what Ray
gave it (node, resources, GPU ids), so a manifest shows whether the engines had their GPUs.

Adaptive sampling adds per-round figures (``rounds``: prompts, samples, correct samples and output
tokens of each round), the prompts' ``stop_reasons``, and the run's teacher-token budget
(:class:`TokenBudget`), shared by all actors through this one actor.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from factory.stages.generate.metrics import LatencySample

log = logging.getLogger("factory.generate")


class TokenBudget:
    """The run's teacher (completion) token budget, shared by every actor's rounds.

    A round reserves ``samples × max_tokens`` (its worst case) before it is sent and settles to what
    it used, so the run never spends more than the limit however many rounds are in flight.
    :meth:`reserve` grants as many samples as fit; when none fit it answers 0 if nothing is in
    flight (the budget is spent) and -1 otherwise (ask again once in-flight rounds have settled)."""

    def __init__(self, limit: int | None, spent: int = 0):
        self.limit = limit
        self.spent = spent
        self.reserved = 0

    def reserve(self, samples: int, max_tokens: int) -> int:
        if self.limit is None:
            return samples
        granted = min(samples, (self.limit - self.spent - self.reserved) // max_tokens)
        if granted <= 0:
            return -1 if self.reserved else 0
        self.reserved += granted * max_tokens
        return granted

    def settle(self, samples: int, max_tokens: int, used_tokens: int) -> None:
        if self.limit is not None:
            self.reserved -= samples * max_tokens
        self.spent += used_tokens

    def stats(self) -> dict:
        return {"token_budget": self.limit, "budget_spent_tokens": self.spent}


class ProgressState:
    """Counters and derived rates; plain Python so it is testable without Ray."""

    def __init__(self, total_prompts: int | None, clock=time.monotonic, budget: TokenBudget | None = None):
        self.total_prompts = total_prompts
        self.budget = budget or TokenBudget(None)
        self._clock = clock
        self.started = clock()
        self.prompts_done = 0
        self.prompts_resumed = 0
        self.samples = 0
        self.output_tokens = 0
        self.prompt_tokens = 0
        self.statuses: Counter[str] = Counter()
        self.latencies = LatencySample()
        self.token_latencies = LatencySample()
        self.first_start: float | None = None
        self.last_finish: float | None = None
        self.engine_start_s: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self.peak_device: dict[str, int] = {}
        self.placements: dict[str, dict] = {}
        self.rounds: dict[int, Counter] = {}
        self.stop_reasons: Counter[str] = Counter()

    def add(self, report: dict) -> None:
        """Add one batch report (keys: prompts, resumed, samples, output_tokens, prompt_tokens,
        statuses; and from actors that generated: actor, started_at, finished_at (epoch seconds),
        latencies_s, token_latencies_s, engine_start_s, peak_rss_bytes, device_bytes)."""
        self.prompts_done += report["prompts"]
        self.prompts_resumed += report["resumed"]
        self.samples += report["samples"]
        self.output_tokens += report["output_tokens"]
        self.prompt_tokens += report["prompt_tokens"]
        self.statuses.update(report["statuses"])
        self.latencies.extend(report.get("latencies_s") or [])
        self.token_latencies.extend(report.get("token_latencies_s") or [])
        for number, figures in (report.get("rounds") or {}).items():
            self.rounds.setdefault(int(number), Counter()).update(figures)
        self.stop_reasons.update(report.get("stop_reasons") or {})
        if report.get("started_at") is not None:
            start, finish = report["started_at"], report["finished_at"]
            self.first_start = start if self.first_start is None else min(self.first_start, start)
            self.last_finish = finish if self.last_finish is None else max(self.last_finish, finish)
        actor = report.get("actor")
        if actor is None:
            return
        if report.get("engine_start_s") is not None:
            self.engine_start_s[actor] = report["engine_start_s"]
        if report.get("placement") is not None:
            self.placements[actor] = report["placement"]
        for peaks, key in ((self.peak_rss, "peak_rss_bytes"), (self.peak_device, "device_bytes")):
            if report.get(key) is not None:
                peaks[actor] = max(peaks.get(actor, 0), report[key])

    def engine_stats(self) -> dict:
        """The engine-side figures (see the module docstring); None where nothing was measured."""
        span = None if self.first_start is None else max(self.last_finish - self.first_start, 1e-9)
        p50, p90 = self.latencies.percentile(50), self.latencies.percentile(90)
        return {
            "generation_s": None if span is None else round(span, 3),
            "engine_output_tokens_per_s": None if span is None else round(self.output_tokens / span, 3),
            "engine_samples_per_s": None if span is None else round(self.samples / span, 3),
            "latency_mean_s": _round(self.latencies.mean()),
            "latency_p50_s": _round(p50),
            "latency_p90_s": _round(p90),
            "token_latency_p50_s": _round(self.token_latencies.percentile(50)),
            "engine_start_s": _round(max(self.engine_start_s.values(), default=None)),
            "actors": len(self.peak_rss) or None,
            "peak_rss_bytes_per_actor": max(self.peak_rss.values(), default=None),
            "peak_rss_bytes": sum(self.peak_rss.values()) if self.peak_rss else None,
            "peak_device_bytes_per_actor": max(self.peak_device.values(), default=None),
            "peak_device_bytes": sum(self.peak_device.values()) if self.peak_device else None,
        }

    def stats(self) -> dict:
        """Snapshot for logs and the manifest."""
        elapsed = max(self._clock() - self.started, 1e-9)
        generated = self.prompts_done - self.prompts_resumed
        eta = None
        if self.total_prompts and generated:
            eta = (self.total_prompts - self.prompts_done) * elapsed / generated
        return {
            "prompts_done": self.prompts_done,
            "prompts_total": self.total_prompts,
            "prompts_resumed": self.prompts_resumed,
            "samples_generated": self.samples,
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "status_counts": dict(self.statuses),
            "elapsed_s": round(elapsed, 3),
            "samples_per_s": round(self.samples / elapsed, 3),
            "output_tokens_per_s": round(self.output_tokens / elapsed, 3),
            "eta_s": None if eta is None else round(eta, 1),
            **self.engine_stats(),
            "placements": [self.placements[actor] for actor in sorted(self.placements)] or None,
            **self.adaptive_stats(),
        }

    def adaptive_stats(self) -> dict:
        """Per-round figures, stop reasons and the token budget (adaptive sampling; empty otherwise)."""
        if not self.rounds and not self.stop_reasons:
            return {}
        rounds = [{"round": number, **{key: self.rounds[number].get(key, 0)
                                       for key in ("prompts", "samples", "correct", "output_tokens")}}
                  for number in sorted(self.rounds)]
        budget = self.budget.stats() if self.budget.limit is not None else {}
        return {"rounds": rounds, "stop_reasons": dict(sorted(self.stop_reasons.items())), **budget}

    def line(self) -> str:
        """One human-readable progress line."""
        s = self.stats()
        total = s["prompts_total"] if s["prompts_total"] is not None else "?"
        eta = "?" if s["eta_s"] is None else f"{s['eta_s']:.0f}s"
        return (
            f"generation: {s['prompts_done']}/{total} prompts ({s['prompts_resumed']} resumed), "
            f"{s['samples_per_s']:.2f} samples/s, {s['output_tokens_per_s']:.1f} output tok/s, ETA {eta}"
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _progress_actor_class():
    import ray

    @ray.remote(num_cpus=0, max_restarts=0)
    class GenerationProgressActor:
        def __init__(self, total_prompts: int | None, stats_path: str | None, log_every_s: float = 5.0):
            logging.basicConfig(level=logging.INFO)
            self._state = ProgressState(total_prompts)
            self._stats_path = stats_path
            self._log_every_s = log_every_s
            self._last_log = 0.0

        def report(self, batch_report: dict) -> None:
            self._state.add(batch_report)
            now = time.monotonic()
            done = self._state.total_prompts is not None and self._state.prompts_done >= self._state.total_prompts
            if done or now - self._last_log >= self._log_every_s:
                self._last_log = now
                log.info(self._state.line())
            if self._stats_path:
                import json

                from factory.atomic import write_atomic

                write_atomic(self._stats_path, json.dumps(self._state.stats(), indent=2, sort_keys=True).encode())

        def stats(self) -> dict:
            return self._state.stats()

        def set_budget(self, limit: int, spent_tokens: int) -> None:
            self._state.budget = TokenBudget(limit, spent_tokens)

        def reserve(self, samples: int, max_tokens: int) -> int:
            return self._state.budget.reserve(samples, max_tokens)

        def settle(self, samples: int, max_tokens: int, used_tokens: int) -> None:
            self._state.budget.settle(samples, max_tokens, used_tokens)

    return GenerationProgressActor


class _LazyActorClass:
    """``GenerationProgress.options(...).remote(...)`` without importing ray at module import."""

    def options(self, **kwargs):
        return _progress_actor_class().options(**kwargs)

    def remote(self, *args, **kwargs):
        return _progress_actor_class().remote(*args, **kwargs)


GenerationProgress = _LazyActorClass()
