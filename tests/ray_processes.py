"""Stopping the Ray nodes a test started with ``ray start --block`` in a session of their own."""

from __future__ import annotations

import os
import signal
import subprocess

NO_DRAIN_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
"""For the nodes' environment: a stopped test node skips the graceful drain (up to 30 s of waiting for
leases a finished test no longer has)."""


def stop_ray_node(node: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM to the ``ray start`` process only: it drains its node and stops its own processes in ~2 s.
    (Signalling its whole process group kills the GCS first, and the drain then waits 30 s for it.)
    Whatever is left of the group after ``timeout_s`` is killed."""
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
    try:
        node.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
