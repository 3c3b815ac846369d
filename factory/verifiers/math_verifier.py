"""Math verifier: final-answer extraction plus symbolic equivalence through math-verify.

``judge_math`` is the pure judgement (runs math-verify in the calling process with its own
signal-based timeouts disabled, so it works on any thread, but has no time limit).
``MathVerifier`` adds the per-sample time limit: it runs ``judge_math`` in a persistent child
process (``factory.verifiers.math_worker``) and kills and restarts that child when a sample runs over
(sympy can hang inside C code, where no signal or thread-based limit can interrupt it).

Status mapping: answer equivalent -> ``correct``; answer extracted but not equivalent (or not
parseable) -> ``wrong``; no ``\\boxed{}`` / ``####`` answer -> ``no_answer``; over the time limit ->
``timeout``; missing/unparseable reference, exception or crashed worker -> ``error`` (never ``wrong``).
Logic tasks use the same verifier (math-verify falls back to exact string comparison).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from importlib.metadata import version as _dist_version
from pathlib import Path

from factory.verifiers.answers import extract_final_answer
from factory.verifiers.verdict import VerdictResult

NAME = "math"
VERSION = f"1+math-verify-{_dist_version('math-verify')}"
STARTUP_TIMEOUT_S = 120.0
PIPELINE_BYTES = 16384
"""Most request bytes written ahead of the child's replies: below the smallest default pipe buffer (16 KiB
on macOS, 64 KiB on Linux), so the parent never blocks in a write and keeps enforcing the limit."""


def _result(status: str, detail: str) -> VerdictResult:
    return VerdictResult(status=status, verifier=NAME, version=VERSION, detail=detail[:500])


def reference_answer(reference: str | None) -> str | None:
    """The gold value in a reference: its ``\\boxed{}`` or ``####`` part, else the whole stripped text."""
    if reference is None or not reference.strip():
        return None
    return extract_final_answer(reference) or reference.strip()


def judge_math(answer: str | None, reference: str | None) -> VerdictResult:
    """Judge one response's answer text against a reference, with no time limit (see module doc)."""
    return judge_extracted(extract_final_answer(answer), reference)


def judge_extracted(predicted: str | None, reference: str | None) -> VerdictResult:
    """:func:`judge_math` given the answer already extracted from the response (None: it had none)."""
    from math_verify import parse, verify

    gold_text = reference_answer(reference)
    if gold_text is None:
        return _result("error", "no reference answer")
    if predicted is None:
        return _result("no_answer", "no \\boxed{} or #### answer")
    try:
        gold = parse(f"${gold_text}$", parsing_timeout=None, raise_on_error=True)
        if not gold:
            return _result("error", f"reference not parseable: {gold_text!r}")
        target = parse(f"${predicted}$", parsing_timeout=None, raise_on_error=True)
        same = bool(target) and verify(gold, target, timeout_seconds=None, raise_on_error=True)
    except Exception as exc:  # math-verify/sympy failure: the check failed, not the sample
        return _result("error", f"{type(exc).__name__}: {exc}")
    return _result("correct" if same else "wrong", f"answer={predicted!r} reference={gold_text!r}")


class MathVerifier:
    """Judges math answers with a wall-clock limit per sample, in a persistent child process.

    ``judge_many`` keeps the child busy across a batch (requests written ahead); calling it judges one pair.
    Not thread-safe: one caller at a time. ``close()`` (or ``with``) stops the child; a timed-out
    or crashed child is killed and a fresh one started on the next call (~0.5 s). Worker start-up
    (imports) is not counted against a sample's limit.
    """

    def __init__(self, timeout_s: float = 5.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None
        self._buffer = b""

    def __call__(self, answer: str | None, reference: str | None) -> VerdictResult:
        return self.judge_many([(answer, reference)])[0]

    def judge_many(self, pairs: list[tuple[str | None, str | None]]) -> list[VerdictResult]:
        """Verdicts of ``(answer, reference)`` pairs, in order, as if judged one at a time.

        Each answer is extracted here and only the extracted answer goes to the child (a few bytes, not a chain
        of up to ~130 KB), so many requests fit in the pipe ahead of the replies (at most ``PIPELINE_BYTES``
        unanswered, so a write never blocks on a busy child) and the child never waits for the parent between
        samples. The child judges one request at a time: each reply is due within ``timeout_s`` of the previous
        one. On a timeout or a dead child the sample being judged gets its ``timeout``/``error`` verdict, the
        child is killed, and the rest go to a fresh child."""
        results: list[VerdictResult | None] = [None] * len(pairs)
        todo: list[tuple[int, bytes]] = []  # (index into pairs, its request line), in order
        for index, (answer, reference) in enumerate(pairs):
            predicted = extract_final_answer(answer)
            if predicted is None and reference_answer(reference) is not None:
                results[index] = _result("no_answer", "no \\boxed{} or #### answer")  # skip the round trip
            else:
                todo.append((index, json.dumps({"predicted": predicted, "reference": reference}).encode() + b"\n"))
        while todo:
            todo = self._judge_in_one_child(pairs, todo, results)
        return results

    def _judge_in_one_child(self, pairs, todo: list[tuple[int, bytes]], results: list) -> list[tuple[int, bytes]]:
        """Judge ``todo`` ((index, request line) pairs) in one child until done or it fails; return what it left
        unjudged."""
        sent = done = in_flight = 0
        try:
            proc = self._ensure_worker()
            while done < len(todo):
                while sent < len(todo) and (sent == done or in_flight + len(todo[sent][1]) <= PIPELINE_BYTES):
                    proc.stdin.write(todo[sent][1])
                    in_flight += len(todo[sent][1])
                    sent += 1
                proc.stdin.flush()
                line = self._reply(proc, pairs[todo[done][0]])
                if line is None:
                    self._kill()
                    results[todo[done][0]] = _result("timeout", f"no verdict within {self.timeout_s}s")
                    return todo[done + 1:]
                results[todo[done][0]] = VerdictResult(**json.loads(line))
                in_flight -= len(todo[done][1])
                done += 1
        except (OSError, ValueError) as exc:
            self._kill()
            results[todo[done][0]] = _result("error", f"math worker failed: {type(exc).__name__}: {exc}")
            return todo[done + 1:]
        return []

    def _reply(self, proc: subprocess.Popen, pair: tuple[str | None, str | None]) -> bytes | None:
        """The reply line to ``pair`` (the oldest request unanswered), or None past its limit. (``pair`` is for
        subclasses that inject faults per sample.)"""
        return self._read_line(proc, time.monotonic() + self.timeout_s)

    def _ensure_worker(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            package_root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
            self._buffer = b""
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "factory.verifiers.math_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            )
            if self._read_line(self._proc, time.monotonic() + STARTUP_TIMEOUT_S) != b"ready":
                raise OSError(f"math worker not ready within {STARTUP_TIMEOUT_S}s")
        return self._proc

    def _read_line(self, proc: subprocess.Popen, deadline: float) -> bytes | None:
        """One reply line, or None at the deadline; raises OSError if the worker died."""
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise OSError(f"math worker exited with code {proc.wait()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                try:
                    pipe.close()
                except OSError:  # BrokenPipeError: a request still buffered for the dead worker; nothing is lost
                    pass
            self._proc = None

    def close(self) -> None:
        """Stop the worker process."""
        self._kill()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self._kill()
