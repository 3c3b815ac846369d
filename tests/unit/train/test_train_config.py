"""TrainConfig validation: bad combinations are rejected naming the field; derived settings."""

import pytest
from pydantic import ValidationError

from factory.train.config import CHECKPOINTING_FROM_TOKENS, TrainConfig
from factory.train.zero import deepspeed_config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"trust_remote_code": True}, "trust_remote_code"),
        ({"zero_stage": 2, "offload_params": True}, "offload_params"),
        ({"zero_stage": 0, "offload_optimizer": True}, "offload_optimizer"),
        ({"zero_stage": 4}, "zero_stage"),
        ({"precision": "fp16"}, "precision"),
        ({"curriculum": "hard_first"}, "curriculum"),
        ({"attn_implementation": "flex_attention"}, "attn_implementation"),
        ({"liger_kernels": True}, "liger_kernels"),
        ({"num_workers": 3, "sequence_parallel_size": 2}, "sequence_parallel_size"),
        ({"num_workers": 2, "sequence_parallel_size": 2, "packing": True}, "sequence_parallel_size"),
        ({"num_workers": 2, "sequence_parallel_size": 2, "attn_implementation": "eager"}, "sequence_parallel_size"),
        ({"log_to": ["comet"]}, "log_to"),
        ({"loss_chunk_tokens": 0}, "loss_chunk_tokens"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_config_names_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(("use_gpu", "precision", "dtype"), [(False, "auto", "fp32"), (True, "auto", "bf16"), (False, "bf16", "bf16")])
def test_auto_precision_is_bf16_on_gpu_fp32_on_cpu(use_gpu, precision, dtype):
    assert TrainConfig(use_gpu=use_gpu, precision=precision).dtype == dtype


def test_checkpointing_turns_on_past_the_length_threshold_unless_set():
    assert not TrainConfig(max_seq_len=CHECKPOINTING_FROM_TOKENS).checkpointing
    assert TrainConfig(max_seq_len=CHECKPOINTING_FROM_TOKENS * 2).checkpointing
    assert TrainConfig(max_seq_len=1024, micro_batch_size=8).checkpointing
    assert not TrainConfig(max_seq_len=32768, gradient_checkpointing=False).checkpointing


def test_deepspeed_config_carries_batch_shape_zero_and_clipping():
    cfg = TrainConfig(zero_stage=3, offload_optimizer=True, offload_params=True, micro_batch_size=2, grad_accum=4, grad_clip=0.5,
                      num_workers=3)
    ds = deepspeed_config(cfg, hidden_size=128)
    assert ds["train_batch_size"] == 24
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["zero_optimization"]["stage3_param_persistence_threshold"] == 1280
    assert ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] is False


def test_cpu_deepspeed_config_names_no_compiled_optimizer():
    """A config ``optimizer`` block would select DeepSpeed's FusedAdam/CPUAdam: an op build on first use."""
    assert "optimizer" not in deepspeed_config(TrainConfig(zero_stage=3, offload_optimizer=True), hidden_size=64)


def test_sequence_parallel_batch_counts_data_parallel_ranks_only():
    cfg = TrainConfig(num_workers=4, sequence_parallel_size=2, micro_batch_size=1, grad_accum=2)
    ds = deepspeed_config(cfg, hidden_size=64)
    assert cfg.data_parallel_size == 2 and ds["train_batch_size"] == 4 and ds["sequence_parallel_size"] == 2
