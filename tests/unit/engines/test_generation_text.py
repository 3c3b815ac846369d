"""Prompt rendering and completion splitting (R1 format)."""

from __future__ import annotations

import pytest

from factory.engines.base import prompt_seed
from factory.prompting import PromptingConfig, render_prompt, user_message


@pytest.mark.parametrize(
    ("prompting", "task", "expected"),
    [
        (PromptingConfig(instruction="Do it."), "math", "Q?\nDo it."),
        (PromptingConfig(instruction="Do it.", instruction_position="before"), "math", "Do it.\nQ?"),
        (PromptingConfig(instruction=None), "math", "Q?"),
        (PromptingConfig(instruction="Do it.", instruction_by_task={"code": "Write code."}), "code", "Q?\nWrite code."),
    ],
)
def test_user_message(prompting, task, expected):
    assert user_message("Q?", task, prompting) == expected


def test_rendered_prompt_ends_with_forced_think(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.tokenizer)
    text = render_prompt(tokenizer, "1+1?", "math", PromptingConfig())
    assert text.endswith("<think>\n") and text.count("<think>") == 1
    assert "1+1?\nPlease reason step by step" in text


def test_system_prompt_is_rendered_when_set(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.tokenizer)
    text = render_prompt(tokenizer, "1+1?", "math", PromptingConfig(system_prompt="SYS"))
    assert text.index("SYS") < text.index("1+1?")


def test_prompt_seed_is_stable_and_differs_per_prompt():
    assert prompt_seed(0, "a") == prompt_seed(0, "a") != prompt_seed(0, "b")
    assert prompt_seed(None, "a") is None
