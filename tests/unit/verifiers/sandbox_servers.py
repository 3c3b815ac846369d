"""Servers for the sandbox tests, all on 127.0.0.1 and stopped by the test that starts them:

- ``sandbox_service``: the real sandbox service (``python -m factory.verifiers.sandbox_service``) as a
  separate process, optionally as another uid (``setpriv``), with extra environment (planted secrets);
- ``app_in_thread``: a small aiohttp app in a background thread, for fault injection (a service that
  answers 503, hangs, or sends garbage).
Also ``unprivileged`` / ``unprivileged_python``: run a command as uid 1000 with every capability dropped
and no_new_privs, as the shipped pods run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SERVICE_UID_BASE = 200000  # far from the local backend's 61000 + pid-derived ranges
POD_UID = 1000


def unprivileged(uid: int = POD_UID) -> list[str]:
    """Prefix that runs a command as ``uid`` like the factory's pods: no capabilities, no_new_privs."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]


def _venv_site_packages() -> str:
    return next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))


def unprivileged_env(home: str, **extra: str) -> dict[str, str]:
    """Environment for a uid-1000 Python: this venv's packages and the checkout on PYTHONPATH."""
    return {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
            "PYTHONPATH": f"{_venv_site_packages()}:{REPO}", **extra}


def unprivileged_python() -> str | None:
    """An interpreter uid 1000 can run that imports the factory with this venv's packages (the venv's
    own may live under a root-only home), or None."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    with tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o777)
        for python in dict.fromkeys(candidates):
            probe = subprocess.run(unprivileged() + [python, "-c", "import factory.stages.verify, aiohttp"],
                                   env=unprivileged_env(home), capture_output=True, timeout=60)
            if probe.returncode == 0:
                return python
    return None


def _wait_healthy(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except OSError:  # not up yet, or 503 (HTTPError is an OSError)
            time.sleep(0.1)
    raise TimeoutError(f"{url}/healthz not 200")


@contextlib.contextmanager
def sandbox_service(slots: int = 2, uid_base: int = SERVICE_UID_BASE, env: dict[str, str] | None = None,
                    prefix: list[str] | None = None, python: str | None = None, require_healthy: bool = True,
                    extra_args: tuple[str, ...] = ()):
    """The real service on 127.0.0.1 (a free port); yields its URL, stops it (SIGTERM, then kill)."""
    command = (prefix or []) + [python or sys.executable, "-m", "factory.verifiers.sandbox_service", "--host",
                                "127.0.0.1", "--port", "0", "--slots", str(slots), "--uid-base", str(uid_base),
                                *extra_args]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=REPO,
                                env={**os.environ, **(env or {})})
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline().decode() if ready else ""
            if not line.startswith("listening on "):
                log.seek(0)
                raise RuntimeError(f"sandbox service did not start: {line!r} {log.read().decode()[-2000:]}")
            url = line.split()[-1]
            if require_healthy:
                _wait_healthy(url, time.monotonic() + 60)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


@contextlib.contextmanager
def app_in_thread(app):
    """Serve an aiohttp ``app`` on 127.0.0.1 (a free port) from a background thread; yields its URL."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, shutdown_timeout=0.5)
    loop.run_until_complete(site.start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
