"""Benchmark adaptive sampling ("sample until k verified") against the smallest fixed n that reaches
the same prompt coverage, in one run: same prompts, same teacher (tiny:teacher, vLLM CPU), same verifier.

Figures, per arm: prompt coverage (prompts with >= 1 kept sample), teacher tokens (completion tokens
of every sample drawn), kept samples and wall-clock. A kept sample is what the commit would keep
under the same data policy for both arms: verified correct, at most k per prompt (``filter.rejection``
with ``require_correct`` and ``max_per_prompt: k``). Steps:

1. adaptive: ``AdaptiveGenerate`` (k, cap, round size), verification in the loop;
2. fixed n = cap (``Generate`` + ``VerifyStage``): the teacher's sampled pass@1 / pass@cap, and the
   coverage each n <= cap would reach from the first n samples of each prompt (sample i is drawn
   with seed + i whatever n), which picks the smallest n reaching the adaptive coverage;
3. fixed n = that n, timed (stepping n up if its own coverage falls short).

Printed as ratios against the fixed-n baseline measured in the same run: teacher tokens per kept
sample, fixed / adaptive (goal >= 1.5), and wall-clock, adaptive / fixed (goal <= 1.0), with and
without the engine start. Each arm starts its own engine; an untimed warm-up run (n = 1 over a few
prompts) starts one first, so that neither arm pays the process's cold first start (imports, page
cache), which the arm run first used to (44.6 s against 27.0 s on 2026-12-01). Also printed: the
adaptive policy replayed on the fixed n = cap samples (sample i has the same seed in both arms), its
draws without the engine's run-to-run noise.

Run: flock /tmp/factory-heavy.lock .venv/bin/python benchmarks/bench_adaptive.py [--prompts 128]
Figures on a shared 2-core machine are noisy; compare the ratios, not absolute rates.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter, defaultdict

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _prompts(n: int, seed: int):
    import pyarrow as pa

    from factory import schema, synthetic

    rows = [dict(p, source="synthetic", source_row=i + 1) for i, p in enumerate(synthetic.make_problems(n, seed=seed))]
    return schema.conform(pa.Table.from_pylist(rows), schema.PROMPT_SCHEMA)


def _config(args, *, n: int, adaptive: bool):
    from factory.config import FactoryConfig

    generation = {
        "engine": {"backend": "vllm", "model": args.model, "dtype": "float32", "max_model_len": 512,
                   "enforce_eager": True, "max_num_seqs": 256},
        "sampling": {"n": n, "temperature": args.temperature, "top_p": 0.95, "max_tokens": args.max_tokens,
                     "seed": 0},
        "resources": {"batch_size": args.batch_size},
        "checkpoint": {"enabled": False},
    }
    if adaptive:
        generation["adaptive"] = {"mode": "adaptive", "k": args.k, "max_samples": args.cap,
                                  "round_size": args.round_size, "round_quantile": args.round_quantile}
    return FactoryConfig.model_validate({
        "run": {"name": "bench-adaptive"}, "prompts": {"sources": [{"name": "s", "kind": "synthetic", "synthetic_n": 1}]},
        "generation": generation, "store": {"root": "unused", "dataset": "unused"},
    })


def _arm(cfg, prompts, adaptive: bool) -> dict:
    """Run one arm; its rows (prompt_id, sample_index, verdict, completion_tokens), stats and wall-clock."""
    from factory.pipeline import run_small
    from factory.stages.generate import AdaptiveGenerate, Generate
    from factory.stages.verify import VerifyStage

    stages = [AdaptiveGenerate] if adaptive else [Generate, VerifyStage]
    started = time.perf_counter()
    table, records = run_small(stages, cfg, prompts, extras={"total_prompts": prompts.num_rows})
    wall = time.perf_counter() - started
    rows = table.select(["prompt_id", "sample_index", "verdict", "completion_tokens", "prompt_tokens"]).to_pylist()
    return {"rows": rows, "stats": records[0].stats, "wall_s": wall}


def _per_prompt(rows: list[dict], first: int | None = None) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["sample_index"]):
        if first is None or row["sample_index"] < first:
            grouped[row["prompt_id"]].append(row)
    return grouped


def _figures(rows: list[dict], k: int, prompts: int, first: int | None = None) -> dict:
    grouped = _per_prompt(rows, first)
    kept = sum(min(k, sum(r["verdict"] == "correct" for r in samples)) for samples in grouped.values())
    covered = sum(any(r["verdict"] == "correct" for r in samples) for samples in grouped.values())
    tokens = sum(r["completion_tokens"] or 0 for samples in grouped.values() for r in samples)
    prompt_tokens = sum(r["prompt_tokens"] or 0 for samples in grouped.values() for r in samples)
    samples = sum(len(s) for s in grouped.values())
    return {"coverage": covered / prompts, "covered": covered, "kept": kept, "tokens": tokens, "samples": samples,
            "prompt_tokens": prompt_tokens, "tokens_per_kept": tokens / kept if kept else float("inf")}


def _replay(rows: list[dict], cfg, prompts: int) -> dict:
    """The adaptive policy run over the fixed n = cap samples of each prompt, in index order."""
    from factory.stages.generate.policy import PromptState, next_round_size, stop_reason

    policy, drawn = cfg.generation.adaptive, []
    for samples in _per_prompt(rows).values():
        verdicts: list[str] = []
        state = PromptState()
        while stop_reason(state, policy) is None and len(verdicts) < len(samples):
            round_ = samples[len(verdicts):len(verdicts) + next_round_size(state, policy)]
            drawn += round_
            verdicts += [r["verdict"] for r in round_]
            state = PromptState.of(verdicts, ["ok"] * len(verdicts), [state.rounds] * len(verdicts),
                                   list(range(len(verdicts))))
    return _figures(drawn, policy.k, prompts)


def _line(name: str, figures: dict, arm: dict) -> str:
    start = arm["stats"].get("engine_start_s") or 0.0
    verdicts = dict(Counter(r["verdict"] for r in arm["rows"]).most_common())
    return (f"{name}: verdicts {verdicts}\n"
            f"{name}: coverage {figures['coverage']:.3f} ({figures['covered']} prompts), {figures['samples']} samples, "
            f"{figures['tokens']} teacher tokens ({figures['prompt_tokens']} prompt tokens), {figures['kept']} kept, "
            f"{figures['tokens_per_kept']:.1f} tokens/kept, wall {arm['wall_s']:.1f} s (engine start {start:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny:teacher", help="model dir or tiny:<name>")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--seed", type=int, default=21, help="which synthetic problems")
    parser.add_argument("--k", type=int, default=2, help="verified-correct samples wanted (= max_per_prompt)")
    parser.add_argument("--cap", type=int, default=8, help="adaptive per-prompt cap, and the largest fixed n tried")
    parser.add_argument("--round-size", type=int, default=None)
    parser.add_argument("--round-quantile", type=float, default=0.8, help="adaptive.round_quantile")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from factory.models import resolve_model
    from factory.runtime import ray_session

    print(f"[teacher] {args.model} = {resolve_model(args.model)} (a tiny kit's path names its build hash)", flush=True)
    prompts = _prompts(args.prompts, args.seed)
    total = prompts.num_rows
    with ray_session(num_cpus=2):
        warm = _arm(_config(args, n=1, adaptive=False), prompts.slice(0, 4), adaptive=False)
        print(f"[warm-up] untimed: n=1 over 4 prompts, wall {warm['wall_s']:.1f} s "
              f"(engine start {warm['stats'].get('engine_start_s') or 0.0:.1f} s)", flush=True)
        adaptive = _arm(_config(args, n=args.cap, adaptive=True), prompts, adaptive=True)
        a = _figures(adaptive["rows"], args.k, total)
        print(_line(f"[adaptive k={args.k} cap={args.cap}]", a, adaptive), flush=True)
        print(f"[adaptive] rounds: {adaptive['stats']['rounds']}; stops: {adaptive['stats']['stop_reasons']}", flush=True)

        widest = _arm(_config(args, n=args.cap, adaptive=False), prompts, adaptive=False)
        verdicts = [r["verdict"] for r in widest["rows"]]
        pass_at_1 = verdicts.count("correct") / len(verdicts)
        by_n = {n: _figures(widest["rows"], args.k, total, first=n) for n in range(1, args.cap + 1)}
        print(f"[teacher] {args.model}: sampled pass@1 {pass_at_1:.3f}, pass@{args.cap} {by_n[args.cap]['coverage']:.3f} "
              f"(temperature {args.temperature}, {total} prompts, fixed n={args.cap})", flush=True)
        replay = _replay(widest["rows"], _config(args, n=args.cap, adaptive=True), total)
        print(f"[replay] the adaptive policy over these samples: {replay['samples']} samples, {replay['tokens']} "
              f"teacher tokens, {replay['kept']} kept, coverage {replay['coverage']:.3f}: "
              f"{by_n[args.cap]['tokens_per_kept'] / replay['tokens_per_kept']:.2f}x fewer tokens per kept sample "
              f"than n={args.cap}", flush=True)
        print("[fixed] coverage by n (first n samples): "
              + ", ".join(f"{n}: {f['coverage']:.3f}" for n, f in by_n.items()), flush=True)
        n = next((n for n, f in by_n.items() if f["covered"] >= a["covered"]), args.cap)
        while True:
            fixed = widest if n == args.cap else _arm(_config(args, n=n, adaptive=False), prompts, adaptive=False)
            f = _figures(fixed["rows"], args.k, total)
            print(_line(f"[fixed n={n}]", f, fixed), flush=True)
            if f["covered"] >= a["covered"] or n == args.cap:
                break
            n += 1
    a_start, f_start = adaptive["stats"].get("engine_start_s") or 0.0, fixed["stats"].get("engine_start_s") or 0.0
    print(f"[ratio] teacher tokens per kept sample, fixed n={n} / adaptive = "
          f"{f['tokens_per_kept'] / a['tokens_per_kept']:.2f} (goal >= 1.5); coverage {a['coverage']:.3f} vs "
          f"{f['coverage']:.3f}")
    print(f"[ratio] wall-clock adaptive / fixed n={n} = {adaptive['wall_s'] / fixed['wall_s']:.2f} (goal <= 1.0); "
          f"without engine start {(adaptive['wall_s'] - a_start) / (fixed['wall_s'] - f_start):.2f}")


if __name__ == "__main__":
    main()
