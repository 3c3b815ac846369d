"""Building the tiny kit: its tokenizer and model constructors, and the build itself (the spec is
:mod:`factory.tiny_spec`).

A build (:func:`build`) runs these phases, each logged (start, end, seconds) to the ``factory.tiny``
logger, with step/total and ETA inside the long ones:

1. tokenizer: byte-level, R1's special tokens and chat template (:func:`build_tokenizer`);
2. teacher: a Qwen2 trained on the synthetic task (:mod:`factory.synthetic`), first on correct
   chains until it solves ``clean_target`` of held-apart validation problems greedily, then briefly
   on chains in which carries are forgotten at ``carry_slip_rate``, so that sampled at the factory's
   settings it is good but fallible, its errors slips that vary between samples (the figures it
   reaches are recorded in tiny_build.json);
3. evaluation: greedy accuracy, and pass@1/pass@k of ``eval_samples`` samples per held-out problem
   at ``eval_temperature``/``eval_top_p`` (the demo's sampling);
4. reward data: the teacher's own samples on training-split prompts, graded exactly;
5. reward model: a one-label ``Qwen2ForSequenceClassification`` initialised from the teacher,
   trained pairwise (Bradley-Terry: a correct sample above a wrong one of the same prompt), and
   scored by AUC on the held-out samples of phase 3;
6. student: an untrained, smaller Qwen2.

Outputs are byte-for-byte deterministic in (spec, seed) on one torch build (``spec.threads`` torch
threads and deterministic algorithms are set for the duration). All attention heads have head_dim 64
(vLLM's CPU attention needs it). Not covered: quality beyond this one synthetic task; the models are
for exercising the factory, not for real use. The cache around builds is :mod:`factory.tiny`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from factory import synthetic
from factory.think import THINK_CLOSE, THINK_OPEN
from factory.tiny_spec import SPEC, Shape, TinySpec  # noqa: F401  re-exported by factory.tiny
from factory.tiny_training import (
    Sampling,
    grades,
    pass_at_k,
    reward_pairs,
    reward_quality,
    sft_examples,
    solve_problems,
    train_reward,
    train_sft,
    user_variants,
)

_log = logging.getLogger("factory.tiny")

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
THINK, END_THINK = THINK_OPEN, THINK_CLOSE
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
class TinyModels:
    """Paths of a finished build; ``info`` is its tiny_build.json."""

    root: str
    tokenizer: str
    teacher: str
    student: str
    reward: str
    info: dict = field(compare=False, hash=False)


def models_at(root: Path) -> TinyModels:
    """The finished build in ``root`` (reads its tiny_build.json)."""
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


def qwen2_config(shape: Shape, tokenizer, spec: TinySpec = SPEC, **extra):
    """The Qwen2Config of a tiny model of ``shape`` (tied embeddings, the tokenizer's special ids)."""
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
        return Qwen2ForSequenceClassification(qwen2_config(shape, tokenizer, spec, num_labels=1))
    return Qwen2ForCausalLM(qwen2_config(shape, tokenizer, spec))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


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


PHASES = ("tokenizer", "teacher", "evaluation", "reward data", "reward model", "student")
"""The build's phases, in order (their seconds are recorded in tiny_build.json)."""


class _Phases:
    """Numbered phase lines (``tiny build 2/6: teacher: ...``) and their wall and CPU seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, what: str):
        number = PHASES.index(name) + 1
        _log.info("tiny build %d/%d: %s: %s", number, len(PHASES), name, what)
        start, cpu = time.monotonic(), time.process_time()
        yield
        self.seconds[name] = round(time.monotonic() - start, 1)
        self.cpu_seconds[name] = round(time.process_time() - cpu, 1)
        _log.info("tiny build %d/%d: %s done in %.0fs", number, len(PHASES), name, self.seconds[name])


def _teacher_pairs(problems: list[dict], rng: random.Random, carry_slip_rate: float) -> list[tuple[str, str]]:
    return [(rng.choice(user_variants(p["prompt"])), synthetic.slipped_completion(p["prompt"], rng, carry_slip_rate)) for p in problems]


def _train_teacher(tokenizer, spec: TinySpec, seed: int):
    """Clean chains first (the task is learnt fastest without noise), then chains with slips."""
    rng = random.Random(seed)
    drawn = synthetic.make_problems(spec.train_problems + spec.validation_problems, seed)  # a prefix-stable draw
    problems, validation = drawn[:spec.train_problems], drawn[spec.train_problems:]
    checks: list[float] = []

    def learnt(model) -> bool:
        greedy = solve_problems(model, tokenizer, validation, Sampling(max_new_tokens=spec.max_new_tokens))
        checks.append(pass_at_k(grades(validation, greedy), 1))
        _log.info("tiny teacher: greedy %.2f on the validation problems after %d checks", checks[-1], len(checks))
        return reached()

    def reached() -> bool:
        return bool(checks) and checks[-1] >= spec.clean_target

    teacher = new_model(spec.teacher, tokenizer, seed, spec)
    clean = sft_examples(tokenizer, _teacher_pairs(problems, rng, 0.0))
    clean_steps, cycles = 0, 0
    while cycles < spec.clean_cycles and not reached():
        # cycle 0 draws its batches with ``seed``, as a one-cycle build did: where it reaches the target, the
        # teacher is the one-cycle build's
        rate = spec.clean_restart_learning_rate if cycles else spec.learning_rate
        clean_loss, steps = train_sft(teacher, clean, spec.clean_steps, spec.batch_size, rate, spec.warmup_steps,
                                      seed + 1000 * cycles, label=f"tiny teacher (cycle {cycles + 1})",
                                      stop_when=learnt, check_every=spec.clean_check_every)
        clean_steps, cycles = clean_steps + steps, cycles + 1
    if checks and not reached():
        _log.warning("tiny teacher: greedy %.2f on the validation problems after %d clean cycles (target %.2f): "
                     "the kit's figures will fall short (tiny_build.json)", checks[-1], cycles, spec.clean_target)
    slip_pairs = _teacher_pairs(problems, rng, spec.carry_slip_rate)
    slip_loss, slip_steps = train_sft(teacher, sft_examples(tokenizer, slip_pairs), spec.slip_steps, spec.batch_size,
                                      spec.slip_learning_rate, 1, seed + 1, label="tiny teacher slips")
    return teacher, {"params": _param_count(teacher), "clean_steps": clean_steps, "clean_cycles": cycles,
                     "clean_final_loss": round(clean_loss, 4), "clean_validation_checks": checks,
                     "clean_validation_accuracy": checks[-1] if checks else None,
                     "clean_target_reached": reached(),
                     "slip_steps": slip_steps, "slip_final_loss": round(slip_loss, 4), "carry_slip_rate": spec.carry_slip_rate}


def _evaluate_teacher(teacher, tokenizer, heldout: list[dict], spec: TinySpec, seed: int):
    greedy = solve_problems(teacher, tokenizer, heldout, Sampling(max_new_tokens=spec.max_new_tokens), label="tiny teacher greedy")
    samples = solve_problems(teacher, tokenizer, heldout, spec.sampling(seed), spec.eval_samples, label="tiny teacher sampled")
    graded = grades(heldout, samples)
    figures = {
        "heldout_problems": len(heldout),
        "greedy_accuracy": pass_at_k(grades(heldout, greedy), 1),
        "sampled_pass_at_1": round(pass_at_k(graded, 1), 4),
        f"sampled_pass_at_{spec.eval_samples}": round(pass_at_k(graded, spec.eval_samples), 4),
        "samples_per_problem": spec.eval_samples,
        "sampling": {"temperature": spec.eval_temperature, "top_p": spec.eval_top_p, "max_new_tokens": spec.max_new_tokens},
    }
    return samples, graded, figures


def _build_into(root: Path, seed: int, spec: TinySpec, phase: _Phases) -> dict:
    with phase("tokenizer", "byte-level, R1 chat template"):
        tokenizer = build_tokenizer()
        tokenizer.save_pretrained(root / "tokenizer")
    with phase("teacher", f"SFT on correct chains until {spec.clean_target:.0%} greedy on {spec.validation_problems} "
                          f"validation problems (at most {spec.clean_cycles} × {spec.clean_steps} steps), {spec.slip_steps} on chains "
                          "with slips"):
        teacher, teacher_info = _train_teacher(tokenizer, spec, seed)
        _save(teacher, tokenizer, root / "teacher")
    with phase("evaluation", f"{spec.eval_problems} held-out problems, greedy and {spec.eval_samples} samples each"):
        heldout = synthetic.make_problems(spec.eval_problems, seed, "heldout")
        samples, graded, figures = _evaluate_teacher(teacher, tokenizer, heldout, spec, seed + 1)
        teacher_info.update(figures)
    with phase("reward data", f"{spec.reward_samples} teacher samples on {spec.reward_prompts} training prompts"):
        prompts = synthetic.make_problems(spec.reward_prompts, seed + 2)
        reward_samples = solve_problems(teacher, tokenizer, prompts, spec.sampling(seed + 3), spec.reward_samples, label="tiny reward data")
        reward_graded = grades(prompts, reward_samples)
        triples = reward_pairs(prompts, reward_samples, reward_graded, spec.reward_pairs_per_prompt, seed + 4)
    with phase("reward model", f"{spec.reward_steps} Bradley-Terry steps on {len(triples)} pairs"):
        reward = new_model(spec.teacher, tokenizer, seed + 5, spec, reward=True)
        reward.model.load_state_dict(teacher.model.state_dict())
        loss = train_reward(reward, tokenizer, triples, spec.reward_steps, spec.reward_pairs_per_step,
                            spec.reward_learning_rate, spec.warmup_steps, seed + 6, spec.reward_center_coefficient)
        quality = reward_quality(reward, tokenizer, heldout, samples, graded)
        _save(reward, tokenizer, root / "reward")
    with phase("student", "untrained"):
        student = new_model(spec.student, tokenizer, seed + 7, spec)
        _save(student, tokenizer, root / "student")
    return {
        "teacher": teacher_info,
        "student": {"params": _param_count(student)},
        "reward": {
            "params": _param_count(reward),
            "train_prompts": len(prompts),
            "train_samples_correct": sum(map(sum, reward_graded)),
            "train_samples": sum(map(len, reward_graded)),
            "train_pairs": len(triples),
            "final_loss": _rounded(loss),
            "heldout_auc": _rounded(quality["auc"]),
            "heldout_pairwise_accuracy": _rounded(quality["pairwise_accuracy"]),
            "heldout_pairs": quality["pairs"],
        },
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
    phase = _Phases()
    try:
        info = _build_into(root, seed, spec, phase)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    info.update(
        seed=seed,
        spec_hash=spec.hash(),
        spec=dataclasses.asdict(spec),
        phase_seconds=phase.seconds,
        phase_cpu_seconds=phase.cpu_seconds,
        build_seconds=round(time.monotonic() - start, 1),
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
    )
    (root / "tiny_build.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    _log.info("tiny build: done in %.0fs (teacher pass@1 %.2f, pass@%d %.2f, greedy %.2f; reward AUC %s)",
              info["build_seconds"], info["teacher"]["sampled_pass_at_1"], spec.eval_samples,
              info["teacher"][f"sampled_pass_at_{spec.eval_samples}"], info["teacher"]["greedy_accuracy"],
              info["reward"]["heldout_auc"])
    return models_at(root)
