"""The data plane at growing N: every stage after generation, then a refresh with 10% new prompts.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 25000 50000 100000 200000] [--median-words 4000]

For each N (samples), synthetic R1-like teacher outputs (:mod:`factory.synthetic_samples`: log-normal lengths
around ``--median-words`` with a tail to ``--max-words``; wrong, truncated, malformed, repeated, language-mixed
and near-duplicate chains) are written in the generation checkpoint format, chunk by chunk, so the real path runs
from there: verify (math-verify), reward off, infra/quality/language/rejection filters, dedup (exact + MinHash),
decontamination, the streaming commit; then `factory refresh` with 10% new prompts (their samples also
pre-written), which carries the parent's rows. It prints first the standalone math-verify rate per core
(:func:`verify_baseline`, the verify goal's reference, measured in the same process and run), then per N the
wall seconds of both runs, each stage's busy seconds and rows/s, the peak RSS of the driver (and its RSS as each
run starts: what earlier runs left in this process; the samples are prepared in a child process) and of every other process of the Ray session by
role (the largest process of each role, and how many there were; also less its resident shared pages, which
include the object-store objects a worker reads zero-copy), the CPU seconds each role used (sampled: busy seconds
count a batch's wall time, waiting for a core included; ``math_worker`` is verification's judging), the object
store's peak use and the bytes spilled and restored, and a timeline of the driver's memory (RSS, private, Python heap
blocks; every 5 s); then the growth ratio per doubling of N and the goals, met or not. The issue's goals: total time per
doubling <= 2.3x, every process's peak RSS at the largest N <= 1.25x its value at the smallest, every CPU stage
except verify >= 2,000 rows/s at the largest N, verify >= 0.8x the standalone rate per core x cores (compared per
core: rows per busy second, busy seconds being summed over workers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa

SAMPLES_PER_PROMPT = 4
CHUNK_PROMPTS = 512
TIMELINE_TICKS = 10  # the driver's memory timeline: one point every 10 samples (5 s)
EVAL_SEED = 7


def _role(proc) -> str:
    """A process's role in the session: driver, raylet, gcs, a Ray worker by its task/actor name, ..."""
    if proc.pid == os.getpid():
        return "driver"
    try:
        title = " ".join(proc.cmdline())[:200]
    except Exception:  # exited meanwhile
        return "gone"
    for name in ("raylet", "gcs_server", "dashboard", "log_monitor", "plasma", "runtime_env_agent", "math_worker"):
        if name in title:
            return name
    match = re.match(r"ray::(\w+)", title)
    return f"worker:{match.group(1)}" if match else "other"


