"""Pure text logic of ``factory serve``: no model, no Gradio, no I/O (unit-tested without a server).

Covered: splitting a streamed R1-style completion into reasoning and answer while it is still
being generated (the reasoning stays open until ``</think>`` arrives, and a half-arrived
``</think>`` is held back instead of flashing in the reasoning), turning the chat UI's history
into the messages the chat template sees (reasoning dropped, as R1's usage notes advise for
multi-turn), the checks that give a clear message for an empty or too-long prompt, the
generation budget left by the context, and the Chatbot messages one reply is shown as.
Not covered: tokenization and the template itself (the caller renders and counts tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.think import THINK_CLOSE, THINK_OPEN

REASONING_TITLE = "Reasoning"


@dataclass(frozen=True)
class ReplyParts:
    """One (possibly partial) reply split for display."""

    reasoning: str
    """Text between ``<think>`` and ``</think>`` (empty when the model did not reason)."""
    answer: str
    """Text after ``</think>``: what the model answers."""
    thinking: bool
    """True while the reasoning is still open (``</think>`` has not arrived yet)."""


def prompt_opens_reasoning(rendered_prompt: str) -> bool:
    """Whether the chat template's generation prompt already opened ``<think>`` (R1-Distill
    templates force it), so the completion starts inside the reasoning."""
    return rendered_prompt.rstrip().endswith(THINK_OPEN)


def _held_back(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def split_reasoning(text: str, starts_in_reasoning: bool) -> ReplyParts:
    """Split a completion streamed so far into reasoning and answer.

    The reasoning starts at the completion's start when the prompt opened ``<think>``, or when
    the completion itself opens with ``<think>``; it ends at the first ``</think>``. A completion
    with ``</think>`` but no opening tag is treated as reasoning up to that tag (models whose
    template forces ``<think>`` sometimes repeat or omit it). Without any tag the whole text is
    the answer, unless the reasoning was opened, in which case it is all (open) reasoning.
    """
    body = text
    stripped = body.lstrip()
    if stripped.startswith(THINK_OPEN):
        body, starts_in_reasoning = stripped[len(THINK_OPEN):], True
    if THINK_CLOSE in body:
        reasoning, answer = body.split(THINK_CLOSE, 1)
        return ReplyParts(reasoning.strip(), answer.strip(), thinking=False)
    if not starts_in_reasoning:
        return ReplyParts("", body.strip(), thinking=False)
    partial = _held_back(body, THINK_CLOSE)
    return ReplyParts(body[: len(body) - partial].strip(), "", thinking=True)


def _text_of(content) -> str:
    """The text of a Chatbot message's content (a string, or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, list | tuple):
        return "".join(_text_of(part) for part in content)
    return ""


def model_messages(history: list[dict], message: str) -> list[dict]:
    """Chat-template messages for ``history`` (Gradio "messages" format) plus the new user turn.

    Reasoning messages (those carrying a ``metadata.title``) are dropped: only final answers go
    back to the model. Consecutive assistant parts of one reply are joined into one message.
    """
    messages: list[dict] = []
    for item in history:
        role = item.get("role")
        if role not in ("user", "assistant") or (item.get("metadata") or {}).get("title"):
            continue
        text = _text_of(item.get("content"))
        if messages and messages[-1]["role"] == role == "assistant":
            messages[-1]["content"] += text
        else:
            messages.append({"role": role, "content": text})
    messages.append({"role": "user", "content": message})
    return messages


def empty_prompt_error(message: str | None) -> str | None:
    """A message for the user when the prompt is empty or blank; None when it is fine."""
    if message is None or not message.strip():
        return "The prompt is empty: type a question first."
    return None


def length_error(prompt_tokens: int, context_tokens: int) -> str | None:
    """A message for the user when the rendered prompt leaves no room to answer; None when fine.

    ``prompt_tokens`` counts the whole rendered conversation (template included)."""
    if prompt_tokens < context_tokens:
        return None
    return (
        f"The prompt is too long: {prompt_tokens} tokens with the chat template and the conversation so far, "
        f"but this model's context holds {context_tokens} tokens (prompt and answer together). "
        "Shorten the prompt or clear the conversation."
    )


def generation_budget(requested: int, prompt_tokens: int, context_tokens: int) -> int:
    """New tokens to allow: the slider's value, cut to what the context has left (at least 1)."""
    return max(1, min(int(requested), context_tokens - prompt_tokens))


NO_ANSWER = "(No answer: the reply stopped inside the reasoning. Raise \"Max new tokens\" and ask again.)"
EMPTY_ANSWER = "(The model gave an empty answer.)"


def chat_view(parts: ReplyParts, reasoning_s: float, done: bool) -> list[dict]:
    """The Chatbot messages showing one reply: a collapsible reasoning message (open with a
    spinner while thinking, closed once the reasoning or the reply is over) and, apart from it,
    the answer. A finished reply without an answer says why instead of showing nothing."""
    view = []
    if parts.reasoning or parts.thinking:
        status = "pending" if parts.thinking and not done else "done"
        metadata = {"title": REASONING_TITLE, "status": status, "duration": round(reasoning_s, 1)}
        view.append({"role": "assistant", "content": parts.reasoning, "metadata": metadata})
    answer = parts.answer
    if done and not answer:
        answer = NO_ANSWER if parts.thinking else EMPTY_ANSWER
    if answer:
        view.append({"role": "assistant", "content": answer})
    return view
