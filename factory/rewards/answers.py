"""Pure text helpers: split a completion at ``</think>``, extract final answers and code, check format.

Covered: the last ``\\boxed{...}`` with nested braces (``\\boxed 5`` without braces is not
accepted), the GSM8K ``#### N`` marker, the last fenced ```python block. Not covered: answers stated only
in prose ("the answer is 5") — those are ``no_answer`` by design, so the dataset teaches the format.
"""

from __future__ import annotations

import re

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K = re.compile(r"####\s*([^\n]+)")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = {"python", "py", "python3", ""}


def split_answer(completion: str) -> tuple[str | None, str | None]:
    """Return ``(reasoning, answer)``: the text before and after the LAST ``</think>``.

    Without a closing tag the whole completion is reasoning and the answer is None.
    A leading ``<think>`` tag is stripped from the reasoning.
    """
    head, sep, tail = completion.rpartition(THINK_CLOSE)
    if not sep:
        return completion, None
    reasoning = head.lstrip()
    if reasoning.startswith(THINK_OPEN):
        reasoning = reasoning[len(THINK_OPEN):]
    return reasoning, tail


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced nested braces, or None."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            char = text[pos]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    content = text[start:pos].strip()
                    if content:
                        return content
                    break
    return None


def gsm8k_final(text: str) -> str | None:
    """The value after the last GSM8K ``####`` marker, with thousands separators removed, or None."""
    matches = _GSM8K.findall(text)
    if not matches:
        return None
    value = matches[-1].strip().replace(",", "")
    return value or None


def extract_final_answer(text: str | None) -> str | None:
    """The final answer of a response: the last ``\\boxed{}``, else the last ``#### N``, else None."""
    if not text:
        return None
    return last_boxed(text) or gsm8k_final(text)


def extract_code(answer: str | None) -> str | None:
    """Candidate code: the last fenced python (or untagged) block, else the whole answer; None if blank."""
    if not answer or not answer.strip():
        return None
    blocks = [body for lang, body in _FENCE.findall(answer) if lang.lower() in _CODE_LANGS]
    code = blocks[-1] if blocks else answer
    return code if code.strip() else None


def format_ok(completion: str | None, think_prefilled: bool = True) -> bool:
    """True when the response opens ``<think>`` once, closes it once after that, and has a non-blank
    final answer after ``</think>``.

    ``think_prefilled``: the generation template forces ``"<think>\\n"`` before the completion, so a
    completion that does not start with the tag is read as if it did.
    """
    if completion is None:
        return False
    text = completion
    if think_prefilled and not text.lstrip().startswith(THINK_OPEN):
        text = THINK_OPEN + "\n" + text
    if text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return False
    open_at, close_at = text.index(THINK_OPEN), text.index(THINK_CLOSE)
    return open_at < close_at and bool(text[close_at + len(THINK_CLOSE):].strip())
