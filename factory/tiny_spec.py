"""The tiny kit's spec: every hyper-parameter of a build (:class:`TinySpec`), whose hash names the cache
directory, and the model shapes it names. The build itself is :mod:`factory.tiny_build`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from factory.tiny_training import Sampling


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

    version: int = 6
    """Bumped when build code changes its output, so old caches are not reused."""
    teacher: Shape = Shape(hidden=128, heads=2, kv_heads=1, layers=3, intermediate=512)
    """Teacher size: learns the task in a few hundred steps on two cores; head_dim 64."""
    student: Shape = Shape(hidden=128, heads=2, kv_heads=1, layers=2, intermediate=384)
    """Student size: smaller than the teacher, still able to learn the task from ~1000 samples."""
    max_positions: int = 512
    """Context length of all three models (a prompt and its worked solution take ~140 tokens)."""
    threads: int = 2
    """Torch threads during a build: fixed, since results are bit-reproducible per thread count. Two: the
    build runs alone before Ray starts, and a teacher step takes 181 ms on two threads vs 329 ms on one
    (this project's 2-core machine, 2026-12-01), the build being most of a first ``make demo``."""
    train_problems: int = 20000
    """Distinct training problems the teacher sees (each at most once or twice)."""
    clean_steps: int = 1000
    """Teacher SFT steps on correct chains in one clean cycle (its learning-rate schedule spans them); the phase
    ends sooner, at the first check where the teacher solves ``clean_target`` of the validation problems
    greedily. A schedule over 1,500 steps left the teacher at 0.78 after all of them: the decay is what
    settles it."""
    clean_cycles: int = 3
    """Most clean cycles: one that ends below ``clean_target`` is followed by another (warmup and decay again,
    fresh batches, peak ``clean_restart_learning_rate``). Where the look-up is learnt late, the first cycle's
    decay ends it half-learnt: 0.56 after 1,000 steps on an Intel Xeon 2-core machine (2026-12-02)."""
    clean_restart_learning_rate: float = 1e-3
    """Peak AdamW rate of the clean cycles after the first: from that Xeon's 0.56, a second cycle reached 0.95
    in 350 steps at 1e-3 and 0.97 in 550 at 3e-3, which first knocked it back to 0.09."""
    clean_target: float = 0.95
    """Greedy accuracy on the validation problems that ends the clean steps. The teacher learns to look up the
    next operand abruptly, after a number of steps that the CPU's floating-point kernels shift (by 600 steps
    on one 2-core machine, not before ~850 on an AVX-512 one, where 600 left it at 0.13): a measured accuracy,
    not a step count, gives every machine a teacher that knows the task."""
    clean_check_every: int = 50
    """Steps between two validation checks of the clean steps (a check is ~1 s of greedy decoding)."""
    validation_problems: int = 100
    """Training-split problems outside the teacher's training problems that the clean steps are checked on
    (the held-out problems of the recorded figures stay unseen)."""
    slip_steps: int = 120
    """Further teacher SFT steps on chains with forgotten carries: it learns to slip now and then."""
    carry_slip_rate: float = 0.25
    """Share of carrying steps written with the carry forgotten in the slip steps' chains (issue 17 asks sampled
    pass@1 0.5-0.7 and pass@8 >= 0.9). From one clean teacher of spec 6 (AMD EPYC, 2026-12-03), pass@1 / pass@8:
    0.2 gave 0.76 / 0.96, 0.24 0.67 / 0.95, 0.27 0.57 / 0.935, 0.3 0.47 / 0.905; 0.25 sits mid-band, so CPUs whose
    kernels shift the figures by a few points stay inside it."""
    batch_size: int = 16
    """Sequences per teacher SFT step (more, smaller steps learn the look-up sooner per second)."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate of the clean steps (tiny models tolerate a high rate)."""
    slip_learning_rate: float = 1e-3
    """Peak AdamW learning rate of the slip steps: reshapes the carry digit's odds, keeps the rest."""
    warmup_steps: int = 20
    """Linear warmup steps before the linear decay (clean teacher steps and reward model)."""
    eval_problems: int = 200
    """Held-out problems whose teacher accuracy (and reward-model AUC) is recorded."""
    eval_samples: int = 8
    """Samples per held-out problem: pass@1 averages them, pass@k is over all of them."""
    eval_temperature: float = 0.6
    """Sampling temperature of the recorded figures and reward data (the demo's, R1's recommended)."""
    eval_top_p: float = 0.95
    """Nucleus of the recorded figures and reward data (the demo's)."""
    max_new_tokens: int = 96
    """Generation budget (a worked solution of 7 operands takes ~60 tokens)."""
    reward_prompts: int = 400
    """Training-split prompts the teacher is sampled on for the reward model's data."""
    reward_samples: int = 8
    """Teacher samples per reward prompt (a prompt gives pairs when they are not all right or all wrong)."""
    reward_pairs_per_prompt: int = 8
    """Most (correct, wrong) pairs taken from one prompt's samples."""
    reward_steps: int = 150
    """Bradley-Terry steps of the reward model."""
    reward_pairs_per_step: int = 16
    """Pairs (twice as many sequences) per reward-model step."""
    reward_learning_rate: float = 1e-3
    """Peak AdamW rate for the reward model, which starts from the trained teacher."""
    reward_center_coefficient: float = 0.01
    """Weight of the reward-centering term (TRL's default advice): scores of different prompts compare."""

    def hash(self) -> str:
        """Short content hash of the spec (hex)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def sampling(self, seed: int) -> Sampling:
        """The recorded figures' sampling (temperature, top-p, budget) with ``seed``."""
        return Sampling(self.eval_temperature, self.eval_top_p, self.max_new_tokens, seed)


SPEC = TinySpec()
