"""What a user sees on the console, and the run log file that holds everything else.

Contract: :func:`capture` sends every byte a run writes — this process's stdout and stderr at the
file-descriptor level (C libraries, Ray's own logs), Python warnings and tracebacks, and the worker
output Ray forwards to the driver (vLLM's INFO lines, Ray Data's progress blocks, teardown noise) —
to the run's log file, and keeps only deliberate messages on the console: lines written with
:func:`say` on the driver, and lines any process (a Ray actor or a training worker) logs with
:func:`progress`, which carry :data:`MARK`. ``verbose`` keeps the console a copy of the log instead.
Nothing is lost: the log file holds the console's lines too. Not covered: output written before
:func:`capture` starts or after it ends.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
from typing import Iterator, TextIO

MARK = "\u00bb "
"""Prefix of a console-bound line (``» ``); the router strips it and whatever precedes it."""
_state: dict = {"console": None, "log": None}
_lock = threading.Lock()


def say(message: str) -> None:
    """One line on the console (and in the run log); plain ``print`` when nothing is captured."""
    console, log = _state["console"], _state["log"]
    if console is None:
        print(message, flush=True)
        return
    with _lock:
        console.write(message + "\n")
        console.flush()
        log.write(message + "\n")
        log.flush()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^(\w+(?:Error|Exception|Exit)): (.+)$", re.MULTILINE)


def error_summary(error: BaseException) -> str:
    """One line saying what failed, for the console: the innermost error named in a chain or in a
    Ray-wrapped failure (whose text embeds the remote traceback; the run log keeps all of it), as
    ``Outer: Inner: message``."""
    chain, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        cause = getattr(current, "cause", None)  # RayTaskError and kin
        current = cause if isinstance(cause, BaseException) else current.__cause__
    name, message = type(chain[-1]).__name__, ""
    for link in chain:
        text = _ANSI.sub("", str(link)).strip()
        found = _ERROR_LINE.findall(text)
        if found:
            name, message = found[-1]
        elif text and not message:
            name, message = type(link).__name__, text.splitlines()[0]
    outer = type(error).__name__
    return f"{outer}: {name}: {message}" if outer != name else f"{name}: {message}"


def progress(logger: logging.Logger, message: str, *args) -> None:
    """Log ``message`` at INFO with :data:`MARK`, so the driver's console shows it wherever it was
    logged (needs a handler in that process: :func:`ensure_worker_logging`)."""
    logger.info(MARK + message, *args)


class _Relay(logging.Handler):
    """Forwards a logger's INFO records to the console: every record whose message matches ``phases``,
    and of the others one per ``every_s`` seconds (by the records' own times), the first one after
    ``every_s`` has passed since the relay started."""

    def __init__(self, every_s: float, phases: str):
        super().__init__(logging.INFO)
        self._every_s, self._phases, self._last_at = every_s, re.compile(phases), None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self._last_at is None:
            self._last_at = record.created
        if self._phases.search(message):
            say(message)
        elif record.created - self._last_at >= self._every_s:
            self._last_at = record.created
            say(message)


@contextlib.contextmanager
def relay(logger_name: str, phases: str, every_s: float = 60.0) -> Iterator[None]:
    """For the block: the INFO lines of ``logger_name`` that match ``phases`` on the console too, and a
    progress line every ``every_s`` seconds (:class:`_Relay`), e.g. for a long step on the driver."""
    logger = logging.getLogger(logger_name)
    handler, level = _Relay(every_s, phases), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def ensure_worker_logging(name: str = "factory") -> None:
    """In a Ray worker or actor: INFO records of logger ``name`` reach stderr (which Ray forwards to
    the driver), once per process."""
    logger = logging.getLogger(name)
    if not any(getattr(handler, "_factory_worker", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._factory_worker = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


class _Router(io.TextIOBase):
    """A text stream writing everything to the log and the marked lines (after the mark) to the console."""

    def __init__(self, log: TextIO, console: TextIO, copy_all: bool):
        self._log, self._console, self._copy_all = log, console, copy_all
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with _lock:
            self._log.write(text)
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                if self._copy_all:
                    self._console.write(line + "\n")
                elif MARK in line:
                    self._console.write(line.split(MARK, 1)[1] + "\n")
        return len(text)

    def flush(self) -> None:
        with _lock:
            self._log.flush()
            self._console.flush()


@contextlib.contextmanager
def capture(log_path: str, verbose: bool = False) -> Iterator[str]:
    """Route output for the duration of the block (module docstring); yields the log path."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")
    saved_fds = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    saved_streams = sys.stdout, sys.stderr
    if not verbose:  # C-level writes of this process go to the log only
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = _Router(log, console, copy_all=verbose)
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    _state.update(console=console, log=log)
    try:
        yield log_path
    finally:
        root.removeHandler(handler)
        sys.stdout.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        _state.update(console=None, log=None)
        console.close()
        log.close()
