"""Small steps in the driver vs in Ray Data tasks, at the demo's sizes (``factory.runtime.runs_in_process``).

Two steps of every run take a few seconds of work at the demo's size but run as Ray Data executions: the
``prompts`` side table (a groupby by prompt over the narrow columns of every row the commit took,
:func:`factory.commit.write_prompt_table`) and training's token-length pass (:func:`factory.train.run._measure`).
This script times each the two ways, through the factory's own functions, alternating the ways round by
round in one local Ray session of the demo's size (4 logical CPUs): the baseline is the Ray Data path
(``IN_PROCESS_MAX_ROWS`` set below the row count), the other the in-process path (the default at these sizes).
It prints each round, the medians and the ratio Ray Data ÷ in process, and checks that both ways give
the same table.

usage: python benchmarks/bench_small_steps.py [--prompts 1200] [--samples-per-prompt 2] [--kept 660] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import factory.runtime as runtime
from factory.commit import PROMPT_SAMPLE_COLUMNS, _scratch_dir, write_prompt_table
from factory.config import FactoryConfig
from factory.store import SnapshotStore


class _Counts:
    """What :func:`write_prompt_table` reads of the commit's sink: how many rows it took."""

    def __init__(self, rows: int):
        self.counts = {"kept": rows, "dropped": 0}


def _scratch_rows(prompts: int, per_prompt: int) -> pa.Table:
    rows = [{"prompt_id": f"p{i:06d}", "task": "math", "source": "synthetic", "sample_index": j, "sample_round": 0,
             "verdict": "correct" if (i + j) % 3 else "wrong", "gen_status": "ok", "completion_tokens": 100 + j}
            for i in range(prompts) for j in range(per_prompt)]
    return pa.Table.from_pylist(rows).select(list(PROMPT_SAMPLE_COLUMNS))


def _training_file(path: Path, kept: int) -> None:
    messages = [[{"role": "user", "content": f"What is {i} + {i + 3}?"},
                 {"role": "assistant", "content": f"<think>\n{i} + {i + 3} = {2 * i + 3}. " * 3 + "</think>\n"
                  f"\\boxed{{{2 * i + 3}}}"}] for i in range(kept)]
    pq.write_table(pa.table({"sample_id": [f"s{i:06d}" for i in range(kept)], "messages": messages,
                             "pass_rate": [0.5] * kept}), path)


def side_table(root: str, scratch: pa.Table, cfg: FactoryConfig) -> tuple[float, pa.Table]:
    staged = SnapshotStore(root, "bench").begin(parent=None)
    try:
        pq.write_table(scratch, f"{_scratch_dir(staged)}/000000-00000.parquet")
        began = time.perf_counter()
        write_prompt_table(staged, cfg, _Counts(scratch.num_rows))
        seconds = time.perf_counter() - began
        table = pq.read_table(staged.side_dir("prompts")).sort_by("prompt_id")
    finally:
        staged.abort()
    return seconds, table


def lengths(files: list[str], tokenizer: str) -> tuple[float, pa.Table]:
    from factory.train.run import _measure

    began = time.perf_counter()
    table = _measure(files, tokenizer, None, None)
    return time.perf_counter() - began, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1200)
    parser.add_argument("--samples-per-prompt", type=int, default=2)
    parser.add_argument("--kept", type=int, default=660, help="samples in the training snapshot")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import logging

    import ray

    from factory.models import resolve_model

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # each execution's plan and progress lines

    tokenizer = resolve_model("tiny:student")
    cfg = FactoryConfig.model_validate({"run": {"name": "bench"}, "generation": {},
                                        "prompts": {"sources": [{"name": "s", "kind": "synthetic", "synthetic_n": 1}]},
                                        "store": {"root": "unused", "dataset": "bench"}})
    scratch = _scratch_rows(args.prompts, args.samples_per_prompt)
    default = runtime.IN_PROCESS_MAX_ROWS
    ways = {"ray_data": -1, "in_process": default}
    times: dict[str, dict[str, list[float]]] = {step: {way: [] for way in ways} for step in ("side_table", "lengths")}
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(Path(tmp) / "train-0.parquet")]
        _training_file(Path(files[0]), args.kept)
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        try:
            for round_ in range(args.rounds):
                outputs = {}
                for way, limit in (ways.items() if round_ % 2 == 0 else reversed(ways.items())):
                    runtime.IN_PROCESS_MAX_ROWS = limit
                    for step, run in (("side_table", lambda: side_table(f"{tmp}/store", scratch, cfg)),
                                      ("lengths", lambda: lengths(files, tokenizer))):
                        seconds, table = run()
                        times[step][way].append(seconds)
                        outputs[(step, way)] = table
                    print(f"round {round_ + 1} {way:10s}: side table {times['side_table'][way][-1]:6.2f} s, "
                          f"lengths {times['lengths'][way][-1]:6.2f} s", flush=True)
                for step in times:
                    if not outputs[(step, "ray_data")].equals(outputs[(step, "in_process")]):
                        raise SystemExit(f"{step}: the two ways gave different tables")
        finally:
            runtime.IN_PROCESS_MAX_ROWS = default
            ray.shutdown()
    print(f"\n{scratch.num_rows} side-table rows ({args.prompts} prompts), {args.kept} training samples, "
          f"{args.rounds} rounds, medians:")
    for step, by_way in times.items():
        ray_s, local_s = (statistics.median(by_way[w]) for w in ways)
        print(f"  {step:10s}: Ray Data {ray_s:6.2f} s, in process {local_s:6.2f} s, "
              f"Ray Data / in process {ray_s / local_s:5.1f}x")


if __name__ == "__main__":
    main()
