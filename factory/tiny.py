"""Tiny local models for tests and demos: tokenizer, teacher, student and reward model.

Everything is built on CPU from a seed, with no network, and cached under
``$FACTORY_CACHE/tiny/<spec-hash>`` (FACTORY_CACHE defaults to ``~/.cache/distill-factory``):

- a byte-level character tokenizer (one token per byte, DeepSeek-R1's special tokens as single
  tokens) saved as a transformers fast tokenizer with an R1-style chat template;
- a **teacher** ``Qwen2ForCausalLM`` trained on the synthetic arithmetic task
  (:mod:`factory.synthetic`) in R1's format ("<think>\\n" reasoning "\\n</think>\\n\\n\\boxed{..}");
- a smaller untrained **student** ``Qwen2ForCausalLM`` for distillation tests;
- a **reward** ``Qwen2ForSequenceClassification`` (one label) initialised from the teacher and
  trained briefly to score correct worked solutions above wrong ones.

All attention heads have head_dim 64 (vLLM's CPU attention needs it). A build is byte-for-byte
deterministic in (SPEC, seed) on a given torch build and thread count. Not covered: quality beyond
this one synthetic task; the models are for exercising the factory, not for real use.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from factory import synthetic
from factory.tiny_training import (  # noqa: F401  chat_prompt is part of this module's API
    accuracy,
    chat_prompt,
    reward_auc,
    sft_examples,
    train_reward,
    train_sft,
    user_variants,
)

_log = logging.getLogger(__name__)

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
USER, ASSISTANT, THINK, END_THINK = "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '" + USER + "' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '" + ASSISTANT + "' + message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('unknown role: ' + message['role']) }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ASSISTANT + THINK + "\\n' }}{% endif %}"
)
"""DeepSeek-R1 style: {bos}{system?}<｜User｜>{user}<｜Assistant｜>{assistant}{eos}; the generation
prompt forces "<think>\\n", so prompt+generation prompt is a prefix of a rendered assistant turn
starting with "<think>\\n"."""


@dataclass(frozen=True)
class Shape:
    """Size of one tiny Qwen2 model (head_dim = hidden / heads must be 64 for vLLM's CPU attention)."""

    hidden: int
    heads: int
    kv_heads: int
    layers: int
    intermediate: int


@dataclass(frozen=True)
class TinySpec:
    """Every hyper-parameter of a tiny build; its hash names the cache directory."""

    version: int = 2
    """Bumped when build code changes its output, so old caches are not reused."""
    teacher: Shape = Shape(hidden=128, heads=2, kv_heads=1, layers=3, intermediate=512)
    """Teacher size: large enough to learn the task in minutes on one core; head_dim 64 for vLLM CPU."""
    student: Shape = Shape(hidden=128, heads=2, kv_heads=1, layers=2, intermediate=384)
    """Student size: smaller than the teacher, still able to learn the task from ~1000 samples."""
    max_positions: int = 512
    """Context length of all three models (prompts + completions of the synthetic task fit in ~150)."""
    threads: int = 1
    """Torch threads during a build: fixed for bit-reproducibility; 1 is fastest on a shared 2-core box."""
    train_problems: int = 8000
    """Distinct training problems the teacher sees (the task has ~40k train-split problems)."""
    teacher_steps: int = 1600
    """Upper bound on teacher SFT steps (the LR schedule spans it); training stops earlier at target."""
    validation_problems: int = 100
    """Held-out problems (disjoint from the reported ones) checked during training; 0 disables early stop."""
    check_every: int = 100
    """Steps between validation checks."""
    target_accuracy: float = 0.9
    """Validation greedy accuracy at which teacher training stops."""
    batch_size: int = 32
    """Sequences per optimizer step (teacher SFT; half as many pairs for the reward model)."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate for the teacher (tiny models tolerate a high rate)."""
    warmup_steps: int = 20
    """Linear warmup steps before the linear decay."""
    reward_steps: int = 40
    """Pairwise reward-model steps: a few seconds, enough to rank right above wrong solutions."""
    reward_learning_rate: float = 5e-4
    """AdamW rate for the reward model, lower since it starts from the trained teacher."""
    eval_problems: int = 200
    """Held-out problems whose teacher accuracy is recorded in tiny_build.json."""
    eval_temperature: float = 0.6
    """Sampling temperature of the recorded sampled accuracy (R1's recommended setting)."""
    max_new_tokens: int = 64
    """Generation budget in evaluation (a worked solution needs ~45 tokens)."""

    def hash(self) -> str:
        """Short content hash of the spec (hex)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


SPEC = TinySpec()


@dataclass(frozen=True)
class TinyModels:
    """Paths of a finished build; ``info`` is its tiny_build.json."""

    root: str
    tokenizer: str
    teacher: str
    student: str
    reward: str
    info: dict = field(compare=False, hash=False)


def _models_at(root: Path) -> TinyModels:
    info = json.loads((root / "tiny_build.json").read_text())
    return TinyModels(*(str(root / name) for name in ("", "tokenizer", "teacher", "student", "reward")), info=info)


def build_tokenizer():
    """The byte-level character tokenizer with the R1 chat template (not saved).

    One token per byte (GPT-2's byte-to-unicode alphabet, BPE without merges), so any UTF-8 text
    round-trips, plus R1's special tokens as single tokens. Its pipeline (NFC, ByteLevel pre-tokenizer
    and decoder) is the one transformers' ``Qwen2Tokenizer`` rebuilds when ``AutoTokenizer`` loads it
    from a qwen2 model directory (transformers 5 swaps that class in for qwen2 models), so the
    tokenizer saved beside a model and the one built here encode identically."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [BOS, EOS, PAD, USER, ASSISTANT]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(specials + [THINK, END_THINK] + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in (THINK, END_THINK)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=SPEC.max_positions,
    )


