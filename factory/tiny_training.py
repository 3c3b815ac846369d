"""Training and scoring of the tiny models (plain torch, CPU): SFT of the teacher, Bradley-Terry
training of the reward model, greedy/sampled generation and accuracy on synthetic problems.

Used by :mod:`factory.tiny` to build the models and by tests that check a model learns; the
factory's own training stage is :mod:`factory.train`. Deterministic for a seed on one torch build
and thread count. Imports torch only inside functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from factory import synthetic

if TYPE_CHECKING:
    from factory.tiny import TinySpec

def chat_prompt(tokenizer, user: str) -> str:
    """The rendered prompt (with generation prompt) for one user turn."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)


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


def train_sft(model, examples, steps: int, batch_size: int, learning_rate: float, warmup: int, seed: int, done=None, check_every: int = 100) -> tuple[float, int]:
    """Plain-torch SFT (AdamW, linear warmup then linear decay over ``steps``, loss on completion
    tokens only), drawing batches with a seeded RNG. If ``done`` is given, it is called with the
    model every ``check_every`` steps and training stops early once it returns True.
    Returns (last step's loss, steps run)."""
    import random

    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.05, (steps - step) / max(1, steps - warmup)))
    )
    loss, step = float("nan"), 0
    while step < steps:
        model.train()
        ids, labels, mask = _padded_batch(rng.sample(examples, batch_size), model.config.pad_token_id)
        output = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        output.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        loss, step = output.item(), step + 1
        if done is not None and step % check_every == 0:
            model.eval()
            if done(model):
                break
    model.eval()
    return loss, step


def generate(model, tokenizer, users: list[str], max_new_tokens: int, temperature: float = 0.0, seed: int = 0) -> list[str]:
    """Completions (decoded after the forced "<think>\\n", special tokens skipped) for user turns;
    greedy when temperature is 0, else sampled with a seeded torch RNG."""
    import torch

    prompts = [chat_prompt(tokenizer, user) for user in users]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature else {"do_sample": False}
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def accuracy(model, tokenizer, problems: list[dict], max_new_tokens: int, temperature: float = 0.0, seed: int = 0) -> float:
    """Share of problems whose completion's last boxed answer equals the reference."""
    users = [synthetic.user_message(problem["prompt"]) for problem in problems]
    completions = generate(model, tokenizer, users, max_new_tokens, temperature, seed)
    return sum(synthetic.is_correct(text, p["reference"]) for text, p in zip(completions, problems, strict=True)) / len(problems)


def reward_pairs(tokenizer, questions: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Rendered chats (correct, wrong) for the reward model, one pair per question."""
    import random

    from factory.tiny import THINK

    rng = random.Random(seed)

    def render(question: str, completion: str) -> str:
        messages = [{"role": "user", "content": synthetic.user_message(question)}, {"role": "assistant", "content": f"{THINK}\n{completion}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False)

    good = [render(q, synthetic.completion_for(q)) for q in questions]
    bad = [render(q, synthetic.wrong_completion_for(q, rng)) for q in questions]
    return good, bad


def reward_scores(model, tokenizer, texts: list[str]):
    """One score per rendered chat (the classifier reads the last non-pad token)."""
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    return model(**batch).logits[:, 0]


def train_reward(model, tokenizer, questions: list[str], spec: "TinySpec", seed: int) -> None:
    """Pairwise (Bradley-Terry) training so correct worked solutions outscore corrupted ones."""
    import random

    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.reward_learning_rate)
    model.train()
    for step in range(spec.reward_steps):
        good, bad = reward_pairs(tokenizer, rng.sample(questions, spec.batch_size // 2), seed + step)
        scores = reward_scores(model, tokenizer, good + bad)
        half = len(good)
        loss = -torch.nn.functional.logsigmoid(scores[:half] - scores[half:]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def reward_auc(model, tokenizer, questions: list[str], seed: int) -> float:
    """AUC of the reward model separating correct from corrupted solutions of ``questions``."""
    import torch

    good, bad = reward_pairs(tokenizer, questions, seed)
    with torch.no_grad():
        good_scores, bad_scores = reward_scores(model, tokenizer, good), reward_scores(model, tokenizer, bad)
    wins = (good_scores[:, None] > bad_scores[None, :]).float() + 0.5 * (good_scores[:, None] == bad_scores[None, :]).float()
    return float(wins.mean())
