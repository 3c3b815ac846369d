"""``factory serve`` end to end: the real CLI serving the tiny teacher on 127.0.0.1 (a free port,
stopped at the end), driven from headless Debian Chromium (selenium + /usr/bin/chromedriver) and
from ``gradio_client``. One browser conversation is recorded once (every DOM change of the chat,
through a MutationObserver) and several properties are checked on the record. The browser tests
are marked ``browser``; the vLLM variant is marked ``slow`` (engine start)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.serve import TEMPERATURE, TOP_P

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000"]
QUESTION = "What is 7+5+9-3?"
STEP = re.compile(r"\d+[+-]\d+=\d+")
"""One worked step of the teacher's reasoning, e.g. "7+5=12"."""
DURATION = re.compile(r"\(\d+(?:\.\d+)?s\)")
"""The reasoning title's timer, e.g. "(0.4s)": it changes without the reasoning changing."""
NEAR_GREEDY = {"temperature": str(TEMPERATURE.minimum), "top-p": str(TOP_P.minimum)}
"""The sliders' lowest settings, set before asking: the fallible tiny teacher slips now and then at the default
0.6 (once a reply's answer came out as "\\boxe12+5"), and the checks are of the page, not of the model."""
START_TIMEOUT_S = 240
REPLY_TIMEOUT_S = 120