def _qwen2_config(shape: Shape, tokenizer, spec: TinySpec, **extra):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        num_hidden_layers=shape.layers,
        intermediate_size=shape.intermediate,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def new_model(shape: Shape, tokenizer, seed: int, spec: TinySpec = SPEC, reward: bool = False):
    """A randomly initialised Qwen2 causal LM (or one-label sequence classifier), seeded."""
    import torch
    from transformers import Qwen2ForCausalLM, Qwen2ForSequenceClassification

    torch.manual_seed(seed)
    if reward:
        return Qwen2ForSequenceClassification(_qwen2_config(shape, tokenizer, spec, num_labels=1))
    return Qwen2ForCausalLM(_qwen2_config(shape, tokenizer, spec))


def _param_count(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def _save(model, tokenizer, directory: Path) -> None:
    from transformers import GenerationConfig

    if hasattr(model, "generation_config"):
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
        )
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


def _build_into(root: Path, seed: int, spec: TinySpec) -> dict:
    import random

    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(root / "tokenizer")
    questions = [problem["prompt"] for problem in synthetic.make_problems(spec.train_problems, seed)]
    rng = random.Random(seed)
    pairs = [(rng.choice(user_variants(q)), synthetic.completion_for(q)) for q in questions]

    teacher = new_model(spec.teacher, tokenizer, seed, spec)
    problems = synthetic.make_problems(spec.eval_problems + spec.validation_problems, seed, "heldout")
    heldout, validation = problems[: spec.eval_problems], problems[spec.eval_problems :]

    def good_enough(model) -> bool:
        score = accuracy(model, tokenizer, validation, spec.max_new_tokens)
        _log.info("tiny teacher: validation accuracy %.2f (target %.2f)", score, spec.target_accuracy)
        return score >= spec.target_accuracy

    loss, steps = train_sft(
        teacher,
        sft_examples(tokenizer, pairs),
        spec.teacher_steps,
        spec.batch_size,
        spec.learning_rate,
        spec.warmup_steps,
        seed,
        done=good_enough if spec.validation_problems else None,
        check_every=spec.check_every,
    )
    _save(teacher, tokenizer, root / "teacher")
    greedy = accuracy(teacher, tokenizer, heldout, spec.max_new_tokens)
    sampled = accuracy(teacher, tokenizer, heldout, spec.max_new_tokens, spec.eval_temperature, seed)

    student = new_model(spec.student, tokenizer, seed + 1, spec)
    _save(student, tokenizer, root / "student")

    reward = new_model(spec.teacher, tokenizer, seed + 2, spec, reward=True)
    reward.model.load_state_dict(teacher.model.state_dict())
    train_reward(reward, tokenizer, questions, spec, seed)
    auc = reward_auc(reward, tokenizer, [problem["prompt"] for problem in heldout], seed + 3)
    _save(reward, tokenizer, root / "reward")
    return {
        "teacher": {
            "params": _param_count(teacher),
            "final_loss": round(loss, 4),
            "train_steps": steps,
            "heldout_problems": len(heldout),
            "greedy_accuracy": greedy,
            "sampled_accuracy": sampled,
            "sampled_temperature": spec.eval_temperature,
        },
        "student": {"params": _param_count(student)},
        "reward": {"params": _param_count(reward), "heldout_auc": round(auc, 4)},
    }


