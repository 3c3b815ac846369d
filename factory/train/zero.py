"""The DeepSpeed config built from a :class:`~factory.train.config.TrainConfig`.

Contract: batch shape (micro × accumulation × data-parallel ranks), ZeRO stage with optional
optimizer/parameter offload to CPU, bf16 or fp32, gradient clipping and the Ulysses sequence-parallel
degree come from the config; nothing else is tuned here. ZeRO-3 gathers full weights on save so the
final checkpoint is a consolidated HF model; parameters smaller than 10 × hidden size (norms,
biases) stay unpartitioned, as transformers' DeepSpeed integration sets it. ``zero_force_ds_cpu_optimizer`` is off so a plain
``torch.optim.AdamW`` may be used with offload (DeepSpeed's CPU Adam is built and used instead when
:func:`uses_deepspeed_optimizer` says so). No ``optimizer`` block is written otherwise: a config
AdamW would select DeepSpeed's compiled FusedAdam, an op build on first use. With
:func:`skip_inference_comm_op` the CPU path compiles no DeepSpeed op at all.
"""

from __future__ import annotations

from factory.train.config import TrainConfig


def skip_inference_comm_op() -> None:
    """Keep DeepSpeed from compiling its CPU shared-memory all-reduce when its comm backend starts
    (~50 s cold): only inference all-reduce uses it; training reduces through the process group."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # DeepSpeed keeps edits to this dict


def uses_deepspeed_optimizer(cfg: TrainConfig) -> bool:
    """Offloaded optimizer state on GPU runs is stepped on CPU: DeepSpeed's fused CPU Adam is far
    faster there than torch's, worth its one-off op build. Otherwise a plain torch AdamW is used."""
    return cfg.offload_optimizer and cfg.use_gpu


def deepspeed_config(cfg: TrainConfig, hidden_size: int) -> dict:
    """The ``config`` dict for ``deepspeed.initialize`` for a student of width ``hidden_size``."""
    zero: dict = {"stage": cfg.zero_stage}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.use_gpu}
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cfg.use_gpu}
    if cfg.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        zero["stage3_param_persistence_threshold"] = 10 * hidden_size  # transformers' "auto": only norms/biases stay whole
    config: dict = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * cfg.data_parallel_size,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.dtype == "bf16"},
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.sequence_parallel_size > 1:
        config["sequence_parallel_size"] = cfg.sequence_parallel_size
    if cfg.grad_clip is not None:
        config["gradient_clipping"] = cfg.grad_clip
    if uses_deepspeed_optimizer(cfg):
        config["optimizer"] = {"type": "AdamW", "params": {"lr": cfg.lr, "weight_decay": cfg.weight_decay,
                                                           "betas": [0.9, 0.999], "eps": 1e-8}}
    return config
