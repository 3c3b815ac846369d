"""The data plane at growing N: every stage after generation, then a refresh with 10% new prompts.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 25000 50000 100000 200000] [--median-words 4000]

For each N (samples), synthetic R1-like teacher outputs (:mod:`factory.synthetic_samples`: log-normal lengths
around ``--median-words`` with a tail to ``--max-words``; wrong, truncated, malformed, repeated, language-mixed
and near-duplicate chains) are written in the generation checkpoint format, chunk by chunk, so the real path runs
from there: verify (math-verify), reward off, infra/quality/language/rejection filters, dedup (exact + MinHash),
decontamination, the streaming commit; then `factory refresh` with 10% new prompts (their samples also
pre-written), which carries the parent's rows. It prints, per N, the wall seconds of both runs, each stage's
busy seconds and rows/s, the peak RSS of the driver and of every other process of the Ray session by role, and
the object-store bytes spilled; then the growth ratio per doubling of N. The issue's goals: total time per
doubling <= 2.3x, every process's peak RSS at the largest N <= 1.25x its value at the smallest, every CPU stage
except verify >= 2,000 rows/s at the largest N.
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
    """Peak RSS per role over this process and all its descendants, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.peaks, self._done = interval, defaultdict(int), threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._done.is_set():
            for proc in [me] + me.children(recursive=True):
                try:
                    rss = proc.memory_info().rss
                except Exception:
                    continue
                role = _role(proc)
                self.peaks[role] = max(self.peaks[role], rss)
            self._done.wait(self.interval)

    def stop(self) -> dict:
        self._done.set()
        self.join()
        return dict(self.peaks)


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


def _spilled_bytes() -> int:
    root = Path(tempfile.gettempdir()) / "ray" / "session_latest" / "ray_spilled_objects"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _timed_run(cfg, incremental: bool) -> dict:
    from factory.flow import run_distill

    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    summary = run_distill(cfg, incremental=incremental)
    seconds = time.perf_counter() - started
    peaks = sampler.stop()
    stages = {s["name"]: {"rows_in": s.get("rows_in"), "rows_out": s.get("rows_out"), "busy_s": s.get("busy_s"),
                          "wall_s": s.get("wall_s")} for s in summary.stages}
    return {"seconds": round(seconds, 1), "stages": stages, "peak_rss_mb": {k: round(v / 2**20) for k, v in peaks.items()},
            "kept": json.loads(Path(summary.manifest).read_text())["num_rows"]}


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
        _write_generation(cfg, prompt_rows, median_words, max_words)
        prepared = time.perf_counter() - started
        first = _timed_run(cfg, incremental=False)
        first["spilled_mb"] = round(_spilled_bytes() / 2**20)
        extra = synthetic_samples.prompts(len(prompt_rows) // 10, seed=EVAL_SEED + 1)
        extra = [{**row, "id": f"new-{row['id']}"} for row in extra]
        synthetic_samples.write_prompts_jsonl(prompt_rows + extra, tmp / "prompts.jsonl")
        _write_generation(cfg, extra, median_words, max_words)
        refresh = _timed_run(cfg, incremental=True)
    return {"n": n_samples, "prepare_s": round(prepared, 1), "run": first, "refresh": refresh}


def _growth(results: list[dict]) -> dict:
    pairs = list(zip(results, results[1:]))
    total = [round((b["run"]["seconds"] + b["refresh"]["seconds"]) / (a["run"]["seconds"] + a["refresh"]["seconds"]), 2)
             for a, b in pairs]
    first, last = results[0], results[-1]
    roles = set(first["run"]["peak_rss_mb"]) & set(last["run"]["peak_rss_mb"])
    rss = {role: round(max(last["run"]["peak_rss_mb"][role], last["refresh"]["peak_rss_mb"].get(role, 0))
                       / max(first["run"]["peak_rss_mb"][role], 1), 2) for role in sorted(roles)}
    rates = {}
    for name, stage in last["run"]["stages"].items():
        if stage.get("busy_s") and stage.get("rows_in"):
            rates[name] = round(stage["rows_in"] / stage["busy_s"])
    return {"time_per_doubling": total, "peak_rss_largest_over_smallest": rss, "rows_per_busy_s_at_largest": rates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000, 200_000])
    parser.add_argument("--median-words", type=int, default=4000)
    parser.add_argument("--max-words", type=int, default=32000)
    args = parser.parse_args()
    logging_quiet()
    results = []
    for n in args.sizes:
        result = measure(n, args.median_words, args.max_words)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps({"growth": _growth(results), "sizes": args.sizes, "median_words": args.median_words}))
    return 0


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


if __name__ == "__main__":
    sys.exit(main())
