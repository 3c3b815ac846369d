"""The code sandbox as an HTTP service, for callers that cannot isolate code themselves.

The factory's pods run as uid 1000 with every capability dropped, under the container runtime's default
seccomp profile: they can create no namespace, so the local sandbox (``sandbox.py``) cannot run there.
This service runs that same sandbox (same isolation, limits and statuses: ``run_sandboxed``) in its own
pod, which has the privileges it needs (cluster/README.md, "Code verification"), and the verify stage
calls it over HTTP (``sandbox_client.py``).

API (JSON, aiohttp):
- ``POST /v1/run`` ``{"source": str, "limits": {SandboxLimits fields}}`` -> 200 with the ``SandboxResult``
  fields; 400 for a malformed request or limits above the service's ceilings (the message names the
  field); 503 when more than ``max_queue`` requests already wait, or when this host has no isolation.
- ``GET /healthz`` -> 200 ``{"mode", "slots", "running", "waiting"}`` once the start-up probe passed,
  else 503 ``{"error": why}`` (the readiness probe: a pod that cannot isolate code gets no traffic).

Contract: at most ``slots`` programs run at once, each in its own slot (uid ``uid_base + slot``, as the
local backend); further requests wait, at most ``max_queue`` of them; a request whose client has gone
away while it waited is dropped before it runs. The service never runs code unsandboxed.
Not covered: authentication or TLS (the Service is cluster-internal and its NetworkPolicy admits only the
factory's pods), per-caller quotas, persistence (nothing outlives a run).

Run: ``python -m factory.verifiers.sandbox_service --host 127.0.0.1 --port 8080 --slots 4``
(``--port 0`` picks a free port; the first line printed is ``listening on http://HOST:PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from factory.verifiers.sandbox import SANDBOX_MODES, SandboxLimits, default_python, probe_isolation, run_sandboxed

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 16 << 20
SHUTDOWN_TIMEOUT_S = 60.0  # in-flight runs may finish after SIGTERM (the pod's grace period is longer)
DEFAULT_CEILINGS = SandboxLimits(timeout_s=300, cpu_s=300, memory_mb=16384, max_processes=256, max_file_mb=256,
                                 scratch_mb=2048)


class RunRequest(BaseModel):
    """Body of ``POST /v1/run``."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(max_length=MAX_REQUEST_BYTES)
    limits: SandboxLimits = SandboxLimits()


@dataclass(frozen=True)
class ServiceSettings:
    """How one service process runs programs."""

    slots: int = 4
    """Programs run at once (one uid each); about one core per slot."""
    max_queue: int = 64
    """Requests that may wait for a slot; beyond that the service answers 503 and the client backs off."""
    mode: str = "auto"
    """Isolation tool (``sandbox.SANDBOX_MODES``)."""
    python: str | None = None
    """Interpreter for the programs; default: this process's base interpreter."""
    uid_base: int = 61000
    """Slot ``i`` runs as uid ``uid_base + i``."""
    ceilings: SandboxLimits = DEFAULT_CEILINGS
    """Largest limits a request may ask for."""


class _State:
    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.isolation = None
        self.free: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(settings.slots):
            self.free.put_nowait(slot)
        self.waiting = 0
        self.pool = ThreadPoolExecutor(max_workers=settings.slots, thread_name_prefix="sandbox-slot")


_STATE = web.AppKey("state", _State)


def build_app(settings: ServiceSettings) -> web.Application:
    """The aiohttp application; the isolation probe runs when it starts."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[_STATE] = _State(settings)
    app.router.add_post("/v1/run", _run)
    app.router.add_get("/healthz", _health)
    app.on_startup.append(_probe_on_startup)
    app.on_cleanup.append(_close_pool)
    return app


async def _probe_on_startup(app: web.Application) -> None:
    state = app[_STATE]
    settings = state.settings
    state.isolation = await asyncio.get_running_loop().run_in_executor(  # cached: runs use the same probe
        state.pool, probe_isolation, settings.mode, settings.python or default_python(), settings.uid_base)
    if state.isolation.mode is None:
        log.error("sandbox service: no isolation on this host: %s", state.isolation.problem)
    else:
        log.info("sandbox service: %s isolation, %d slots", state.isolation.mode, settings.slots)


async def _close_pool(app: web.Application) -> None:
    app[_STATE].pool.shutdown(wait=True)


async def _health(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if state.isolation is None or state.isolation.mode is None:
        problem = state.isolation.problem if state.isolation else "probe not finished"
        return web.json_response({"error": f"no isolation on this host: {problem}"}, status=503)
    running = state.settings.slots - state.free.qsize()
    return web.json_response({"mode": state.isolation.mode, "slots": state.settings.slots, "running": running,
                              "waiting": state.waiting})


def _refusal(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _over_ceiling(limits: SandboxLimits, ceilings: SandboxLimits) -> str:
    for field in fields(SandboxLimits):
        asked, most = getattr(limits, field.name), getattr(ceilings, field.name)
        if asked > most:
            return f"limits.{field.name}: {asked} is above this service's ceiling {most}"
    return ""


async def _run(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        body = RunRequest.model_validate_json(await request.read(), strict=True)
    except ValidationError as error:
        return _refusal(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    problem = _over_ceiling(body.limits, state.settings.ceilings)
    if problem:
        return _refusal(400, problem)
    if state.isolation is None or state.isolation.mode is None:
        return _refusal(503, "no isolation on this host")
    if state.free.empty() and state.waiting >= state.settings.max_queue:
        return _refusal(503, f"busy: {state.settings.slots} running, {state.waiting} waiting")
    state.waiting += 1
    try:
        slot = await state.free.get()
    finally:
        state.waiting -= 1
    if request.transport is None or request.transport.is_closing():  # the client gave up while waiting
        state.free.put_nowait(slot)
        return _refusal(503, "client gone")
    settings = state.settings
    future = asyncio.get_running_loop().run_in_executor(
        state.pool, run_sandboxed, body.source, body.limits, settings.mode, settings.python, settings.uid_base, slot)
    # the slot (its uid) is free again only when the run has ended, even if this handler is cancelled
    future.add_done_callback(lambda _: state.free.put_nowait(slot))
    result = await asyncio.shield(future)
    return web.json_response(asdict(result))


async def serve(settings: ServiceSettings, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; in-flight runs finish before the process exits."""
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_TIMEOUT_S).start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run untrusted Python for the factory's verify stage over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (cluster: the pod IP)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-queue", type=int, default=ServiceSettings.max_queue)
    parser.add_argument("--mode", choices=SANDBOX_MODES, default="auto")
    parser.add_argument("--python", default=None)
    parser.add_argument("--uid-base", type=int, default=ServiceSettings.uid_base)
    args = parser.parse_args(argv)
    if args.slots < 1 or args.max_queue < 0:
        parser.error("--slots must be >= 1 and --max-queue >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = ServiceSettings(slots=args.slots, max_queue=args.max_queue, mode=args.mode, python=args.python,
                               uid_base=args.uid_base)
    asyncio.run(serve(settings, args.host, args.port))


if __name__ == "__main__":
    main()
