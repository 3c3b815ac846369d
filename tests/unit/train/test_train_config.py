"""TrainConfig validation: bad combinations are rejected naming the field."""

import pytest
from pydantic import ValidationError

from factory.train.config import TrainConfig
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
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_config_names_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(("use_gpu", "precision", "dtype"), [(False, "auto", "fp32"), (True, "auto", "bf16"), (False, "bf16", "bf16")])
def test_auto_precision_is_bf16_on_gpu_fp32_on_cpu(use_gpu, precision, dtype):
    assert TrainConfig(use_gpu=use_gpu, precision=precision).dtype == dtype


def test_deepspeed_config_carries_batch_shape_zero_and_clipping():
    cfg = TrainConfig(zero_stage=3, offload_optimizer=True, offload_params=True, micro_batch_size=2, grad_accum=4, grad_clip=0.5)
    ds = deepspeed_config(cfg, num_workers=3)
    assert ds["train_batch_size"] == 24
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] is False
