"""Pure text helpers: extract final answers and code from an answer text (the split at ``</think>`` and
the format check are :mod:`factory.think`'s).

Covered: the last ``\\boxed{...}`` with nested braces (``\\boxed 5`` without braces is not
accepted), the GSM8K ``#### N`` marker, the last fenced ```python block. Not covered: answers stated only
in prose ("the answer is 5") — those are ``no_answer`` by design, so the dataset teaches the format.
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K = re.compile(r"####\s*([^\n]+)")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = {"python", "py", "python3", ""}


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
