"""R1's reasoning tags and the one rule that splits a completion into reasoning and answer.

Rule (used by generation, verification, the quality filter, the reward model, the dataset rows and
the serving UI alike): a completion starts inside the reasoning — generation forces ``<think>\\n``
into the prompt, and a leading ``<think>`` the model wrote itself is skipped — and the reasoning ends
at the FIRST ``</think>``; everything after it is the answer. This is how vLLM's DeepSeek-R1
reasoning parser splits a reply, so what is scored, stored and trained on is what a served model
returns. A chain without a closing tag has no answer (``None``). A completion with further tags is
split by the same rule and reported by :func:`format_problem`, so the format filter drops it.
Not covered: other reasoning-tag conventions (e.g. ``<reasoning>``); tags are matched literally.
"""

from __future__ import annotations

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
FORMAT_PROBLEMS = ("unopened_think", "unclosed_think", "bad_think_format", "empty_reasoning", "missing_answer")
"""Every reason :func:`format_problem` can give, in the order it checks them."""


def _body(completion: str) -> tuple[str, bool]:
    """The completion without a leading ``<think>``, and whether that tag was there."""
    text = completion.lstrip()
    if text.startswith(THINK_OPEN):
        return text[len(THINK_OPEN):], True
    return completion, False


def split_completion(completion: str) -> tuple[str, str | None]:
    """``(reasoning, answer)``, both stripped; ``answer`` is None when the reasoning never closed."""
    reasoning, closed, answer = _body(completion)[0].partition(THINK_CLOSE)
    return reasoning.strip(), answer.strip() if closed else None


def format_problem(completion: str, think_prefilled: bool = True) -> str | None:
    """None for a well-formed R1 completion, else its first problem (:data:`FORMAT_PROBLEMS`):
    ``unopened_think`` (no ``<think>``, and it was not forced into the prompt), ``unclosed_think``,
    ``bad_think_format`` (a further tag in the reasoning or the answer), ``empty_reasoning``,
    ``missing_answer`` (nothing after ``</think>``)."""
    body, opened = _body(completion)
    if not opened and not think_prefilled:
        return "unopened_think"
    reasoning, closed, answer = body.partition(THINK_CLOSE)
    if not closed:
        return "unclosed_think"
    if THINK_OPEN in reasoning or THINK_OPEN in answer or THINK_CLOSE in answer:
        return "bad_think_format"
    if not reasoning.strip():
        return "empty_reasoning"
    if not answer.strip():
        return "missing_answer"
    return None


def format_ok(completion: str | None, think_prefilled: bool = True) -> bool:
    """True when :func:`format_problem` finds nothing wrong (False for a missing completion)."""
    return completion is not None and format_problem(completion, think_prefilled) is None
