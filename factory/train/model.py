"""Loading and preparing the student for training: dtype, attention kernel, ZeRO-3 partitioned load,
activation checkpointing, Liger kernels.

Contract: :func:`load_student` loads the weights in the training dtype (bf16 weights for bf16
training, so no rank holds an fp32 copy of the model); with a ZeRO-3 DeepSpeed config it keeps a
``transformers.integrations.HfDeepSpeedConfig`` alive, so ``from_pretrained`` builds the model under
``deepspeed.zero.Init`` and each rank only ever materialises its own partition of the weights (the
caller keeps the returned context for the whole run). :func:`prepare_student` turns off the KV
cache (packing needs it off), applies Liger's RMSNorm/RoPE/SwiGLU kernels to the instance (the
integration transformers' Trainer uses; the loss stays ours) and enables non-reentrant activation
checkpointing. :func:`check_kernels` fails early, naming the config field, when a kernel asked for
is not installed. No torch, pyarrow or pydantic at import (the GPU check imports this module alone).
"""

from __future__ import annotations

import importlib.util


def check_kernels(attn_implementation: str, liger_kernels: bool) -> None:
    """Raise ValueError naming the ``train.*`` field when its kernel package is missing."""
    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError("train.attn_implementation: flash_attention_2 needs the flash-attn package (CUDA), which "
                         "is not installed here; pip install flash-attn, or use attn_implementation: sdpa")
    if liger_kernels and importlib.util.find_spec("liger_kernel") is None:
        raise ValueError("train.liger_kernels: true needs the liger-kernel package, which is not installed here; "
                         "pip install liger-kernel, or set liger_kernels: false")


def torch_dtype(dtype: str):
    """torch dtype of a resolved training precision ("bf16" or "fp32")."""
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]


def prepare_student(lm, *, gradient_checkpointing: bool, liger_kernels: bool):
    """Ready ``lm`` for padding-free training (see module contract); returns it."""
    lm.config.use_cache = False
    if liger_kernels:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=lm, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False)
    if gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return lm


def load_student(path: str, *, dtype: str, attn_implementation: str, gradient_checkpointing: bool,
                 liger_kernels: bool = False, revision: str | None = None, trust_remote_code: bool = False,
                 zero3_config: dict | None = None):
    """``(model, zero3_context)``: the prepared causal LM, and the object that must outlive training
    when ``zero3_config`` (a ZeRO-3 DeepSpeed config) partitioned it at load (else None)."""
    from transformers import AutoModelForCausalLM

    check_kernels(attn_implementation, liger_kernels)
    context = None
    if zero3_config is not None:
        from transformers.integrations import HfDeepSpeedConfig

        context = HfDeepSpeedConfig(zero3_config)
    lm = AutoModelForCausalLM.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code,
                                              dtype=torch_dtype(dtype), attn_implementation=attn_implementation)
    return prepare_student(lm, gradient_checkpointing=gradient_checkpointing, liger_kernels=liger_kernels), context
