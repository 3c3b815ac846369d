"""Times `make demo` as a newcomer meets it and writes the README's transcript from that run.

    .venv/bin/python benchmarks/demo_run.py [--runs 2] [--readme]

Each round: a first demo with an empty cache (the tiny models, DeepSpeed's op cache and the model-identity
cache built from nothing: a fresh machine, install excluded) after `rm -rf runs`, then a second demo after
`rm -rf runs` with that cache kept. It runs `.venv/bin/factory run configs/demo.yaml`, which is what `make demo`
runs once `.venv` is installed. Prints per-run wall seconds, console lines, teacher and student accuracy, and the
medians; with --readme, replaces the block between the README's `demo-transcript` markers with the first
round's first-run console output (trimmed of the blank lines only) and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACTORY = REPO / ".venv" / "bin" / "factory"
START, END = "<!-- demo-transcript:start -->", "<!-- demo-transcript:end -->"


def demo(cache: Path) -> dict:
    """One `factory run configs/demo.yaml` after `rm -rf runs`, with ``cache`` as FACTORY_CACHE."""
    shutil.rmtree(REPO / "runs", ignore_errors=True)
    env = {**os.environ, "FACTORY_CACHE": str(cache), "TORCH_EXTENSIONS_DIR": str(cache / "torch_extensions"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0",
           "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    started = time.perf_counter()
    proc = subprocess.run([str(FACTORY), "run", "configs/demo.yaml"], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    console = (proc.stdout + proc.stderr).rstrip("\n").splitlines()
    if proc.returncode:
        raise SystemExit(f"demo failed (exit {proc.returncode}):\n" + "\n".join(console[-40:]))
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": round(seconds, 1), "console_lines": len(console), "teacher_acc": summary["teacher_acc"],
            "student_acc_after": summary["student_acc_after"], "console": console}


def write_readme(transcript: list[str], figures: dict) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    body = "\n".join(line for line in transcript if line.strip())
    block = (f"{START}\n```text\n$ make demo\n{body}\n```\n\n"
             f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/demo_run.py --readme` on this project's "
             f"2-core CPU machine (install excluded): first run, tiny models built from nothing, "
             f"{figures['first_s']:.0f} s; second run (`rm -rf runs`, cache kept) {figures['second_s']:.0f} s "
             f"(medians of {figures['rounds']}); student {figures['student_acc']:.3f} vs teacher "
             f"{figures['teacher_acc']:.3f} held-out accuracy.\n{END}")
    head, rest = text.split(START, 1)
    readme.write_text(head + block + rest.split(END, 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="rounds (first + second demo each)")
    parser.add_argument("--readme", action="store_true", help="write the transcript and figures into README.md")
    args = parser.parse_args()
    rounds = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="demo-cache-") as cache:
            first = demo(Path(cache))
            second = demo(Path(cache))
        rounds.append((first, second))
        print(json.dumps({"round": index, "first": {k: v for k, v in first.items() if k != "console"},
                          "second": {k: v for k, v in second.items() if k != "console"}}), flush=True)
    figures = {"rounds": args.runs, "first_s": statistics.median(r[0]["seconds"] for r in rounds),
               "second_s": statistics.median(r[1]["seconds"] for r in rounds),
               "console_lines": max(r[0]["console_lines"] for r in rounds),
               "teacher_acc": rounds[0][1]["teacher_acc"], "student_acc": rounds[0][1]["student_acc_after"]}
    print(json.dumps(figures))
    if args.readme:
        write_readme(rounds[0][0]["console"], figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
