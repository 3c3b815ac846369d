"""How a prompt becomes the text a model sees: the R1 instruction, the user turn, the chat template.

Contract: :func:`user_message` is the user turn (problem joined with the task's instruction) that
generation renders, the committed dataset stores in ``messages`` and the student is trained on;
:func:`render_prompt` applies a tokenizer's chat template and, when thinking is forced, ends the
text with ``<think>\\n`` (the tag comes from :mod:`factory.think`). Not covered: multi-turn prompts.
"""

from __future__ import annotations

from typing import Literal

from factory.sections import Section
from factory.think import THINK_OPEN

R1_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


class PromptingConfig(Section):
    """How a prompt becomes the text the model sees (R1 recipe defaults)."""

    instruction: str | None = R1_INSTRUCTION
    """Directive joined to every user prompt (R1 recipe); None sends the bare problem."""
    instruction_by_task: dict[str, str] = {}
    """Per-task instruction overriding ``instruction`` (e.g. code tasks ask for a code block)."""
    instruction_position: Literal["before", "after"] = "after"
    """Whether the instruction precedes or follows the problem text."""
    instruction_separator: str = "\n"
    """Text between problem and instruction."""
    system_prompt: str | None = None
    """R1 recommends none: all instructions go in the user turn."""
    force_think: bool = True
    """Start the completion with "<think>\\n" (R1 recipe) so the model cannot skip reasoning."""


def user_message(prompt: str, task: str, prompting: PromptingConfig) -> str:
    """The user turn: the problem joined with the (task's) instruction."""
    instruction = prompting.instruction_by_task.get(task, prompting.instruction)
    if not instruction:
        return prompt
    parts = [prompt, instruction] if prompting.instruction_position == "after" else [instruction, prompt]
    return prompting.instruction_separator.join(parts)


def render_prompt(tokenizer, prompt: str, task: str, prompting: PromptingConfig) -> str:
    """Chat-template text with generation prompt, ending in "<think>\\n" when forced."""
    messages = [{"role": "user", "content": user_message(prompt, task, prompting)}]
    if prompting.system_prompt:
        messages.insert(0, {"role": "system", "content": prompting.system_prompt})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if prompting.force_think and not text.endswith(THINK_OPEN + "\n"):
        text += THINK_OPEN + "\n"
    return text
