"""One rank's DeepSpeed engine: the student loaded and wrapped for training, and what it really runs.

Contract: :func:`build_engine` (called inside a Ray Train worker whose process group exists) joins
DeepSpeed's comm with its CPU shared-memory all-reduce op skipped (inference only; compiled on first
use otherwise), loads the student (:mod:`factory.train.model`: training dtype, ZeRO-3 partitioned at
load, attention kernel, checkpointing, Liger), registers DeepSpeed Ulysses attention when
``sequence_parallel_size`` > 1, wraps the model in :class:`~factory.train.loss.TokenLossModel` and
calls ``deepspeed.initialize`` with a torch AdamW (decay on matrices only) and the LambdaLR schedule
of :mod:`factory.train.schedule` -- or DeepSpeed's own optimizer where :func:`uses_deepspeed_optimizer`
says so. :func:`measured_mode` reads back from the live objects what ran: ZeRO stage, parameter
dtype, how many parameter elements were resident after load and while training, which parameters
were partitioned, whether DeepSpeed's offload paths were on and where the optimizer state lives.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.train.config import TrainConfig
from factory.train.schedule import lr_multiplier
from factory.train.zero import deepspeed_config, skip_inference_comm_op, uses_deepspeed_optimizer


@dataclass
class Engine:
    """A rank's training objects; ``zero3_context`` must stay referenced for the whole run."""

    engine: object
    lm: object
    tokenizer: object
    loaded_elements: int
    zero3_context: object


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on norms and biases."""
    def matrix(p) -> bool:
        return len(getattr(p, "ds_shape", p.shape)) >= 2  # a ZeRO-3 partitioned parameter keeps its shape in ds_shape

    params = list(model.parameters())
    return [{"params": [p for p in params if matrix(p)], "weight_decay": weight_decay},
            {"params": [p for p in params if not matrix(p)], "weight_decay": 0.0}]


def resident_elements(module) -> tuple[int, int]:
    """(parameter elements held in full on this rank, elements of the full model)."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(int(getattr(p, "ds_numel", 0) or p.numel()) for p in params)


def build_engine(cfg: TrainConfig, model_path: str, hidden_size: int, total_steps: int) -> Engine:
    """The DeepSpeed engine of this rank (see module contract)."""
    import deepspeed
    import torch

    from factory.train.loss import TokenLossModel
    from factory.train.model import load_student
    from factory.train.samples import load_tokenizer

    skip_inference_comm_op()
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    tokenizer = load_tokenizer(model_path, cfg.revision, cfg.trust_remote_code, cfg.eos_token)
    ds_config = deepspeed_config(cfg, hidden_size)
    lm, zero3_context = load_student(model_path, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation,
                                     gradient_checkpointing=cfg.checkpointing, liger_kernels=cfg.liger_kernels,
                                     revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
                                     zero3_config=ds_config if cfg.zero_stage == 3 else None)
    lm.generation_config.eos_token_id = tokenizer.eos_token_id
    loaded = resident_elements(lm)[0]
    mpu = None
    if cfg.sequence_parallel_size > 1:
        from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF

        mpu = UlyssesSPAttentionHF.register_with_transformers(
            model_name_or_path=lm, core_attn_implementation=cfg.attn_implementation,
            sequence_parallel_size=cfg.sequence_parallel_size, micro_batch_size=1, seq_length_is_variable=True)
    module = TokenLossModel(lm, cfg.loss_chunk_tokens)
    groups = param_groups(module, cfg.weight_decay)
    optimizer = None if uses_deepspeed_optimizer(cfg) else torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)

    def scheduler(opt):
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_multiplier(s, total_steps, cfg.warmup_ratio, cfg.schedule, cfg.min_lr_ratio))

    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config,
                                           model_parameters=groups if optimizer is None else None, mpu=mpu)
    return Engine(engine, lm, tokenizer, loaded, zero3_context)


def measured_mode(built: Engine) -> dict:
    """What DeepSpeed and transformers actually run, read from the live objects (not the config);
    call after a step, when the optimizer state exists."""
    engine, lm = built.engine, built.lm
    resident, full = resident_elements(engine.module)
    optimizer = engine.optimizer
    inner = getattr(optimizer, "optimizer", optimizer)
    state_devices = sorted({str(t.device) for s in inner.state.values() for t in s.values() if hasattr(t, "device")})
    first = next(engine.module.parameters())
    return {
        "zero_stage": engine.zero_optimization_stage(),
        "param_dtype": str(getattr(first, "ds_tensor", first).dtype).removeprefix("torch."),
        "resident_param_elements_after_load": built.loaded_elements, "resident_param_elements": resident,
        "param_elements": full,
        "partitioned_params": sum(1 for p in engine.module.parameters() if hasattr(p, "ds_status") and p.numel() == 0),
        "optimizer_offload": bool(getattr(optimizer, "offload_optimizer", getattr(optimizer, "cpu_offload", False))),
        "param_offload": bool(getattr(optimizer, "offload_param", False)),
        "optimizer_state_devices": state_devices,
        "optimizer_partition_devices": sorted(set(getattr(optimizer, "subgroup_to_device", {}).values())),
        "attn_implementation": lm.config._attn_implementation,
        "gradient_checkpointing": bool(lm.is_gradient_checkpointing),
        "sequence_parallel_size": int(getattr(engine, "sequence_parallel_size", 1)),
    }
