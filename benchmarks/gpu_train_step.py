"""Training throughput and MFU of a ~1B-parameter Qwen2 on one CUDA GPU (torch + transformers only).

Builds a Qwen2ForCausalLM from a config with random weights (no download), runs a few training
steps (AdamW, bf16 autocast over fp32 master weights, full causal LM loss) on random tokens, and
prints tokens/s and MFU = 6 * N * tokens / time / peak, with N the parameter count and peak the
GPU's dense bf16 FLOP/s (989e12 for an H100/H200 SXM). The 6N rule ignores attention's
sequence-quadratic FLOPs, so MFU at long sequence lengths is understated. Warmup steps are
excluded from the timing.

    python benchmarks/gpu_train_mfu.py                      # ~1B model on CUDA
    python benchmarks/gpu_train_mfu.py --tiny               # seconds-long CPU smoke test
"""

from __future__ import annotations

import argparse
import time

PEAK_BF16_FLOPS = 989e12


def build_model(tiny: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if tiny:
        config = Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                             tie_word_embeddings=True)
    else:  # ~0.97B parameters: 20 layers × 45M + 65M tied embeddings
        config = Qwen2Config(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=20,
                             num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
                             tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(config)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke test)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 2048; tiny 128)")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 8; tiny 2)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--grad-checkpointing", action="store_true", help="recompute activations (less memory)")
    parser.add_argument("--peak-flops", type=float, default=PEAK_BF16_FLOPS, help="GPU dense bf16 peak FLOP/s")
    args = parser.parse_args(argv)
    seq_len = args.seq_len or (128 if args.tiny else 2048)
    batch_size = args.batch_size or (2 if args.tiny else 8)
    if not args.tiny and not torch.cuda.is_available():
        parser.error("CUDA is not available (use --tiny for a CPU smoke test)")
    device = torch.device("cpu" if args.tiny else "cuda")

    torch.manual_seed(0)
    model = build_model(args.tiny).to(device)
    model.config.use_cache = False
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    vocab = model.config.vocab_size

    def step() -> float:
        ids = torch.randint(0, vocab, (batch_size, seq_len), device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - started
    tokens = args.steps * batch_size * seq_len
    tokens_per_s = tokens / elapsed
    mfu = 6 * n_params * tokens_per_s / args.peak_flops
    print(f"device={device} params={n_params / 1e6:.1f}M seq_len={seq_len} batch={batch_size} steps={args.steps} "
          f"last_loss={loss:.3f}")
    if device.type == "cuda":
        print(f"peak_memory_gib={torch.cuda.max_memory_allocated() / 2**30:.1f}")
    print(f"tokens_per_s={tokens_per_s:.0f} step_s={elapsed / args.steps:.3f} mfu={mfu:.3f} (peak {args.peak_flops:.3g} FLOP/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
