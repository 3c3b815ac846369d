"""The demo's generation stage alone, under config overrides: where its time goes.

    .venv/bin/python benchmarks/bench_demo_generate.py TAG [KEY=VALUE ...]

Runs the Generate stage of ``configs/demo.yaml`` (checkpointing off) on the demo's first 1,200 prompts in a
local Ray instance of 4 logical CPUs, as ``factory run`` does, and prints the wall time, the engine start-up
(actor start, vLLM imports, engine-core and worker spawns, model load), the output tokens and the engine's
output tokens/s after start-up. Overrides are ``--set`` assignments, e.g. ``generation.engine.max_num_seqs=512``.
Compare runs of the same commit on a quiet machine: the samples are seeded per prompt, so every run draws the
same tokens (the printed token count says so).
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    import ray

    from factory.config import load_config
    from factory.pipeline import run_small
    from factory.stages.generate import Generate, new_progress
    from factory.stages.ingest import ingest

    tag, overrides = argv[0], tuple(argv[1:]) + ("generation.checkpoint.enabled=false",)
    cfg = load_config("configs/demo.yaml", overrides)
    prompts = ingest(cfg.prompts).table.slice(0, 1200)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        began = time.perf_counter()
        progress = new_progress(prompts.num_rows)
        table, _ = run_small([Generate], cfg, prompts, extras={"progress": progress})
        stats = ray.get(progress.stats.remote())
        wall = time.perf_counter() - began
    finally:
        ray.shutdown()
    tokens = sum(table.column("completion_tokens").to_pylist())
    print(f"{tag}: wall {wall:.1f} s, engine start {stats.get('engine_start_s', 0):.1f} s, {table.num_rows} samples, "
          f"{tokens} output tokens, engine {stats.get('engine_output_tokens_per_s', 0):.0f} output tok/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