class RssSampler(threading.Thread):
    """Peak RSS per process (this one and all its descendants: raylet, gcs, every Ray worker and actor,
    the math-verify children), reported per role as the largest process of that role, sampled every
    ``interval`` s; and, while Ray is up, the object store's peak bytes in use and the bytes spilled
    (the raylet's store stats: cumulative per session, so the peak over the run is the run's spill)."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self._done = interval, threading.Event()
        self.peaks: dict[str, int] = defaultdict(int)
        self.private: dict[str, int] = defaultdict(int)  # RSS less resident shared pages (object-store mmaps)
        self.processes: dict[str, set] = defaultdict(set)
        self.cpu: dict[str, float] = defaultdict(float)  # CPU seconds (user + system) per role, by sampled deltas
        self._cpu_seen: dict[int, float] = {}
        self.store = {"used_peak": 0, "spilled": 0, "restored": 0}
        # the driver every TIMELINE_TICKS samples: [seconds since start, RSS MB, private MB, Python heap blocks
        # in thousands], to tell growth that follows the run's progress (per-block or per-task bookkeeping)
        # from a step at one barrier, and Python objects from native memory (Ray's core worker, Arrow)
        self.driver_timeline: list[list[float]] = []

    def run(self) -> None:
        import psutil

        me, tick = psutil.Process(), 0
        for proc in [me] + me.children(recursive=True):  # CPU used before the run (e.g. preparing) is not counted
            try:
                times = proc.cpu_times()
            except Exception:
                continue
            self._cpu_seen[proc.pid] = times.user + times.system
        while not self._done.is_set():
            for proc in [me] + me.children(recursive=True):
                try:
                    memory, times = proc.memory_info(), proc.cpu_times()
                except Exception:
                    continue
                role = _role(proc)
                # a worker's CPU since the last sample goes to the role it has now (a process that exits
                # between two samples loses at most one interval's CPU)
                used = times.user + times.system
                self.cpu[role] += used - self._cpu_seen.get(proc.pid, 0.0)
                self._cpu_seen[proc.pid] = used
                self.peaks[role] = max(self.peaks[role], memory.rss)
                self.private[role] = max(self.private[role], memory.rss - getattr(memory, "shared", 0))
                self.processes[role].add(proc.pid)
                if role == "driver" and tick % TIMELINE_TICKS == 0:
                    self.driver_timeline.append([round(tick * self.interval), round(memory.rss / 2**20),
                                                 round((memory.rss - getattr(memory, "shared", 0)) / 2**20),
                                                 round(sys.getallocatedblocks() / 1000)])
            if tick % 4 == 0:
                self._store_stats()
            tick += 1
            self._done.wait(self.interval)

    def _store_stats(self) -> None:
        try:
            import ray
            from ray._private.internal_api import node_stats

            if not ray.is_initialized():
                return
            node = next(n for n in ray.nodes() if n["Alive"])
            stats = node_stats(node["NodeManagerAddress"], node["NodeManagerPort"], include_memory_info=False).store_stats
        except Exception:  # Ray starting or stopping between two samples
            return
        self.store["used_peak"] = max(self.store["used_peak"], stats.object_store_bytes_used)
        self.store["spilled"] = max(self.store["spilled"], stats.spilled_bytes_total)
        self.store["restored"] = max(self.store["restored"], stats.restored_bytes_total)

    def stop(self) -> tuple[dict, dict, dict, dict, dict, list]:
        self._done.set()
        self.join()
        return (dict(self.peaks), dict(self.private), {role: len(pids) for role, pids in self.processes.items()},
                dict(self.store), dict(self.cpu), self.driver_timeline)


def verify_baseline(median_words: int, max_words: int, seconds: float = 20.0) -> dict:
    """The standalone math-verify rate on one core: :func:`judge_math` (answer extraction, parse, verify) in
    this process over this benchmark's own synthetic samples, no Ray, no child process; the issue's goal
    for the verify stage is >= 0.8 x this rate per core x cores."""
    from factory import synthetic_samples
    from factory.think import split_completion
    from factory.verifiers.math_verifier import judge_math

    prompt_rows = synthetic_samples.prompts(400, seed=EVAL_SEED + 2)
    pairs = [(split_completion(s["completion"])[1], row["answer"]) for row, samples in
             zip(prompt_rows, synthetic_samples.sample_rows(prompt_rows, n=SAMPLES_PER_PROMPT, seed=EVAL_SEED,
                                                             median_words=median_words, max_words=max_words))
             for s in samples]
    judge_math(*pairs[0])  # imports sympy/latex2sympy outside the clock
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        judge_math(*pairs[done % len(pairs)])
        done += 1
    elapsed = time.perf_counter() - started
    return {"samples": done, "seconds": round(elapsed, 1), "rows_per_s_per_core": round(done / elapsed, 1),
            "cores": os.cpu_count()}


def _config(tmp: Path, tokenizer_dir: Path) -> dict:
    return {
        "run": {"name": "scale", "work_dir": str(tmp / "runs"), "seed": 0, "ray": {"num_cpus": 2}},
        "prompts": {"on_bad_row": "fail", "sources": [
            {"name": "word-problems", "kind": "jsonl", "path": str(tmp / "prompts.jsonl"), "task": "math",
             "id_field": "id", "prompt_field": "question", "reference_field": "answer"}]},
        "generation": {"engine": {"backend": "vllm", "model": str(tokenizer_dir)},
                       "sampling": {"n": SAMPLES_PER_PROMPT, "temperature": 0.6, "top_p": 0.95, "max_tokens": 32768,
                                    "seed": 0}},
        "reward": {"enabled": False},
        "filter": {"rejection": {"require_correct": True, "max_per_prompt": 2}},
        "decontam": {"ngram": 13, "benchmarks": [
            {"name": "planted-eval", "path": str(tmp / "eval.jsonl"), "format": "jsonl", "fields": ["question"]}]},
        "store": {"root": str(tmp / "datasets"), "dataset": "scale"},
        "eval": {"enabled": False},
    }


def _write_generation(cfg, prompt_rows: list[dict], median_words: int, max_words: int) -> None:
    """Ingest the prompt file and pre-write the samples of ``prompt_rows`` as generation checkpoint shards,
    CHUNK_PROMPTS prompts at a time (the text of all samples never sits in memory at once)."""
    import pyarrow.compute as pc

    from factory import synthetic_samples
    from factory.flow import run_dir
    from factory.stages.ingest import ingest

    by_id = {row["id"]: row for row in prompt_rows}
    table = ingest(cfg.prompts).table
    table = table.filter(pc.is_in(table["prompt_id"], value_set=pa.array(list(by_id))))
    for start in range(0, table.num_rows, CHUNK_PROMPTS):
        chunk = table.slice(start, CHUNK_PROMPTS)
        rows = [by_id[i] for i in chunk.column("prompt_id").to_pylist()]
        samples = synthetic_samples.sample_rows(rows, n=SAMPLES_PER_PROMPT, seed=EVAL_SEED, median_words=median_words,
                                                max_words=max_words)
        synthetic_samples.write_checkpoint(chunk, samples, cfg.generation, str(run_dir(cfg) / "generation"))


def _prepare(cfg, prompt_rows: list[dict], median_words: int, max_words: int) -> None:
    """:func:`_write_generation` in a child process, so that what preparing the samples allocates (and the
    allocator keeps) is not counted in the driver's memory during the runs that follow."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_write_generation, cfg, prompt_rows, median_words, max_words).result()