def build(out_dir: str, seed: int = 0, spec: TinySpec = SPEC) -> TinyModels:
    """Build tokenizer, teacher, student and reward model into ``out_dir`` (created if missing)
    and write ``tiny_build.json``. Uses ``spec.threads`` torch threads and deterministic
    algorithms for the duration, restoring both afterwards."""
    import torch
    import transformers

    start = time.monotonic()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(spec.threads)
    torch.use_deterministic_algorithms(True)
    try:
        info = _build_into(root, seed, spec)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    info.update(
        seed=seed,
        spec_hash=spec.hash(),
        spec=dataclasses.asdict(spec),
        build_seconds=round(time.monotonic() - start, 1),
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
    )
    (root / "tiny_build.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return _models_at(root)


def default_cache_dir(spec: TinySpec = SPEC) -> str:
    """``$FACTORY_CACHE/tiny/<spec-hash>``, FACTORY_CACHE defaulting to ~/.cache/distill-factory."""
    cache = os.environ.get("FACTORY_CACHE") or os.path.expanduser("~/.cache/distill-factory")
    return os.path.join(cache, "tiny", spec.hash())


def ensure(cache_dir: str | None = None) -> TinyModels:
    """The cached build (seed 0) at ``cache_dir`` (default :func:`default_cache_dir`), building it
    first if absent. Builds go to a sibling temp dir renamed into place, under a file lock, so
    concurrent callers build once and never see a partial build; temp dirs of builders that died
    are removed by the next builder."""
    root = Path(cache_dir or default_cache_dir())
    if (root / "tiny_build.json").exists():
        return _models_at(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "tiny_build.json").exists():
            for stale in root.parent.glob(f".{root.name}.tmp-*"):  # left by a builder that died holding the lock
                shutil.rmtree(stale, ignore_errors=True)
            _log.info("building tiny models into %s (minutes on CPU, once)", root)
            staging = tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent)
            try:
                build(staging, seed=0)
                os.rename(staging, root)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return _models_at(root)


def main(argv: list[str] | None = None) -> int:
    """``factory tiny build [--out DIR] [--seed N]``: build (or, without --out, ensure the cache) and print the info."""
    parser = argparse.ArgumentParser(prog="factory tiny", description="Build the tiny local models.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build tokenizer, teacher, student and reward model")
    build_parser.add_argument("--out", help="output directory (default: the shared cache, seed 0)")
    build_parser.add_argument("--seed", type=int, default=0, help="seed (only with --out)")
    args = parser.parse_args(argv)
    if args.out is None and args.seed != 0:
        parser.error("--seed needs --out: the shared cache always holds the seed-0 build")
    models = build(args.out, args.seed) if args.out else ensure()
    print(json.dumps({"root": models.root, **models.info}, indent=2, sort_keys=True))
    return 0
