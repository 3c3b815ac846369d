"""Peak memory and step time of one training step at R1 lengths: checkpointing × chunked loss.

One fixed architecture: Qwen2 with 8 layers, hidden 512 (8 heads of 64, 2 KV heads, intermediate
2816), the real Qwen vocabulary (151,936), random init, fp32 on CPU, sdpa attention. One sample of
L tokens (128 prompt, the rest completion) per step, L in 1k, 2k, 4k, 8k, 16k; activation
checkpointing on/off × chunked cross-entropy on/off. Every (configuration, L) runs in a fresh
subprocess through the factory's own code -- ``factory.train.batching.collate``,
``factory.train.loss.TokenLossModel`` (chunk 1024 or unchunked), ``factory.train.model.prepare_student``
-- with torch AdamW (no DeepSpeed: its buffers are not counted), and reports its peak RSS (getrusage,
the whole process: weights, gradients, Adam state, activations, logits) and the step's tokens/s. The
parent watches each child's RSS and kills it past the memory budget: that length does not fit, and
longer lengths of that configuration are not run. Prints one JSON line per run, then the ratios:

- longest L within the budget, checkpointing + chunked loss vs neither (goal >= 4x);
- step time with checkpointing / without (chunked loss on), at every L both fit (goal <= 1.4x);
- peak RSS of the 16k-token step with both on, against the stated limit (goal: within it).

    .venv/bin/python benchmarks/bench_train_memory.py [--budget-gib 8] [--lengths 1024,2048,4096,8192,16384]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

BUDGET_GIB = 8.0
"""Fixed memory budget per training process (a third of this 24 GiB machine, which others share)."""
LIMIT_16K_GIB = 4.0
"""Stated RSS limit for one 16k-token sample with checkpointing and chunked loss."""
LENGTHS = (1024, 2048, 4096, 8192, 16384)
PROMPT_TOKENS = 128
CHUNK_TOKENS = 1024
CONFIGS = {"neither": (False, False), "checkpointing": (True, False), "chunked": (False, True), "both": (True, True)}
"""name -> (activation checkpointing, chunked loss)."""


def child(tokens: int, checkpointing: bool, chunked: bool) -> dict:
    """One training step in this (fresh) process; returns its figures."""
    import resource

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from factory.train.batching import collate
    from factory.train.loss import TokenLossModel
    from factory.train.model import prepare_student

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151_936, hidden_size=512, intermediate_size=2816, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=32_768,
                         tie_word_embeddings=True, attn_implementation="sdpa")
    lm = prepare_student(Qwen2ForCausalLM(config), gradient_checkpointing=checkpointing, liger_kernels=False)
    model = TokenLossModel(lm, CHUNK_TOKENS if chunked else None).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (tokens,)).tolist()
    batch = collate([[(ids, PROMPT_TOKENS)]], pad_id=0, one_row=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    loss = model(**batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    step_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"tokens": tokens, "step_s": round(step_s, 2), "tokens_per_s": round(tokens / step_s, 1),
            "peak_rss_gib": round(peak / 2**30, 3), "rss_before_step_gib": round(before / 2**30, 3),
            "loss_per_token": round(float(loss) / (tokens - PROMPT_TOKENS), 3)}


def measure(tokens: int, checkpointing: bool, chunked: bool, budget_bytes: int) -> dict:
    """Run :func:`child` in a subprocess, killing it when its RSS passes ``budget_bytes``."""
    import psutil

    command = [sys.executable, __file__, "--child", str(tokens), str(int(checkpointing)), str(int(chunked))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if peak > budget_bytes:
            process.kill()
            process.wait()
            return {"tokens": tokens, "over_budget": True, "rss_when_killed_gib": round(peak / 2**30, 3)}
        time.sleep(0.02)
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({tokens} tokens): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-gib", type=float, default=BUDGET_GIB)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], bool(args.child[1]), bool(args.child[2]))))
        return 0
    lengths = [int(n) for n in args.lengths.split(",")]
    budget = int(args.budget_gib * 2**30)
    results: dict[str, dict[int, dict]] = {}
    started = time.perf_counter()
    for name, (checkpointing, chunked) in CONFIGS.items():
        results[name] = {}
        for tokens in lengths:
            row = measure(tokens, checkpointing, chunked, budget)
            results[name][tokens] = row
            print(json.dumps({"config": name, **row}), flush=True)
            if row.get("over_budget"):
                break  # memory grows with length: longer ones cannot fit either
    fits = {name: max((n for n, r in rows.items() if not r.get("over_budget")), default=0) for name, rows in results.items()}
    overhead = {n: round(results["both"][n]["step_s"] / results["chunked"][n]["step_s"], 3)
                for n in lengths if n in results["both"] and n in results["chunked"]
                and not results["both"][n].get("over_budget") and not results["chunked"][n].get("over_budget")}
    longest = results["both"].get(max(lengths), {})
    summary = {
        "budget_gib": args.budget_gib, "longest_fitting_tokens": fits,
        "longest_ratio_both_over_neither": round(fits["both"] / fits["neither"], 2) if fits["neither"] else None,
        "checkpointing_step_time_ratio": overhead,
        f"both_{max(lengths)}_peak_rss_gib": longest.get("peak_rss_gib"), "stated_limit_gib": LIMIT_16K_GIB,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