def _timed_run(cfg, incremental: bool) -> dict:
    import psutil

    from factory.flow import run_distill

    # The driver's RSS before the run: what this process already holds (earlier runs, retained allocator arenas),
    # so its peak during the run can be read net of it.
    driver_at_start = psutil.Process().memory_info().rss
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    summary = run_distill(cfg, incremental=incremental)
    seconds = time.perf_counter() - started
    peaks, private, processes, store, cpu, driver_timeline = sampler.stop()
    stages = {s["name"]: {"rows_in": s.get("rows_in"), "rows_out": s.get("rows_out"), "busy_s": s.get("busy_s"),
                          "wall_s": s.get("wall_s")} for s in summary.stages}
    return {"seconds": round(seconds, 1), "stages": stages, "driver_rss_at_start_mb": round(driver_at_start / 2**20),
            "peak_rss_mb": {k: round(v / 2**20) for k, v in peaks.items()},
            "peak_private_mb": {k: round(v / 2**20) for k, v in private.items()}, "processes": processes,
            "cpu_s": {k: round(v, 1) for k, v in sorted(cpu.items(), key=lambda item: -item[1])},
            "object_store_peak_mb": round(store["used_peak"] / 2**20),
            "spilled_mb": round(store["spilled"] / 2**20), "restored_mb": round(store["restored"] / 2**20),
            "kept": json.loads(Path(summary.manifest).read_text())["num_rows"],
            "driver_timeline": driver_timeline}