SNAPSHOT = """
const chat = document.querySelector('#chat');
const snapshot = () => {
  const rows = [...chat.querySelectorAll('.bot-row')];
  const thought = rows.map(r => r.querySelector('.thought-group')).filter(Boolean).pop();
  const answerRow = rows.filter(r => !r.querySelector('.thought-group')).pop();
  return [thought ? thought.textContent : '', answerRow ? answerRow.querySelector('.message-content').textContent : ''];
};
"""
"""Defines snapshot(): [reasoning section text, answer text] of the last reply in the chat."""
RECORDER = SNAPSHOT + """
window.__replies = [];
new MutationObserver(() => {
  const now = snapshot(), last = window.__replies[window.__replies.length - 1];
  if (!last || last[0] !== now[0] || last[1] !== now[1]) window.__replies.push(now);
}).observe(chat, {subtree: true, childList: true, characterData: true});
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(model: str, backend: str, log_path: Path):
    """Run ``factory serve`` in a subprocess; return (process, url) once the page answers."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory.cli", "serve", "--model", model, "--port", str(port), "--backend", backend],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"factory serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    _stop(proc)
    pytest.fail(f"factory serve did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def _stop(proc) -> None:
    proc.terminate()  # SIGTERM: serve closes Gradio, then the engine
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server_url(tiny_models, tmp_path_factory):
    proc, url = _start_server(tiny_models.teacher, "transformers", tmp_path_factory.mktemp("serve") / "serve.log")
    yield url
    _stop(proc)


@dataclass(frozen=True)
class Conversation:
    """What the browser saw while one question was answered."""

    replies: list
    """(reasoning text, answer text) of the reply after every DOM change, in order."""
    final: tuple
    """(reasoning text, answer text) once finished, reasoning section opened."""
    screenshot: Path
    """PNG of the page after the reply, reasoning expanded."""


@pytest.fixture(scope="module")
def conversation(server_url, tmp_path_factory) -> Conversation:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    out = tmp_path_factory.mktemp("browser")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={out / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(server_url)
        wait = WebDriverWait(driver, 60)
        box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"))
        for elem_id, value in NEAR_GREEDY.items():  # type into each slider's number box, as a user would
            number = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
            number.send_keys(Keys.CONTROL, "a")
            number.send_keys(value, Keys.TAB)
            wait.until(lambda d, e=elem_id, v=value: float(
                d.find_element(By.CSS_SELECTOR, f"#{e} input[type=range]").get_attribute("value")) == float(v))
        driver.execute_script(RECORDER)
        box.send_keys(QUESTION)
        box.send_keys(Keys.ENTER)
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.__replies.some(r => r[0] || r[1]);"))
        WebDriverWait(driver, REPLY_TIMEOUT_S).until(
            lambda d: not d.find_elements(By.CSS_SELECTOR, "#prompt .stop-button")
            and d.find_elements(By.CSS_SELECTOR, "#prompt .submit-button"))
        replies = driver.execute_script("return window.__replies;")
        driver.find_element(By.CSS_SELECTOR, "#chat .thought-group .title").click()  # done: collapsed, open it
        time.sleep(0.5)
        final = driver.execute_script(SNAPSHOT + "return snapshot();")
        screenshot = out / "serve.png"
        driver.save_screenshot(str(screenshot))
        if os.environ.get("FACTORY_SERVE_SCREENSHOT"):  # refresh docs/img/serve.png by hand
            shutil.copy(screenshot, os.environ["FACTORY_SERVE_SCREENSHOT"])
    finally:
        driver.quit()
    return Conversation(replies=[tuple(r) for r in replies], final=tuple(final), screenshot=screenshot)


@pytest.mark.browser
def test_browser_sees_the_reply_stream_in_several_updates(conversation):
    before_final = conversation.replies[:-1]
    assert len({r for r in before_final if any(r)}) >= 3, conversation.replies


@pytest.mark.browser
def test_browser_sees_the_reasoning_grow_before_the_answer_appears(conversation):
    reasoning_only = [DURATION.sub("", r[0]) for r in conversation.replies if r[0].strip() and not r[1].strip()]
    assert len({text for text in reasoning_only if "=" in text}) >= 2, conversation.replies


@pytest.mark.browser
def test_browser_shows_reasoning_and_answer_separately(conversation):
    reasoning, answer = conversation.final
    assert "=" in reasoning and "\\boxed{" not in reasoning and "</think>" not in reasoning
    assert "\\boxed{" in answer and not STEP.search(answer) and "</think>" not in answer


@pytest.mark.browser
def test_browser_screenshot_is_a_non_trivial_png(conversation):
    data = conversation.screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a blank 1280×1000 page compresses to a few KB


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_client_receives_streamed_outputs_reasoning_apart_from_answer(server_url):
    job = _client(server_url).submit(QUESTION, 256, 0.1, 0.95, api_name="/chat")  # near-greedy: stable format
    updates = list(job)
    assert len(updates) >= 3
    reasoning, answer = updates[-1]
    assert reasoning["metadata"] == {"title": "Reasoning", "status": "done", "duration": reasoning["metadata"]["duration"]}
    assert "=" in reasoning["content"] and "\\boxed{" not in reasoning["content"] and "\\boxed{" in answer["content"]
    assert any(update[0]["metadata"]["status"] == "pending" for update in updates)


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_client_empty_prompt_gets_a_message_and_the_server_keeps_serving(server_url, prompt):
    from gradio_client.exceptions import AppError

    client = _client(server_url)
    with pytest.raises(AppError, match="The prompt is empty"):
        client.predict(prompt, 64, 0.6, 0.95, api_name="/chat")
    assert client.predict(QUESTION, 64, 0.6, 0.95, api_name="/chat")


def test_client_prompt_longer_than_the_context_gets_a_message(server_url):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="The prompt is too long: .* context holds 512 tokens"):
        _client(server_url).predict("1+" * 400, 64, 0.6, 0.95, api_name="/chat")


@pytest.mark.slow
def test_vllm_backend_streams_reasoning_apart_from_answer(tiny_models, tmp_path):
    proc, url = _start_server(tiny_models.teacher, "vllm", tmp_path / "serve.log")
    try:
        updates = list(_client(url).submit(QUESTION, 256, 0.6, 0.95, api_name="/chat"))
    finally:
        _stop(proc)
    assert len(updates) >= 3
    reasoning, answer = updates[-1]
    assert reasoning["metadata"]["title"] == "Reasoning" and "\\boxed{" in answer["content"]
    assert "vllm on cpu" in (tmp_path / "serve.log").read_text()
