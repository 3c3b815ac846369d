"""bf16 training step of a Qwen2-1.5B-architecture student on one CUDA GPU, through the factory's own
batching and loss code: tokens/s, MFU against the device's peak, peak memory, at 4k and 16k tokens.

Runs on an image with torch and transformers only (no ray, vllm, pyarrow or pydantic): it imports
``factory.train.batching`` (collate), ``.loss`` (TokenLossModel, chunked cross-entropy), ``.model``
(prepare_student: activation checkpointing, Liger) and ``.perf`` (training FLOPs, the peak table, peak
memory), none of which needs them. The model is Qwen2-1.5B's architecture (28 layers, hidden 1536,
12 heads / 2 KV heads, intermediate 8960, vocab 151,936, tied embeddings) with random weights in
bf16 (no download); one sample of L tokens (128 prompt) per step, activation checkpointing on,
chunked loss (1024 tokens per chunk). Optimizer: torch AdamW on the bf16 weights, or with
``--deepspeed`` the factory's DeepSpeed config (ZeRO-2, bf16 with fp32 master weights, one rank, torch
AdamW as in the workers, so no op is compiled) -- DeepSpeed and its dependencies come as wheels
carried in ``.whl/`` (``benchmarks/gpu_train_wheels.py``). MFU = model FLOPs (6·N·L + causal
attention, :mod:`factory.train.perf`, recomputation not counted) / step time / peak; the peak is
``--peak-flops`` or the device table (H100/H200 SXM: 989e12 dense bf16). Warm-up steps are not timed.

    python benchmarks/gpu_train_step.py                          # CUDA: 4k and 16k tokens
    python benchmarks/gpu_train_step.py --deepspeed              # the same through DeepSpeed ZeRO-2
    python benchmarks/gpu_train_step.py --tiny [--deepspeed]     # seconds-long CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the factory package beside this script

PROMPT_TOKENS = 128
CHUNK_TOKENS = 1024


def qwen2_config(tiny: bool):
    """Qwen2-1.5B's architecture (or a tiny stand-in for the CPU smoke test)."""
    from transformers import Qwen2Config

    if tiny:
        return Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                           tie_word_embeddings=True)
    return Qwen2Config(vocab_size=151_936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32_768,
                       rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)


def deepspeed_engine(model, lr: float, hidden_size: int):
    """One-rank DeepSpeed ZeRO-2 bf16 engine with the factory's config (imports pydantic, via DeepSpeed)."""
    os.environ.update({k: v for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                                          "MASTER_PORT": "29517"}.items() if k not in os.environ})
    import deepspeed
    import torch

    from factory.train.config import TrainConfig
    from factory.train.zero import deepspeed_config, skip_inference_comm_op

    cfg = TrainConfig(use_gpu=torch.cuda.is_available(), precision="bf16", zero_stage=2, num_workers=1, lr=lr, grad_clip=1.0)
    skip_inference_comm_op()
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=deepspeed_config(cfg, hidden_size))
    return engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke test)")
    parser.add_argument("--lengths", default=None, help="tokens per sample, comma-separated (default 4096,16384; tiny 256,512)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per length")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first, per length")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2", "eager"])
    parser.add_argument("--no-checkpointing", action="store_true", help="keep activations (more memory)")
    parser.add_argument("--liger", action="store_true", help="Liger RMSNorm/RoPE/SwiGLU kernels (liger-kernel)")
    parser.add_argument("--deepspeed", action="store_true", help="step through DeepSpeed ZeRO-2 (wheels in .whl/)")
    parser.add_argument("--peak-flops", type=float, default=None, help="device dense bf16 FLOP/s (default: device table)")
    args = parser.parse_args(argv)

    import torch
    from transformers import Qwen2ForCausalLM

    from factory.train.batching import collate, one_row_for
    from factory.train.loss import TokenLossModel, summed_token_loss
    from factory.train.model import check_kernels, prepare_student
    from factory.train.perf import attention_width, matmul_params, mfu, peak_flops, peak_memory_bytes, training_flops

    if not args.tiny and not torch.cuda.is_available():
        parser.error("CUDA is not available (use --tiny for a CPU smoke test)")
    check_kernels(args.attn, args.liger)
    device = torch.device("cpu" if args.tiny else "cuda")
    lengths = [int(n) for n in (args.lengths or ("256,512" if args.tiny else "4096,16384")).split(",")]
    config = qwen2_config(args.tiny)
    config._attn_implementation = args.attn
    torch.manual_seed(0)
    with device:
        lm = Qwen2ForCausalLM(config).to(torch.bfloat16)
    prepare_student(lm, gradient_checkpointing=not args.no_checkpointing, liger_kernels=args.liger)
    model = TokenLossModel(lm, CHUNK_TOKENS).train()
    engine = deepspeed_engine(model, 1e-5, config.hidden_size) if args.deepspeed else None
    optimizer = None if engine else torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    n_matmul, (layers, width) = matmul_params(lm), attention_width(lm.config)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = peak_flops(name, args.peak_flops)

    def step(batch) -> None:
        if engine is not None:
            engine.backward(summed_token_loss(engine, batch, device) / max(int((batch["targets"] >= 0).sum()), 1))
            engine.step()
            return
        loss = summed_token_loss(model, batch, device) / max(int((batch["targets"] >= 0).sum()), 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    results = []
    for tokens in lengths:
        ids = torch.randint(0, config.vocab_size, (tokens,)).tolist()
        batch = collate([[(ids, PROMPT_TOKENS)]], pad_id=0, one_row=one_row_for(args.attn))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            step(batch)
        sync()
        started = time.perf_counter()
        for _ in range(args.steps):
            step(batch)
        sync()
        seconds = (time.perf_counter() - started) / args.steps
        flops = training_flops([tokens], n_matmul, layers, width)
        row = {"tokens": tokens, "step_s": round(seconds, 4), "tokens_per_s": round(tokens / seconds, 1),
               "mfu": None if peak is None else round(mfu(flops, seconds, 1, peak), 4),
               "peak_memory_gib": round(peak_memory_bytes(device) / 2**30, 2)}
        results.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"device": name or "cpu", "peak_flops": peak, "params": sum(p.numel() for p in lm.parameters()),
                      "matmul_params": n_matmul, "attn": args.attn, "deepspeed": args.deepspeed,
                      "checkpointing": not args.no_checkpointing, "liger": args.liger, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
