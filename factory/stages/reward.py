"""Reward-model scoring: a Ray Data actor pool running a sequence-classification reward model.

Contract:
- Input rows follow ``factory.schema.SAMPLE_SCHEMA`` (plus any scoring/filter columns); the stage
  needs ``prompt``, ``completion`` and ``gen_status`` and sets ``reward`` (float64) and
  ``reward_error`` (string) on every row, one row out per row in.
- Only rows with ``gen_status == "ok"``, a completion and no ``drop_reason`` are scored; the others
  get ``reward = null`` and ``reward_error = null`` (nothing was asked of the RM).
- A scored row gets either a finite ``reward`` or a ``reward_error``, never both and never a
  stand-in 0: an input longer than ``max_length`` tokens (or the RM's position limit, if smaller)
  is not truncated (an RM reads the last token, so a cut-off chain would be judged on text it
  never finished) but fails with ``input_too_long``; a template failure, an RM exception (for
  the whole micro-batch it hit) or a non-finite score are errors too. The filter stage drops
  these rows with reason ``reward_error``.
- The (prompt, response) pair goes through the RM's own chat template as messages
  ``user = prompt`` and ``assistant = "<think>\\n" + completion`` (the completion starts after the
  forced ``<think>\\n``). DeepSeek-R1-style templates (as the tiny RM's) emit the assistant turn
  verbatim followed by EOS, so the RM sees the whole reasoning chain; a template that strips
  reasoning from assistant turns would make the RM judge the final answer only.
- Micro-batches are formed by a token budget: rows of a Ray batch are sorted by token length and
  packed while ``rows × longest row ≤ max_tokens_per_batch`` (padding counted), and padded per
  micro-batch, so a batch of long chains cannot exhaust accelerator memory.
- Device and precision: an actor with ``num_gpus_per_actor > 0`` that sees CUDA runs on GPU in
  bf16 (``dtype: auto``); otherwise on CPU in fp32.
- Placement: each actor runs in a placement group of its own (``factory.stages.generate.placement``),
  waited for up to ``wait_for_resources_s`` (an autoscaler adding GPU nodes), then a clear error
  naming what was asked, what the cluster has and which setting to change; the groups are removed
  when the execution ends or fails.

Not covered: RMs whose score is not the single logit of a one-label classifier (multi-objective
heads read through custom outputs), retries of a failed micro-batch (rerun the stage), truncation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from factory.models import resolve_model
from factory.pipeline import Stage, StageOutput
from factory.rows import with_column
from factory.sections import Section
from factory.think import THINK_OPEN


class RewardConfig(Section):
    """Reward-model scoring of teacher samples (Skywork/ArmoRM-style one-label classifiers)."""

    enabled: bool = False
    """Verifiers decide correctness; an RM is optional and costs an extra pass over every sample."""
    model: str = ""
    """Hub id, local path or ``tiny:reward`` of an ``AutoModelForSequenceClassification`` (num_labels=1)."""
    revision: str | None = None
    """Pins the RM weights so reruns score identically."""
    trust_remote_code: bool = False
    """Some published RMs ship custom code; running it must be an explicit, pinned decision."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """``auto`` = bf16 on GPU (how RMs are published), fp32 on CPU (bf16 matmuls are slow there)."""
    max_length: int = 16384
    """Longest (prompt + response) in RM tokens; longer rows fail with ``input_too_long``, never truncated."""
    max_tokens_per_batch: int = 65536
    """Padded tokens per forward pass; bounds activation memory however long the chains are."""
    num_actors: int = 1
    """Size of the RM actor pool (each holds one model copy)."""
    num_gpus_per_actor: float = 1.0
    """GPUs reserved per actor; 0 runs on CPU (tests, small jobs)."""
    wait_for_resources_s: float = Field(default=1200.0, gt=0)
    """Wait for the cluster (its autoscaler) to provide every actor's GPU before failing; > a node's scale-up."""
    batch_size: int = 256
    """Rows per Ray batch handed to an actor; micro-batches inside it follow the token budget."""

    @field_validator("max_length", "max_tokens_per_batch", "num_actors", "batch_size")
    @classmethod
    def _positive(cls, value: int, info) -> int:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be > 0")
        return value

    @field_validator("num_gpus_per_actor")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("num_gpus_per_actor must be >= 0")
        return value

    @model_validator(mode="after")
    def _check(self) -> "RewardConfig":
        if self.enabled and not self.model:
            raise ValueError("model must be set when reward scoring is enabled")
        if self.trust_remote_code and not self.revision:
            raise ValueError("trust_remote_code: true requires revision (pin the code you run)")
        if self.max_tokens_per_batch < self.max_length:
            raise ValueError("max_tokens_per_batch must be >= max_length so every admissible row fits a micro-batch")
        return self


def pack_micro_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped into micro-batches, shortest rows first (ties by index).

    A micro-batch grows while ``(rows + 1) × longest`` stays within ``max_tokens``; a single row
    longer than ``max_tokens`` gets a micro-batch of its own. Every index appears exactly once."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        if current and (len(current) + 1) * lengths[index] > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def _eligible(table) -> list[bool]:
    """Rows the RM should score: generation ok, a completion present, not dropped yet."""
    status = table.column("gen_status").to_pylist()
    completion = table.column("completion").to_pylist()
    dropped = table.column("drop_reason").to_pylist() if "drop_reason" in table.column_names else [None] * table.num_rows
    return [s == "ok" and c is not None and d is None for s, c, d in zip(status, completion, dropped, strict=True)]


class RewardScorer:
    """Callable for ``map_batches(batch_format="pyarrow")``: loads the RM once per actor and adds
    ``reward``/``reward_error`` to each batch (see the module contract)."""

    def __init__(self, cfg: RewardConfig):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.cfg = cfg
        use_cuda = cfg.num_gpus_per_actor > 0 and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        dtype_name = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if use_cuda else "float32")
        path = resolve_model(cfg.model)  # ``tiny:reward`` -> the local tiny build; other names unchanged
        load = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
        self.tokenizer = AutoTokenizer.from_pretrained(path, **load)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype_name), **load)
        self.model.to(self.device).eval()
        if self.model.config.num_labels != 1:
            raise ValueError(f"reward model {cfg.model!r} has num_labels={self.model.config.num_labels}, expected 1")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        if self.model.config.pad_token_id is None:
            # The classifier pools at the last non-pad token, which needs a pad id once batches are padded.
            self.model.config.pad_token_id = pad_id
        self.pad_id = self.model.config.pad_token_id
        positions = getattr(self.model.config, "max_position_embeddings", None) or cfg.max_length
        self.max_length = min(cfg.max_length, positions)  # the RM cannot read past its positions

    def render(self, prompt: str, completion: str) -> str:
        """The chat text the RM reads for one (prompt, completion) pair."""
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": THINK_OPEN + "\n" + completion}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def forward(self, sequences: list[list[int]]) -> list[float]:
        """Scores of token sequences run as one right-padded micro-batch."""
        import torch

        width = max(len(sequence) for sequence in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            mask[row, : len(sequence)] = 1
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        return logits[:, 0].float().cpu().tolist()

    def __call__(self, table):
        import math

        import pyarrow as pa

        rewards: list[float | None] = [None] * table.num_rows
        errors: list[str | None] = [None] * table.num_rows
        prompts, completions = table.column("prompt").to_pylist(), table.column("completion").to_pylist()
        rows, sequences = [], []
        for row, eligible in enumerate(_eligible(table)):
            if not eligible:
                continue
            try:
                text = self.render(prompts[row], completions[row])
            except Exception as error:  # a template that rejects this row fails the row, not the batch
                errors[row] = f"template_error: {type(error).__name__}: {error}"[:500]
                continue
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > self.max_length:
                errors[row] = f"input_too_long: {len(ids)} tokens > max_length {self.max_length}"
                continue
            rows.append(row)
            sequences.append(ids)
        for micro in pack_micro_batches([len(s) for s in sequences], self.cfg.max_tokens_per_batch):
            try:
                scores = self.forward([sequences[i] for i in micro])
            except Exception as error:  # RM failure: every row of the micro-batch is an error, never a 0
                message = f"rm_failure: {type(error).__name__}: {error}"[:500]
                for i in micro:
                    errors[rows[i]] = message
                continue
            for i, value in zip(micro, scores, strict=True):
                if math.isfinite(value):
                    rewards[rows[i]] = value
                else:
                    errors[rows[i]] = f"rm_non_finite: {value}"
        out = with_column(table, "reward", pa.array(rewards, pa.float64()))
        out = with_column(out, "reward_error", pa.array(errors, pa.string()))
        if out.num_rows != table.num_rows:
            raise RuntimeError(f"reward stage returned {out.num_rows} rows for {table.num_rows}")
        return out


class Reward(Stage):
    """Reward-model scores from an actor pool of ``num_actors`` RM copies (module docstring); with
    ``num_gpus_per_actor > 0`` the actors wait for GPUs the cluster must have."""

    name = "reward"
    section = "reward"
    requires = ("prompt", "completion", "gen_status")
    adds = ("reward", "reward_error")

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.reward.enabled

    def apply(self, ds) -> StageOutput:
        import warnings

        import ray

        from factory.stages.generate.placement import ActorPlacement, pool_request, register_release

        cfg = self.config
        request = pool_request(cfg.num_actors, cfg.num_gpus_per_actor)
        placement = ActorPlacement(request, cfg.wait_for_resources_s, stage="reward", section="reward",
                                   remedy="lower reward.num_actors, set reward.num_gpus_per_actor: 0 to run on CPU")
        register_release(ds)
        with warnings.catch_warnings():  # as in Generate.apply: Ray 2.60 has no named ray_remote_args_fn yet
            warnings.filterwarnings("ignore", message="`ray_remote_args(_fn)?` is deprecated")
            scored = self.map_batches(ds, RewardScorer, fn_constructor_kwargs={"cfg": cfg}, batch_size=cfg.batch_size,
                                      compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
                                      num_gpus=request.actor_gpus, num_cpus=request.actor_cpus,
                                      udf_modifying_row_count=False, ray_remote_args_fn=placement)
        resources = {"device": request.device, "actors": request.actors, "bundles": list(request.bundles)}

        def stats() -> dict:
            placement.release()  # normally already gone: the execution's end removed the groups
            return {"resources": resources}

        return StageOutput(scored, stats)
