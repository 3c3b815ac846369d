"""Verifier throughput on this machine, each against a baseline measured in the same run.

math: ``MathVerifier`` (child process, per-sample limit) vs math-verify called directly in-process
      (no time limit), on GSM8K references judged against themselves.
verify stage: the stage's callable (``Verify``: rows to Python, the think split, one pipelined
      ``judge_many`` per batch of 64, the format check) vs ``judge_math`` in-process on the same answers,
      over the scale benchmark's synthetic R1-length chains (~25 KB; needs no data files).
code: HumanEval canonical solutions through the sandbox vs a plain unsandboxed ``python -c``
      subprocess, both with a pool of 2 concurrent runs.
Run: ``.venv/bin/python benchmarks/bench_verifiers.py [--math-samples 500] [--stage-only]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import queue
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from factory.verifiers import MathVerifier, build_program, verify_code
from factory.verifiers.math_verifier import reference_answer
from factory.verifiers.sandbox import default_python

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def rate(count: int, seconds: float) -> float:
    return count / seconds


def bench_math(references: list[str]) -> tuple[float, float]:
    from math_verify import parse, verify

    started = time.perf_counter()
    for reference in references:
        gold = f"${reference_answer(reference)}$"
        assert verify(parse(gold, parsing_timeout=None), parse(gold, parsing_timeout=None), timeout_seconds=None)
    direct = rate(len(references), time.perf_counter() - started)
    with MathVerifier(timeout_s=5.0) as verifier:
        verifier("\\boxed{1}", "1")  # worker start-up is not part of the steady-state rate
        started = time.perf_counter()
        for reference in references:
            assert verifier(reference, reference).status == "correct"
        wrapped = rate(len(references), time.perf_counter() - started)
    return direct, wrapped


def bench_verify_stage(prompts: int = 400, batch_size: int = 64) -> tuple[float, float]:
    import pyarrow as pa

    from factory import synthetic_samples
    from factory.stages.verify import Verify, VerifyConfig
    from factory.think import split_completion
    from factory.verifiers.math_verifier import judge_math

    prompt_rows = synthetic_samples.prompts(prompts, seed=7)
    samples = synthetic_samples.sample_rows(prompt_rows, n=4, seed=3, median_words=4000, max_words=32000)
    rows = [{"task": "math", "prompt": p["question"], "completion": s["completion"], "answer": None,
             "reference": p["answer"], "tests": None, "entry_point": None, "gen_status": "ok"}
            for p, per_prompt in zip(prompt_rows, samples) for s in per_prompt]
    pairs = [(split_completion(row["completion"])[1], row["reference"]) for row in rows]
    judge_math(*pairs[0])  # imports outside the clock
    started = time.perf_counter()
    for pair in pairs:
        judge_math(*pair)
    direct = rate(len(pairs), time.perf_counter() - started)
    table = pa.Table.from_pylist(rows)
    stage = Verify(VerifyConfig(batch_size=batch_size))
    stage(table.slice(0, batch_size))  # worker start-up outside the clock
    started = time.perf_counter()
    for start in range(0, table.num_rows, batch_size):
        stage(table.slice(start, batch_size))
    return direct, rate(table.num_rows, time.perf_counter() - started)


def bench_code(tasks: list[dict], parallel: int = 2) -> tuple[float, float]:
    python = default_python()

    def plain(task):
        program = build_program(task["canonical_solution"], task["test"], task["entry_point"], task["prompt"])
        return subprocess.run([python, "-I", "-S", "-c", program], capture_output=True, timeout=30).returncode

    free_slots: queue.Queue = queue.Queue()
    for slot in range(parallel):
        free_slots.put(slot)

    def sandboxed(task):
        slot = free_slots.get()
        try:
            return verify_code(task["canonical_solution"], task["test"], task["entry_point"], task["prompt"],
                               slot=slot)
        finally:
            free_slots.put(slot)

    results = []
    for run in (plain, sandboxed):
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            outcomes = list(pool.map(run, tasks))
        results.append(rate(len(tasks), time.perf_counter() - started))
        bad = [o for o in outcomes if o != 0 and getattr(o, "status", None) != "correct"]
        assert not bad, bad[:3]
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--math-samples", type=int, default=500)
    parser.add_argument("--stage-only", action="store_true", help="only the verify-stage figure (no data files)")
    args = parser.parse_args()
    direct, staged = bench_verify_stage()
    print(f"verify judge_math in-process {direct:8.1f} samples/s   (R1-length synthetic chains)")
    print(f"verify stage callable        {staged:8.1f} samples/s   ratio {staged / direct:.2f}x")
    if args.stage_only:
        return
    with open(DATA / "gsm8k" / "test.jsonl") as handle:
        references = [json.loads(line)["answer"] for line in handle][: args.math_samples]
    with gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt") as handle:
        tasks = [json.loads(line) for line in handle]
    direct, wrapped = bench_math(references)
    print(f"math  direct math-verify     {direct:8.1f} samples/s")
    print(f"math  MathVerifier (limit)   {wrapped:8.1f} samples/s   ratio {wrapped / direct:.2f}x")
    plain, sandboxed = bench_code(tasks)
    print(f"code  plain subprocess (x2)  {plain:8.1f} samples/s")
    print(f"code  sandbox bwrap (x2)     {sandboxed:8.1f} samples/s   ratio {sandboxed / plain:.2f}x")


if __name__ == "__main__":
    main()
