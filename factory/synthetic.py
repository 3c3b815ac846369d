"""A synthetic, exactly verifiable math task with worked reasoning, sized for tiny models.

Problems are chains of 3 to 4 single-digit operands joined by ``+``/``-`` ("What is 7+5+9-3?");
a subtraction is only drawn when the running total stays non-negative, so every intermediate
value lies in 0..36. The worked solution writes one line per step ("7+5=12\\n12+9=21\\n21-3=18")
and the answer is ``\\boxed{18}``: a tiny char-level transformer learns this on CPU in a minute.

Contracts:
- ``make_problems`` is deterministic in (n, seed, split); the "train" and "heldout" splits are
  disjoint by content (a problem's split is a function of its text's hash), and prompt ids are
  stable content hashes, unique within a call.
- ``solve`` is the ground truth used to train the tiny teacher; ``extract_answer``/``is_correct``
  are cheap exact checks for the tiny-model kit itself. Not covered: anything beyond this task's
  grammar (the project's real verifiers live elsewhere).
"""

from __future__ import annotations

import hashlib
import random
import re

R1_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction DeepSeek-R1 recommends appending to math prompts; the tiny teacher is trained with it."""

OPERAND_COUNTS = (3, 4)
OPERAND_RANGE = (1, 9)
HELDOUT_SHARE = 5
"""One problem in HELDOUT_SHARE (by content hash) belongs to the held-out split."""

SPLITS = ("train", "heldout")
_QUESTION = re.compile(r"What is (\d+(?:[+-]\d+)+)\?")
_TOKEN = re.compile(r"[+-]?\d+")


def user_message(prompt: str) -> str:
    """The user turn the tiny teacher was trained on: the question, a newline, the R1 instruction."""
    return f"{prompt}\n{R1_INSTRUCTION}"


def prompt_id(prompt: str) -> str:
    """Stable content id of a problem text."""
    return "syn-" + hashlib.sha1(prompt.encode()).hexdigest()[:16]


def split_of(prompt: str) -> str:
    """The split a problem belongs to, decided by its text's hash alone."""
    digest = int(hashlib.sha1(prompt.encode()).hexdigest(), 16)
    return "heldout" if digest % HELDOUT_SHARE == 0 else "train"


def _random_question(rng: random.Random) -> str:
    low, high = OPERAND_RANGE
    total = rng.randint(low, high)
    text = str(total)
    for _ in range(rng.choice(OPERAND_COUNTS) - 1):
        operand = rng.randint(low, high)
        if operand <= total and rng.random() < 0.5:
            total -= operand
            text += f"-{operand}"
        else:
            total += operand
            text += f"+{operand}"
    return f"What is {text}?"


def make_problems(n: int, seed: int, split: str = "train") -> list[dict]:
    """``n`` distinct problems of ``split`` ("train" or "heldout"), deterministic in (n, seed, split).

    Each row has ``prompt_id``, ``task`` ("math"), ``prompt`` (the question) and ``reference``
    (the final answer as a string). Raises ValueError for an unknown split or n < 0.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"synthetic:{seed}")
    rows: list[dict] = []
    seen: set[str] = set()
    for _ in range(10_000 * max(n, 1)):
        if len(rows) == n:
            return rows
        prompt = _random_question(rng)
        if prompt in seen or split_of(prompt) != split:
            continue
        seen.add(prompt)
        reference = extract_answer(solve(prompt)[1])
        rows.append({"prompt_id": prompt_id(prompt), "task": "math", "prompt": prompt, "reference": reference})
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} distinct {split} problems could be drawn, asked for {n}")
    return rows


def solve(prompt: str) -> tuple[str, str]:
    """The worked solution of a problem: (reasoning, answer_text), e.g.
    ("7+5=12\\n12+9=21\\n21-3=18", "\\boxed{18}"). The question may be embedded in a longer text
    (e.g. followed by the R1 instruction). Raises ValueError if no question of this task is found."""
    return _worked(prompt, slip_step=None, slip=0)


def _worked(prompt: str, slip_step: int | None, slip: int) -> tuple[str, str]:
    match = _QUESTION.search(prompt)
    if match is None:
        raise ValueError(f"not a synthetic arithmetic problem: {prompt[:80]!r}")
    tokens = _TOKEN.findall(match.group(1))
    total = int(tokens[0])
    steps = []
    for index, token in enumerate(tokens[1:]):
        result = total + int(token) + (slip if index == slip_step else 0)
        steps.append(f"{total}{token}={result}")
        total = result
    return "\n".join(steps), f"\\boxed{{{total}}}"


def completion_for(prompt: str) -> str:
    """The full R1-style completion after the forced "<think>\\n": reasoning, "\\n</think>\\n\\n", answer."""
    reasoning, answer = solve(prompt)
    return f"{reasoning}\n</think>\n\n{answer}"


def wrong_completion_for(prompt: str, rng: random.Random) -> str:
    """A completion in the same format with one arithmetic slip: one step's result is off by 1..3
    and later steps follow from it, so the final answer is wrong. Used to train the tiny reward model."""
    steps = len(solve(prompt)[0].split("\n"))
    reasoning, answer = _worked(prompt, slip_step=rng.randrange(steps), slip=rng.choice([-3, -2, -1, 1, 2, 3]))
    return f"{reasoning}\n</think>\n\n{answer}"


def extract_answer(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), stripped; None if there is none or
    it is unterminated."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            if depth == 0:
                return text[begin:index].strip()
            depth -= 1
    return None


def is_correct(text: str, reference: str) -> bool:
    """Whether the last boxed answer of ``text`` equals ``reference`` exactly (after stripping)."""
    answer = extract_answer(text)
    return answer is not None and answer == reference.strip()
