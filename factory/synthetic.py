"""A synthetic, exactly verifiable math task with worked reasoning, sized for tiny models.

Problems add 5 to 7 distinct single-digit operands ("What is 7+5+9+3+8?"), so running totals reach
two digits (up to 42). The worked solution writes one line per addition ("7+5=12\\n12+9=21\\n
21+3=24\\n24+8=32") and the answer is ``\\boxed{32}``. Operands are distinct so that the next one
to add is the one after the last one added, wherever it stands: a tiny transformer learns that
look-up in a few hundred steps, whereas with repeated digits it has to count its way through the
question. An addition whose units overflow (7+5, 12+9) carries: that is where the tiny teacher
slips, and a slip shows in its own line (the result is smaller than the running total it started
from). (Subtraction is left out: a tiny teacher trained for two minutes confuses the signs of
longer chains, an error that is systematic rather than a slip.)

Contracts:
- ``make_problems`` is deterministic in (n, seed, split); the "train" and "heldout" splits are
  disjoint by content (a problem's split is a function of its text's hash), and prompt ids are
  stable content hashes, unique within a call. References are integers, so math-verify and the
  exact check here agree on them.
- ``solve``/``completion_for`` are the ground truth. ``slipped_completion`` is the task's error
  model: a carry forgotten with some probability at each carrying addition, independently per
  step and per call, later steps following from the value written (as a person's would); it
  trains a teacher that is good but fallible. ``reword`` gives the same problem in other words
  (for decontamination checks), ``with_context`` after a long preamble (for prompts that leave the
  chain too little of the model's context); ``solve`` reads every form (any sum of single-digit operands).
- ``extract_answer``/``is_correct`` are cheap exact checks for the tiny-model kit itself.
Not covered: anything beyond this task's grammar (the project's real verifiers live elsewhere).
"""

from __future__ import annotations

import hashlib
import random
import re

from factory.think import THINK_CLOSE

R1_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction DeepSeek-R1 recommends appending to math prompts; the tiny teacher is trained with it."""

OPERAND_COUNTS = (5, 6, 7)
"""Operands per problem: 4 to 6 additions, each a line of the worked solution."""
OPERAND_RANGE = (1, 9)
"""Operands are distinct digits of this range (inclusive)."""
HELDOUT_SHARE = 5
"""One problem in HELDOUT_SHARE (by content hash) belongs to the held-out split."""

SPLITS = ("train", "heldout")
_EXPRESSION = re.compile(r"\d+(?:\s*\+\s*\d+)+")
_REWORDINGS = (
    "Compute {spaced}.",
    "Calculate {spaced}.",
    "What is the value of {spaced}?",
    "Work out {compact}.",
    "Evaluate: {spaced}",
    "what is {spaced} ?",
    "Find the sum {spaced}.",
)


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
    operands = rng.sample(range(low, high + 1), rng.choice(OPERAND_COUNTS))
    return "What is " + "+".join(map(str, operands)) + "?"


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
        rows.append({"prompt_id": prompt_id(prompt), "task": "math", "prompt": prompt, "reference": str(sum(operands(prompt)))})
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} distinct {split} problems could be drawn, asked for {n}")
    return rows


def operands(prompt: str) -> list[int]:
    """The operands of the first sum in ``prompt``, in any wording, spaces allowed ("Compute
    7 + 5 + 3." -> [7, 5, 3]). Raises ValueError if the text holds no such sum."""
    match = _EXPRESSION.search(prompt)
    if match is None:
        raise ValueError(f"not a synthetic arithmetic problem: {prompt[:80]!r}")
    return [int(digits) for digits in match.group(0).split("+")]


def carries(total: int, term: int) -> bool:
    """Whether the step ``total + term`` carries (its result has another tens digit)."""
    return (total + term) // 10 != total // 10


_ANSWER_SEPARATOR = f"\n{THINK_CLOSE}\n\n"


def solve(prompt: str) -> tuple[str, str]:
    """The worked solution of a problem: (reasoning, answer_text), e.g.
    ("7+5=12\\n12+9=21\\n21+3=24", "\\boxed{24}"). The question may be embedded in a longer text
    (e.g. followed by the R1 instruction) or reworded. Raises ValueError if no question of this
    task is found."""
    reasoning, _, answer = completion_for(prompt).partition(_ANSWER_SEPARATOR)
    return reasoning, answer


def completion_for(prompt: str) -> str:
    """The full R1-style completion after the forced "<think>\\n": reasoning, "\\n</think>\\n\\n", answer."""
    return slipped_completion(prompt, random.Random(0), carry_slip_rate=0.0)


def slipped_completion(prompt: str, rng: random.Random, carry_slip_rate: float) -> str:
    """A completion written by a fallible solver: at each carrying addition the carry is forgotten
    (the result written ten too low) with probability ``carry_slip_rate``; every later step
    starts from the value written, and the answer is the last line's. Slips are drawn independently
    per step and per call, so two calls on one problem err in different places (or not at all)."""
    values = operands(prompt)
    steps, total = [], values[0]
    for term in values[1:]:
        slipped = carries(total, term) and rng.random() < carry_slip_rate
        steps.append(f"{total}+{term}={total + term - (10 if slipped else 0)}")
        total = total + term - (10 if slipped else 0)
    return "\n".join(steps) + f"{_ANSWER_SEPARATOR}\\boxed{{{total}}}"


def reword(prompt: str, seed: int) -> str:
    """The same problem in other words, deterministic in (prompt, seed): another phrasing and
    spacing around the same operands, in order ("What is 7+5+3?" -> "Compute 7 + 5 + 3.").
    Never equal to ``prompt``; ``solve`` reads it unchanged."""
    compact = "+".join(map(str, operands(prompt)))
    choices = [template.format(spaced=compact.replace("+", " + "), compact=compact) for template in _REWORDINGS]
    return random.Random(f"reword:{seed}:{prompt}").choice([text for text in choices if text != prompt])


_CONTEXT_WORDS = ("the", "reading", "group", "met", "again", "after", "lunch", "and", "talked", "about", "maps",
                  "rivers", "old", "letters", "a", "garden", "while", "rain", "fell", "on", "quiet", "streets", "of",
                  "town", "someone", "brought", "tea", "notes", "were", "kept", "in", "blue", "folder")


def with_context(prompt: str, chars: int, seed: int) -> str:
    """``prompt`` after about ``chars`` characters of unrelated prose (no digits, so ``solve`` still reads the
    question), deterministic in (prompt, chars, seed): a long document before a question, hence a long prompt."""
    rng = random.Random(f"context:{seed}:{prompt}")
    words: list[str] = []
    length = 0
    while length < chars:
        words.append(rng.choice(_CONTEXT_WORDS))
        length += len(words[-1]) + 1
    return "Notes: " + " ".join(words) + ".\n" + prompt


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
