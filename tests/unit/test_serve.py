"""``factory serve`` without a server: reasoning/answer splitting as text streams in, history to
template messages, prompt checks and budget, Chatbot view, bind policy, slider defaults, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from factory import serve, serve_text
from factory.serve_engines import context_limit
from factory.serve_text import ReplyParts, split_reasoning

TEACHER_REPLY = "7+5=12\n12+9=21\n21-3=18\n</think>\n\n\\boxed{18}"


@pytest.mark.parametrize(
    ("text", "opens", "expected"),
    [
        ("", True, ReplyParts("", "", thinking=True)),
        ("7+5=12\n", True, ReplyParts("7+5=12", "", thinking=True)),
        ("7+5=12\n</think>", True, ReplyParts("7+5=12", "", thinking=False)),
        (TEACHER_REPLY, True, ReplyParts("7+5=12\n12+9=21\n21-3=18", "\\boxed{18}", thinking=False)),
        ("<think>\nhmm\n</think>\n\nyes", False, ReplyParts("hmm", "yes", thinking=False)),
        ("  <think>hmm", False, ReplyParts("hmm", "", thinking=True)),
        ("plain answer", False, ReplyParts("", "plain answer", thinking=False)),
        ("forgot the tag</think>answer", False, ReplyParts("forgot the tag", "answer", thinking=False)),
        ("a</think>b</think>c", True, ReplyParts("a", "b</think>c", thinking=False)),
    ],
)
def test_split_reasoning_cases(text, opens, expected):
    assert split_reasoning(text, opens) == expected


def test_reasoning_stays_open_until_the_end_tag_arrives():
    cut = TEACHER_REPLY.index("</think>") + len("</think>")
    for end in range(len(TEACHER_REPLY) + 1):
        parts = split_reasoning(TEACHER_REPLY[:end], True)
        assert parts.thinking == (end < cut), end
        assert "</think>" not in parts.reasoning and "</think>" not in parts.answer


@pytest.mark.parametrize("partial", ["<", "</", "</th", "</think"])
def test_half_arrived_end_tag_is_held_back_from_the_reasoning(partial):
    assert split_reasoning("12+9=21\n" + partial, True) == ReplyParts("12+9=21", "", thinking=True)


def test_reasoning_text_only_grows_while_streaming():
    shown = [split_reasoning(TEACHER_REPLY[:end], True).reasoning for end in range(len(TEACHER_REPLY) + 1)]
    assert all(later.startswith(earlier) for earlier, later in zip(shown, shown[1:]))


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>\n", True),
        ("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", False),
        ("<think> is mentioned but not last", False),
    ],
)
def test_prompt_opens_reasoning_cases(prompt, expected):
    assert serve_text.prompt_opens_reasoning(prompt) is expected


def test_model_messages_drop_reasoning_and_keep_answers():
    history = [
        {"role": "user", "content": "What is 1+2?"},
        {"role": "assistant", "content": "1+2=3", "metadata": {"title": "Reasoning", "status": "done"}},
        {"role": "assistant", "content": [{"type": "text", "text": "\\boxed{3}"}]},
    ]
    assert serve_text.model_messages(history, "And 3+4?") == [
        {"role": "user", "content": "What is 1+2?"},
        {"role": "assistant", "content": "\\boxed{3}"},
        {"role": "user", "content": "And 3+4?"},
    ]


def test_model_messages_join_consecutive_assistant_parts():
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert serve_text.model_messages(history, "next")[1] == {"role": "assistant", "content": "ab"}


@pytest.mark.parametrize(("message", "refused"), [("", True), ("   \n\t", True), (None, True), ("What is 2+2?", False)])
def test_empty_prompt_error_cases(message, refused):
    problem = serve_text.empty_prompt_error(message)
    assert (problem is not None) is refused
    if refused:
        assert "empty" in problem


@pytest.mark.parametrize(("prompt_tokens", "refused"), [(10, False), (511, False), (512, True), (900, True)])
def test_length_error_leaves_room_for_at_least_one_token(prompt_tokens, refused):
    problem = serve_text.length_error(prompt_tokens, 512)
    assert (problem is not None) is refused
    if refused:
        assert f"{prompt_tokens} tokens" in problem and "512 tokens" in problem


@pytest.mark.parametrize(
    ("requested", "prompt_tokens", "expected"), [(2048, 40, 472), (64, 40, 64), (2048, 511, 1), (100, 412, 100)]
)
def test_generation_budget_is_cut_to_the_context_left(requested, prompt_tokens, expected):
    assert serve_text.generation_budget(requested, prompt_tokens, 512) == expected


def test_chat_view_shows_open_reasoning_with_spinner_and_no_answer_yet():
    view = serve_text.chat_view(ReplyParts("7+5=12", "", thinking=True), 0.5, done=False)
    assert view == [{"role": "assistant", "content": "7+5=12",
                     "metadata": {"title": "Reasoning", "status": "pending", "duration": 0.5}}]


def test_chat_view_shows_reasoning_closed_and_answer_apart():
    view = serve_text.chat_view(ReplyParts("7+5=12", "\\boxed{12}", thinking=False), 1.24, done=True)
    assert view[0]["metadata"]["status"] == "done" and view[0]["content"] == "7+5=12"
    assert view[1] == {"role": "assistant", "content": "\\boxed{12}"}


def test_chat_view_explains_a_reply_cut_inside_the_reasoning():
    view = serve_text.chat_view(ReplyParts("7+5=", "", thinking=True), 2.0, done=True)
    assert view[0]["metadata"]["status"] == "done"
    assert view[1]["content"] == serve_text.NO_ANSWER


def test_chat_view_without_reasoning_is_just_the_answer():
    assert serve_text.chat_view(ReplyParts("", "hello", thinking=False), 0.0, done=True) == [
        {"role": "assistant", "content": "hello"}
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_allowed_without_flag(host):
    serve.check_bind(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "192.168.0.7"])
def test_non_loopback_hosts_are_refused_without_flag(host):
    with pytest.raises(serve.BindRefused, match="--allow-remote"):
        serve.check_bind(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3"])
def test_non_loopback_hosts_are_allowed_with_flag(host):
    serve.check_bind(host, allow_remote=True)


def test_serve_refuses_remote_bind_before_loading_the_model(tmp_path):
    with pytest.raises(SystemExit, match="refusing to bind '0.0.0.0'"):
        serve.serve(str(tmp_path / "no-such-model"), host="0.0.0.0", port=7860)


def test_serve_reports_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        serve.serve(str(tmp_path / "no-such-model"))


def test_sliders_keep_the_write_up_ranges_and_defaults():
    assert (serve.MAX_TOKENS.minimum, serve.MAX_TOKENS.maximum) == (64, 2048)
    assert (serve.TEMPERATURE.minimum, serve.TEMPERATURE.maximum, serve.TEMPERATURE.default) == (0.1, 1.2, 0.6)
    assert (serve.TOP_P.minimum, serve.TOP_P.maximum, serve.TOP_P.default) == (0.7, 1.0, 0.95)


class _Tokenizer:
    def __init__(self, model_max_length):
        self.model_max_length = model_max_length


@pytest.mark.parametrize(
    ("model_limit", "tokenizer_limit", "expected"),
    [(512, 512, 512), (4096, int(1e30), 4096), (4096, 2048, 2048), (None, 1024, 1024)],
)
def test_context_limit_ignores_the_tokenizer_sentinel(model_limit, tokenizer_limit, expected):
    assert context_limit(model_limit, _Tokenizer(tokenizer_limit)) == expected


def test_serve_modules_import_no_heavy_library():
    heavy = ["torch", "transformers", "vllm", "gradio"]
    code = (
        "import sys, json, factory.serve, factory.serve_engines, factory.engines.vllm_stream; "
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
