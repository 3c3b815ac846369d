"""Training and scoring of the tiny models (plain torch, CPU): SFT, sampling as the factory samples
(temperature, top-p, n per prompt), exact grading, pass@k, and Bradley-Terry reward-model training
and AUC on a model's own graded samples.

Used by :mod:`factory.tiny` to build the kit and by tests and benchmarks that check what a model
learns; the factory's own training stage is :mod:`factory.train`. Long loops log their progress
(step/total, a metric, ETA; at most one line per ``PROGRESS_EVERY_S``) to the ``factory.tiny``
logger. Deterministic for a seed on one torch build and thread count. Imports torch only inside
functions. Not covered: GPUs, mixed precision, anything but the synthetic task's exact check.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass

from factory import synthetic
from factory.think import THINK_OPEN

_log = logging.getLogger("factory.tiny")

PROGRESS_EVERY_S = 10.0
"""Seconds between progress lines of one loop (its first and last step are always logged)."""


class Progress:
    """Throttled progress lines for one loop: ``<label>: step 120/600 loss 0.41, eta 80s``."""

    def __init__(self, label: str, total: int, every_s: float = PROGRESS_EVERY_S) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.start = self.last = time.monotonic()

    def update(self, done: int, metric: str = "") -> None:
        """Log ``done`` of ``total`` with ``metric`` if the last line is ``every_s`` old (or at the end)."""
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = f"eta {(self.total - done) / rate:.0f}s" if done < self.total else f"done in {now - self.start:.0f}s"
        _log.info("%s: %d/%d %s%s", self.label, done, self.total, f"{metric}, " if metric else "", eta)


def chat_prompt(tokenizer, user: str) -> str:
    """The rendered prompt (with generation prompt) for one user turn."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)


def chat_text(tokenizer, user: str, completion: str) -> str:
    """A whole rendered chat as the reward stage renders it: the user turn, then the assistant turn
    "<think>\\n" + completion (the completion starts after the forced "<think>\\n")."""
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": f"{THINK_OPEN}\n{completion}"}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def user_variants(question: str) -> list[str]:
    """Phrasings the teacher is trained on, so pipelines may or may not append the R1 instruction."""
    return [synthetic.user_message(question)] * 3 + [question, f"{question} {synthetic.R1_INSTRUCTION}"]


def sft_examples(tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """Token ids (prompt, completion+eos) for (user text, completion after "<think>\\n") pairs."""
    examples = []
    for user, completion in pairs:
        prompt_ids = tokenizer.encode(chat_prompt(tokenizer, user), add_special_tokens=False)
        completion_ids = tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]
        examples.append((prompt_ids, completion_ids))
    return examples


def _padded_batch(examples, pad_id: int):
    import torch

    width = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (prompt, completion) in enumerate(examples):
        sequence = prompt + completion
        ids[row, : len(sequence)] = torch.tensor(sequence)
        labels[row, len(prompt) : len(sequence)] = torch.tensor(completion)
        mask[row, : len(sequence)] = 1
    return ids, labels, mask


