"""Throughput figures of a training step: model FLOPs, MFU against a device's peak, peak memory.

Contract: training FLOPs of one sample of ``s`` tokens are ``6·N·s + 6·L·d·s²`` -- N the weights
used in matmuls (every parameter except the input embedding, plus the output projection, counted
once when tied), L layers, d = attention heads × head dim; the second term is causal attention's
QKᵀ and AV (forward 2·d·s² per layer, ×3 for forward + backward). Recomputation under activation
checkpointing is not counted (this is MFU, not hardware FLOPs utilisation). Peak FLOP/s come from
the config or :data:`PEAK_BF16_FLOPS` by GPU name (dense bf16, no sparsity); there is no MFU on
CPU unless a peak is given. Peak memory is CUDA's max allocated bytes on a GPU, the process's peak
RSS on CPU. No torch, pyarrow or pydantic at import (the GPU check imports this module alone).
"""

from __future__ import annotations

from typing import Iterable

PEAK_BF16_FLOPS = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("B200", 2250e12),
)
"""(substring of torch.cuda.get_device_name(), dense bf16 FLOP/s), first match wins (NVIDIA datasheets)."""


def _numel(param) -> int:
    return int(getattr(param, "ds_numel", 0) or param.numel())  # ZeRO-3 keeps the full size in ds_numel


def matmul_params(model) -> int:
    """Weights of a transformers causal LM that take part in matmuls (see module contract)."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(_numel(p) for p in model.parameters())
    return total - _numel(embedding) + (_numel(head) if head is embedding else 0)


def attention_width(config) -> tuple[int, int]:
    """(layers, heads × head dim) of a transformers model config."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, config.num_attention_heads * head_dim


def training_flops(lengths: Iterable[int], n_matmul: int, layers: int, width: int) -> float:
    """FLOPs of one forward + backward over samples of these token lengths."""
    return float(sum(6 * n_matmul * s + 6 * layers * width * s * s for s in lengths))


def peak_flops(device_name: str | None, configured: float | None) -> float | None:
    """Per-device peak FLOP/s: the configured figure, else the table's for this GPU name, else None."""
    if configured is not None:
        return configured
    for key, flops in PEAK_BF16_FLOPS:
        if device_name and key in device_name:
            return flops
    return None


def mfu(flops: float, seconds: float, devices: int, peak: float | None) -> float | None:
    """Model FLOPs utilisation of ``devices`` devices doing ``flops`` in ``seconds`` (None without a peak)."""
    if peak is None or seconds <= 0:
        return None
    return flops / (seconds * devices * peak)


def peak_memory_bytes(device) -> int:
    """Peak bytes this process has held on ``device`` (a torch.device): CUDA allocated, or CPU peak RSS."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB
