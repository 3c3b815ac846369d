"""The per-worker GRPO loop: TRL's ``GRPOTrainer`` on one DeepSpeed rank (a Ray Train worker).

Contract: :func:`grpo_loop` is the ``TorchTrainer`` entry point (``config`` built by
:func:`factory.rl.run.run_rl`). Ray Train has set up the process group (gloo on CPU, NCCL on GPU) and
``RANK``/``LOCAL_RANK``/``WORLD_SIZE``; :func:`configure_accelerate` then builds accelerate's state
explicitly on it, as a DeepSpeed state (``ACCELERATE_USE_DEEPSPEED``, the process group's backend), and
the trainer's arguments say ``use_configured_state``. Without that, on CPU accelerate finds no
accelerator, takes each worker for a single process and every rank trains alone; CPU training is fp32
(bf16 needs ``workers.use_gpu``). DeepSpeed's config (:func:`deepspeed_config`) leaves batch sizes,
clipping and precision to the trainer ("auto") and sets the ZeRO stage and offload; no DeepSpeed op is
compiled on CPU.

Each rank loads the policy (and, with ``beta > 0``, the reference model), renders the selected prompts
exactly as generation does (:func:`factory.prompting.render_prompt`, the forced ``<think>\\n``
included; a BOS the tokenizer adds itself is not doubled), draws its share of each step's groups,
scores them with :class:`factory.rl.rewards.VerifiedRewards` and steps. A trainer directory with a
resumable checkpoint (``grpo.save_every_steps``) is resumed from. At the end every rank saves (ZeRO-3
gathers the weights), and rank 0 writes ``metrics.json``: the per-step curves
(:mod:`factory.rl.curves`), the exclusions summed over ranks, and timings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from factory.atomic import write_atomic
from factory.rl.config import RLConfig
from factory.rl.curves import curves_from_log

log = logging.getLogger("factory")
FINAL = "checkpoint"
TRAINER_DIR = "trainer"
METRICS = "metrics.json"


def deepspeed_config(cfg: RLConfig) -> dict:
    """DeepSpeed config for the HF trainer integration (module docstring)."""
    workers = cfg.workers
    zero: dict = {"stage": workers.zero_stage}
    if workers.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": workers.use_gpu}
    if workers.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
            "gradient_clipping": "auto", "bf16": {"enabled": "auto"}, "zero_optimization": zero,
            "zero_force_ds_cpu_optimizer": False, "steps_per_print": 10**9, "wall_clock_breakdown": False}


WORLD_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_TORCH_DEVICE", "DS_ACCELERATOR")
"""Environment a rank's set-up writes (restored after an in-process run)."""


_WORLD_OF_ONE: dict[str, str] = {}
"""The environment of the world of one this process made (it is kept: DeepSpeed's comm holds on to it)."""


def _world_of_one() -> None:
    """A gloo process group of one on 127.0.0.1, for a rank run in-process (no Ray Train around it): made
    once per process, its environment set again for every run."""
    import socket

    import torch.distributed as dist

    if not _WORLD_OF_ONE:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        _WORLD_OF_ONE.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        os.environ.update(_WORLD_OF_ONE)
        dist.init_process_group("gloo", rank=0, world_size=1)
    os.environ.update(_WORLD_OF_ONE)


def configure_accelerate(use_gpu: bool) -> None:
    """Build accelerate's shared state as a DeepSpeed state on the existing process group."""
    from accelerate import PartialState

    if not use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        os.environ["ACCELERATE_TORCH_DEVICE"] = "cpu"
    from factory.train.zero import skip_inference_comm_op

    skip_inference_comm_op()
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(backend="nccl" if use_gpu else "gloo")


@contextlib.contextmanager
def distributed_world(use_gpu: bool) -> Iterator[None]:
    """accelerate's DeepSpeed state on the process group Ray Train set up, or on a world of one made here
    for a rank run in-process (tests); after an in-process run its accelerate state and environment are
    undone (the process group stays for the next in-process run)."""
    import torch.distributed as dist

    in_process = bool(_WORLD_OF_ONE) or not dist.is_initialized()
    saved = {name: os.environ.get(name) for name in WORLD_ENV}
    if in_process:
        _world_of_one()
    try:
        configure_accelerate(use_gpu)
        yield
    finally:
        if in_process:
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(reset_partial_state=True)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def policy_prompt(tokenizer, text: str) -> str:
    """``text`` as TRL should tokenize it: without a leading BOS when the tokenizer adds one itself."""
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer.bos_token_id in tokenizer("")["input_ids"]
    return text[len(bos):] if adds_bos and text.startswith(bos) else text


def prompt_rows(tokenizer, prompts: list[dict], prompting) -> list[dict]:
    """The trainer's dataset rows: ``prompt`` (rendered) plus the columns the reward functions read."""
    from factory.prompting import render_prompt

    return [{"prompt": policy_prompt(tokenizer, render_prompt(tokenizer, p["prompt"], p["task"], prompting)),
             "problem": p["prompt"], "task": p["task"], "reference": p["reference"], "tests": p["tests"],
             "entry_point": p["entry_point"], "prompt_id": p["prompt_id"]} for p in prompts]


def trainer_kwargs(cfg: RLConfig, out_dir: str, reward_weights: list[float]) -> dict:
    """TRL ``GRPOConfig`` arguments from the RL config (names mapped in :class:`factory.rl.config.GRPOConfig`)."""
    g, w, r = cfg.grpo, cfg.workers, cfg.rollout
    vllm = {}
    if r.engine != "transformers":
        vllm = {"use_vllm": True, "vllm_mode": r.engine.removeprefix("vllm_"),
                "vllm_gpu_memory_utilization": r.vllm_gpu_memory_utilization,
                "vllm_tensor_parallel_size": r.vllm_tensor_parallel_size,
                "vllm_server_base_url": r.vllm_server_base_url}
    return dict(
        output_dir=str(Path(out_dir) / TRAINER_DIR), max_steps=g.steps, learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler, warmup_steps=g.warmup_ratio, weight_decay=g.weight_decay,
        max_grad_norm=g.max_grad_norm, per_device_train_batch_size=g.micro_batch_size,
        gradient_accumulation_steps=cfg.grad_accum, num_generations=g.group_size,
        max_completion_length=g.max_completion_length, temperature=g.temperature, top_p=g.top_p, beta=g.beta,
        epsilon=g.epsilon, epsilon_high=g.epsilon_high, num_iterations=g.num_iterations, loss_type=g.loss_type,
        scale_rewards=g.scale_rewards, mask_truncated_completions=g.mask_truncated_completions,
        reward_weights=reward_weights, seed=g.seed, data_seed=g.seed, bf16=w.dtype == "bf16", use_cpu=not w.use_gpu,
        gradient_checkpointing=w.gradient_checkpointing, deepspeed=deepspeed_config(cfg),
        accelerator_config={"use_configured_state": True}, ddp_backend=None if w.use_gpu else "gloo",
        model_init_kwargs={"dtype": "bfloat16" if w.dtype == "bf16" else "float32", "revision": cfg.policy.revision},
        logging_steps=1, report_to=[], disable_tqdm=True, save_strategy="steps" if g.save_every_steps else "no",
        save_steps=g.save_every_steps or 500, save_only_model=False, remove_unused_columns=False,
        dataloader_num_workers=0, **vllm)


def _progress_callback(total: int):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One log line per step on rank 0: correctness, KL, length, seconds per step."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "reward" in logs:
                log.info("rl step %d/%d: correctness %s kl %s length %s excluded %s (%.1f s/step)", state.global_step,
                         total, _fmt(logs.get("rewards/correctness/mean")), _fmt(logs.get("kl")),
                         _fmt(logs.get("completions/mean_length")), _fmt(logs.get("verification/excluded_frac")),
                         float(logs.get("step_time", 0.0)))

    return Progress()


def _fmt(value) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _sum_over_ranks(values: list[float]) -> list[float]:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def train_policy(cfg: RLConfig, model_path: str, prompts: list[dict], rewards_spec: dict, out_dir: str,
                 world_rank: int = 0) -> dict:
    """Run GRPO on this rank (in-process when no process group exists: :func:`distributed_world`) and save
    the final model to ``<out_dir>/checkpoint``; rank 0 writes ``metrics.json`` and gets its content back
    (others get ``{}``)."""
    with distributed_world(cfg.workers.use_gpu):
        return _train(cfg, model_path, prompts, rewards_spec, out_dir, world_rank)


def _train(cfg: RLConfig, model_path: str, prompts: list[dict], rewards_spec: dict, out_dir: str,
           world_rank: int) -> dict:
    import torch
    import transformers
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, GRPOTrainer

    from factory.prompting import PromptingConfig
    from factory.rl.rewards import VerifiedRewards
    from factory.stages.reward import RewardConfig
    from factory.stages.verify import VerifyConfig

    began = time.perf_counter()
    transformers.utils.logging.disable_progress_bar()
    prompting = PromptingConfig.model_validate(rewards_spec["prompting"])
    tokenizer = AutoTokenizer.from_pretrained(model_path, revision=cfg.policy.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rewards = VerifiedRewards(cfg.rewards, VerifyConfig.model_validate(rewards_spec["verify"]), prompting.force_think,
                              RewardConfig.model_validate(rewards_spec["reward"]))
    functions, weights = rewards.functions()
    args = GRPOConfig(**trainer_kwargs(cfg, out_dir, weights))
    trainer = GRPOTrainer(model=model_path, reward_funcs=functions, args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list(prompt_rows(tokenizer, prompts, prompting)),
                          callbacks=[_progress_callback(cfg.grpo.steps)])
    trainer.remove_callback(PrinterCallback)  # the progress callback logs one line per step instead
    resume = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    setup_s = time.perf_counter() - began
    training = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    train_s = time.perf_counter() - training
    final = str(Path(out_dir) / FINAL)
    trainer.save_model(final)
    excluded = _sum_over_ranks([float(rewards.excluded["error"]), float(rewards.excluded["timeout"]),
                                float(rewards.judged)])
    if world_rank != 0:
        return {}
    metrics = {
        "steps": trainer.state.global_step, "resumed_from": resume, "checkpoint_dir": final,
        "curves": curves_from_log(trainer.state.log_history),
        "excluded": {"error": int(excluded[0]), "timeout": int(excluded[1])}, "judged": int(excluded[2]),
        "timings": {"setup_s": round(setup_s, 3), "train_s": round(train_s, 3)},
        "threads": torch.get_num_threads(), "distributed_type": str(trainer.accelerator.distributed_type),
        "num_processes": trainer.accelerator.num_processes,
    }
    write_atomic(str(Path(out_dir) / METRICS), json.dumps(metrics, indent=2).encode())
    return metrics


def grpo_loop(config: dict) -> None:
    """Ray Train entry point (module docstring)."""
    import ray.train
    import ray.train.torch
    import torch

    cfg = RLConfig.model_validate(config["rl"])
    torch.set_num_threads(max(1, int(cfg.workers.cpus_per_worker)))
    if cfg.workers.use_gpu:
        torch.cuda.set_device(ray.train.torch.get_device())
    rank = ray.train.get_context().get_world_rank()
    train_policy(cfg, config["model_path"], config["prompts"], config["rewards_spec"], config["out_dir"], rank)