def measure(n_samples: int, median_words: int, max_words: int) -> dict:
    from factory import synthetic_samples, tiny
    from factory.config import parse_config

    with tempfile.TemporaryDirectory(prefix=f"scale-{n_samples}-") as tmp_name:
        tmp = Path(tmp_name)
        tokenizer_dir = tmp / "tokenizer"
        tiny.build_tokenizer().save_pretrained(tokenizer_dir)
        prompt_rows = synthetic_samples.prompts(n_samples // SAMPLES_PER_PROMPT, seed=EVAL_SEED)
        synthetic_samples.write_prompts_jsonl(prompt_rows, tmp / "prompts.jsonl")
        synthetic_samples.write_prompts_jsonl(synthetic_samples.eval_set(seed=EVAL_SEED), tmp / "eval.jsonl")
        cfg = parse_config(_config(tmp, tokenizer_dir))
        started = time.perf_counter()
        _prepare(cfg, prompt_rows, median_words, max_words)
        prepared = time.perf_counter() - started
        first = _timed_run(cfg, incremental=False)
        extra = synthetic_samples.prompts(len(prompt_rows) // 10, seed=EVAL_SEED + 1)
        extra = [{**row, "id": f"new-{row['id']}"} for row in extra]
        synthetic_samples.write_prompts_jsonl(prompt_rows + extra, tmp / "prompts.jsonl")
        _prepare(cfg, extra, median_words, max_words)
        refresh = _timed_run(cfg, incremental=True)
    return {"n": n_samples, "prepare_s": round(prepared, 1), "run": first, "refresh": refresh}


def _rates(run: dict) -> dict:
    """Per stage: rows per busy second (busy seconds are summed over workers, so this is a per-core rate)
    and rows per second of the stage's span (first input to last output, overlapping other stages)."""
    rates = {}
    for name, stage in run["stages"].items():
        if stage.get("rows_in"):
            rates[name] = {"per_busy_s": round(stage["rows_in"] / stage["busy_s"]) if stage.get("busy_s") else None,
                           "per_span_s": round(stage["rows_in"] / stage["wall_s"]) if stage.get("wall_s") else None}
    return rates


def _growth(results: list[dict], baseline: dict) -> dict:
    pairs = list(zip(results, results[1:]))
    total = [round((b["run"]["seconds"] + b["refresh"]["seconds"]) / (a["run"]["seconds"] + a["refresh"]["seconds"]), 2)
             for a, b in pairs]
    stage_growth = {}
    for name in results[-1]["run"]["stages"]:
        busy = [r["run"]["stages"].get(name, {}).get("busy_s") or 0 for r in results]
        if all(busy):
            stage_growth[name] = [round(b / a, 2) for a, b in zip(busy, busy[1:])]
    first, last = results[0], results[-1]

    def peak(result: dict, role: str) -> int:
        return max(result["run"]["peak_rss_mb"].get(role, 0), result["refresh"]["peak_rss_mb"].get(role, 0))

    roles = sorted(set(first["run"]["peak_rss_mb"]) & set(last["run"]["peak_rss_mb"]) - {"gone", "other"})
    rss = {role: {"smallest_mb": peak(first, role), "largest_mb": peak(last, role),
                  "ratio": round(peak(last, role) / max(peak(first, role), 1), 2)} for role in roles}
    if "peak_private_mb" in first["run"]:  # RSS less shared pages: what the process itself allocated
        for role, value in rss.items():
            small, large = (max(r[run]["peak_private_mb"].get(role, 0) for run in ("run", "refresh")) for r in (first, last))
            value.update(private_smallest_mb=small, private_largest_mb=large, private_ratio=round(large / max(small, 1), 2))
    rates = _rates(last["run"])
    verify_floor = 0.8 * baseline["rows_per_s_per_core"]
    cpu_stages = {name: rate["per_busy_s"] for name, rate in rates.items()
                  if name not in ("verify", "generate") and rate["per_busy_s"] is not None}
    goals = {
        "time_per_doubling<=2.3": all(ratio <= 2.3 for ratio in total),
        "peak_rss_ratio<=1.25": {role: value["ratio"] <= 1.25 for role, value in rss.items()},
        "cpu_stages>=2000_rows_per_busy_s": {name: rate >= 2000 for name, rate in cpu_stages.items()},
        "verify>=0.8x_baseline_per_core": {"verify_per_busy_s": rates.get("verify", {}).get("per_busy_s"),
                                           "floor": round(verify_floor, 1),
                                           "met": (rates.get("verify", {}).get("per_busy_s") or 0) >= verify_floor},
        "no_oom": True,  # reached only when every run finished
    }
    return {"time_per_doubling": total, "stage_busy_per_doubling": stage_growth,
            "peak_rss_largest_vs_smallest": rss, "rates_at_largest": rates, "verify_baseline": baseline,
            "goals": goals}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000, 200_000])
    parser.add_argument("--median-words", type=int, default=4000)
    parser.add_argument("--max-words", type=int, default=32000)
    parser.add_argument("--baseline-s", type=float, default=20.0, help="seconds of the standalone math-verify run")
    args = parser.parse_args()
    logging_quiet()
    baseline = verify_baseline(args.median_words, args.max_words, args.baseline_s)
    print(json.dumps({"verify_baseline": baseline}), flush=True)
    results = []
    for n in args.sizes:
        result = measure(n, args.median_words, args.max_words)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps({"growth": _growth(results, baseline), "sizes": args.sizes, "median_words": args.median_words}))
    return 0


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


if __name__ == "__main__":
    sys.exit(main())
