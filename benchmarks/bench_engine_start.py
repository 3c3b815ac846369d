"""vLLM engine start-up and decoding on CPU: vLLM's own ``AsyncLLM`` start vs ``start_async_llm``.

    .venv/bin/python benchmarks/bench_engine_start.py [--rounds 2] [--requests 512]

Each measurement is a fresh process (as each engine actor is): it imports vLLM, starts an ``AsyncLLM``
on the demo's teacher with the demo's engine arguments, then decodes ``--requests`` seeded requests of
2 samples, 160 tokens at most, all in flight at once. The baseline is ``AsyncLLM.from_engine_args`` as
vLLM runs it (on CPU, its engine core spawns one more worker process); ours is
``factory.engines.vllm_engine.start_async_llm`` (the worker inside the engine core). Modes alternate
within a round, and the printed ratios are of medians over rounds. Both draw the same tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

MODES = ("vllm_default", "factory")


def measure(mode: str, requests: int) -> dict:
    """One engine: seconds to import, to start, to decode; output tokens."""
    began = time.perf_counter()
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from factory.config import load_config
    from factory.engines.vllm_engine import engine_kwargs, start_async_llm
    from factory.models import resolve_model

    imported = time.perf_counter()
    cfg = load_config("configs/demo.yaml").generation.engine
    args = AsyncEngineArgs(**engine_kwargs(cfg, resolve_model(cfg.model)), disable_log_stats=True)
    llm = AsyncLLM.from_engine_args(args) if mode == "vllm_default" else start_async_llm(args)
    started = time.perf_counter()

    async def one(i: int) -> int:
        params = SamplingParams(n=2, temperature=0.6, top_p=0.95, max_tokens=160, seed=i,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        final = None
        async for final in llm.generate({"prompt_token_ids": [1 + (i * 7 + j) % 40 for j in range(24)]}, params, str(i)):
            pass
        return sum(len(out.token_ids) for out in final.outputs)

    async def decode_all() -> int:
        return sum(await asyncio.gather(*(one(i) for i in range(requests))))

    tokens = asyncio.run(decode_all())
    decoded = time.perf_counter()
    llm.shutdown()
    return {"import_s": imported - began, "start_s": started - imported, "decode_s": decoded - started, "tokens": tokens}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print("RESULT " + json.dumps(measure(opts.child, opts.requests)), flush=True)
        return 0
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(opts.rounds):
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--requests", str(opts.requests)],
                                 capture_output=True, text=True, check=True).stdout
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            runs[mode].append(result)
            print(f"{mode}: import {result['import_s']:.1f} s, start {result['start_s']:.1f} s, decode "
                  f"{result['decode_s']:.1f} s, {result['tokens']} tokens", flush=True)
    median = {mode: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for mode, rs in runs.items()}
    base, ours = median["vllm_default"], median["factory"]
    print(f"start: {base['start_s']:.1f} s -> {ours['start_s']:.1f} s ({base['start_s'] / ours['start_s']:.2f}x faster); "
          f"decode {base['tokens'] / base['decode_s']:.0f} -> {ours['tokens'] / ours['decode_s']:.0f} output tok/s "
          f"({base['decode_s'] / ours['decode_s']:.2f}x); same tokens: {base['tokens'] == ours['tokens']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
