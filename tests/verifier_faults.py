"""Fault injection for the math verifier: its worker process dies mid-judgement."""

from __future__ import annotations

import os

from factory.verifiers.math_verifier import MathVerifier


def kill_before_reply(verifier: MathVerifier, proc) -> None:
    """Kill ``verifier``'s worker ``proc`` and discard every reply it wrote that the parent has not consumed yet,
    whether still in the pipe or already read ahead into the verifier's buffer (requests are pipelined, so
    later replies may be there): the worker died before its reply to the oldest request reached the parent."""
    proc.kill()
    proc.wait()
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        while os.read(proc.stdout.fileno(), 65536):
            pass
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(proc.stdout.fileno(), True)
    verifier._buffer = b""