def _schedule(optimizer, steps: int, warmup: int):
    """Linear warmup over ``warmup`` steps, then linear decay to 5% of the peak at ``steps``."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.05, (steps - step) / max(1, steps - warmup)))
    )


def train_sft(model, examples, steps: int, batch_size: int, learning_rate: float, warmup: int, seed: int,
              label: str = "sft", seconds: float | None = None, stop_when=None, check_every: int = 50) -> tuple[float, int]:
    """Plain-torch SFT (AdamW, ``_schedule``, loss on completion tokens only), drawing batches with
    a seeded RNG; logs progress as ``label``. With ``seconds``, stops at the first step past that
    wall time (for learnability checks; the run is then not reproducible). With ``stop_when`` (called
    with the model in eval mode every ``check_every`` steps), stops at the first check it returns True
    (still deterministic: the check only reads the model). Returns (mean loss of the last ten steps,
    steps run)."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = _schedule(optimizer, steps, warmup)
    progress, start, recent = Progress(label, steps), time.monotonic(), []
    model.train()
    for step in range(1, steps + 1):
        ids, labels, mask = _padded_batch(rng.sample(examples, batch_size), model.config.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        recent = (recent + [loss.item()])[-10:]
        progress.update(step, f"loss {sum(recent) / len(recent):.3f}")
        if seconds is not None and time.monotonic() - start > seconds:
            break
        if stop_when is not None and step % check_every == 0:
            model.eval()
            if stop_when(model):
                break
            model.train()
    model.eval()
    return sum(recent) / len(recent), step


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn: greedy when ``temperature`` is 0, else sampled with top-p."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 0


def generate(model, tokenizer, users: list[str], sampling: Sampling, n: int = 1, batch_size: int = 512,
             label: str | None = None) -> list[list[str]]:
    """``n`` completions per user turn (decoded after the forced "<think>\\n", special tokens
    skipped), generated ``batch_size`` sequences at a time with a seeded torch RNG."""
    import torch

    flat = [user for user in users for _ in range(n)]
    progress = Progress(label, len(flat)) if label else None
    torch.manual_seed(sampling.seed)
    options = {"do_sample": False}
    if sampling.temperature:
        options = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
    texts: list[str] = []
    for begin in range(0, len(flat), batch_size):
        prompts = [chat_prompt(tokenizer, user) for user in flat[begin : begin + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **options)
        texts += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        if progress:
            progress.update(len(texts))
    return [texts[index * n : (index + 1) * n] for index in range(len(users))]


def solve_problems(model, tokenizer, problems: list[dict], sampling: Sampling, n: int = 1, label: str | None = None) -> list[list[str]]:
    """``n`` completions for each synthetic problem, asked as the factory asks (``user_message``)."""
    users = [synthetic.user_message(problem["prompt"]) for problem in problems]
    return generate(model, tokenizer, users, sampling, n, label=label)


def grades(problems: list[dict], completions: list[list[str]]) -> list[list[bool]]:
    """Exact correctness of each completion of each problem."""
    return [[synthetic.is_correct(text, p["reference"]) for text in texts] for p, texts in zip(problems, completions, strict=True)]


def pass_at_k(graded: list[list[bool]], k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021) averaged over problems: 1 - C(n-c, k) / C(n, k) per problem."""
    total = 0.0
    for samples in graded:
        n, c = len(samples), sum(samples)
        if k > n:
            raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
        total += 1.0 - math.comb(n - c, k) / math.comb(n, k)
    return total / len(graded)


def accuracy(model, tokenizer, problems: list[dict], sampling: Sampling = Sampling()) -> float:
    """Share of problems whose single completion's last boxed answer equals the reference."""
    return pass_at_k(grades(problems, solve_problems(model, tokenizer, problems, sampling)), 1)


def reward_pairs(problems: list[dict], completions: list[list[str]], graded: list[list[bool]], per_prompt: int,
                 seed: int) -> list[tuple[str, str, str]]:
    """(user, correct completion, wrong completion) triples from graded samples: for each problem
    with both kinds, up to ``per_prompt`` pairs drawn without repeating a pair."""
    rng = random.Random(seed)
    triples = []
    for problem, texts, marks in zip(problems, completions, graded, strict=True):
        good = [t for t, ok in zip(texts, marks, strict=True) if ok]
        bad = [t for t, ok in zip(texts, marks, strict=True) if not ok]
        pairs = [(g, b) for g in good for b in bad]
        user = synthetic.user_message(problem["prompt"])
        triples += [(user, g, b) for g, b in rng.sample(pairs, min(per_prompt, len(pairs)))]
    return triples


def reward_scores(model, tokenizer, texts: list[str], batch_size: int = 256) -> list[float]:
    """One score per rendered chat (the classifier reads the last non-pad token), without gradients."""
    import torch

    scores: list[float] = []
    with torch.no_grad():
        for begin in range(0, len(texts), batch_size):
            scores += _score_batch(model, tokenizer, texts[begin : begin + batch_size]).tolist()
    return scores


def _score_batch(model, tokenizer, texts: list[str]):
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    return model(**batch).logits[:, 0]


def train_reward(model, tokenizer, triples: list[tuple[str, str, str]], steps: int, pairs_per_step: int,
                 learning_rate: float, warmup: int, seed: int, center_coefficient: float = 0.0) -> float | None:
    """Pairwise Bradley-Terry training (-log sigmoid(score correct - score wrong)) on (user, correct,
    wrong) triples, drawn with replacement by a seeded RNG; logs progress. ``center_coefficient``
    adds that times the mean squared pair sum (score correct + score wrong), the reward centering
    of Eisenstein et al. 2023 (TRL's ``center_rewards_coefficient``): it keeps each prompt's scores
    around zero, so scores of different prompts compare. Returns the mean loss of the last ten
    steps, or None (model untouched) when there are no triples."""
    import torch

    if not triples:
        _log.warning("tiny reward model: no (correct, wrong) pairs to train on; left untrained")
        return None

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = _schedule(optimizer, steps, warmup)
    progress, recent = Progress("tiny reward model", steps), []
    model.train()
    for step in range(1, steps + 1):
        batch = rng.choices(triples, k=pairs_per_step)
        texts = [chat_text(tokenizer, u, g) for u, g, _ in batch] + [chat_text(tokenizer, u, b) for u, _, b in batch]
        scores = _score_batch(model, tokenizer, texts)
        good, bad = scores[:pairs_per_step], scores[pairs_per_step:]
        loss = -torch.nn.functional.logsigmoid(good - bad).mean() + center_coefficient * ((good + bad) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        recent = (recent + [loss.item()])[-10:]
        progress.update(step, f"pairwise loss {sum(recent) / len(recent):.3f}")
    model.eval()
    return sum(recent) / len(recent)


def auc(positive: list[float], negative: list[float]) -> float | None:
    """Probability that a random positive outscores a random negative (ties count half); None
    when either side is empty."""
    if not positive or not negative:
        return None
    ranked = sorted([(s, 1) for s in positive] + [(s, 0) for s in negative])
    rank_sum, index = 0.0, 0
    while index < len(ranked):  # average ranks over ties (Mann-Whitney U)
        end = index
        while end < len(ranked) and ranked[end][0] == ranked[index][0]:
            end += 1
        rank_sum += sum(label for _, label in ranked[index:end]) * (index + end + 1) / 2
        index = end
    return (rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))


def reward_quality(model, tokenizer, problems: list[dict], completions: list[list[str]], graded: list[list[bool]]) -> dict:
    """How well the reward model ranks graded samples: ``auc`` over all correct vs all wrong samples,
    and ``pairwise_accuracy`` over (correct, wrong) pairs of the same problem (ties count half);
    None where there is nothing to compare."""
    users = [synthetic.user_message(problem["prompt"]) for problem in problems]
    flat = [chat_text(tokenizer, user, text) for user, texts in zip(users, completions, strict=True) for text in texts]
    scores = iter(reward_scores(model, tokenizer, flat))
    per_problem = [[next(scores) for _ in texts] for texts in completions]
    positive = [s for ss, ms in zip(per_problem, graded, strict=True) for s, ok in zip(ss, ms, strict=True) if ok]
    negative = [s for ss, ms in zip(per_problem, graded, strict=True) for s, ok in zip(ss, ms, strict=True) if not ok]
    wins = pairs = 0.0
    for ss, ms in zip(per_problem, graded, strict=True):
        for good in (s for s, ok in zip(ss, ms, strict=True) if ok):
            for bad in (s for s, ok in zip(ss, ms, strict=True) if not ok):
                wins, pairs = wins + (good > bad) + 0.5 * (good == bad), pairs + 1
    return {"auc": auc(positive, negative), "pairwise_accuracy": wins / pairs if pairs else None,
            "pairs": int(pairs), "samples": len(flat)}
