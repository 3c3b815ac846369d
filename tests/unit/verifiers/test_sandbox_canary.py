"""The start-up check (``check_code_sandbox``): passes where code can run, and otherwise fails with the
reason and the fix, per backend. Needs root for the local sandbox and the real service."""

import os
import shutil

import pytest
from aiohttp import web
from sandbox_servers import app_in_thread, sandbox_service

from factory.stages.verify import SandboxUnavailable, VerifyConfig, check_code_sandbox
from factory.verifiers.sandbox import SandboxLimits, forget_probes

ROOT_ONLY = "needs root: the sandbox switches each program to its own uid"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason=ROOT_ONLY)


def _service_config(url: str, **service) -> VerifyConfig:
    return VerifyConfig(sandbox_backend="service", sandbox_service={"url": url, "retries": 1, "backoff_s": 0.01,
                                                                    **service})


def test_local_canary_passes_where_the_sandbox_works():
    check_code_sandbox(VerifyConfig())


def test_canary_under_limits_too_small_for_python_names_the_limits():
    with pytest.raises(SandboxUnavailable, match=r"memory_mb=8\b.*memory_mb of 64 or more"):
        check_code_sandbox(VerifyConfig(code_limits=SandboxLimits(memory_mb=8)))


def test_missing_bubblewrap_canary_says_what_to_install_and_where_to_deploy(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "bwrap" else real_which(tool))  # fault injection
    forget_probes()
    try:
        with pytest.raises(SandboxUnavailable) as failure:
            check_code_sandbox(VerifyConfig(sandbox="bwrap"))
    finally:
        forget_probes()
    message = str(failure.value)
    assert "bwrap is not installed (package bubblewrap)" in message and "apt-get install bubblewrap" in message
    assert "cluster/k8s/sandbox-service.yaml" in message and "verify.sandbox_backend: service" in message


def test_service_canary_passes_against_the_real_service():
    with sandbox_service(slots=1) as url:
        check_code_sandbox(_service_config(url))


def test_unreachable_service_canary_names_the_url_and_the_deployment():
    with sandbox_service(slots=1) as url:
        pass  # stopped: nothing listens there any more
    with pytest.raises(SandboxUnavailable) as failure:
        check_code_sandbox(_service_config(url))
    message = str(failure.value)
    assert f"cannot reach the sandbox service at {url}" in message
    assert "kubectl -n distill-factory apply -f cluster/k8s/sandbox-service.yaml" in message


def test_service_that_passes_every_program_is_refused():
    async def always_pass(request):
        if request.method == "GET":
            return web.json_response({"mode": "bwrap", "slots": 1, "running": 0, "waiting": 0})
        return web.json_response({"status": "pass", "detail": "", "exit_code": 0, "stdout": "canary 45 3\n",
                                  "duration_s": 0.0, "mode": "bwrap"})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", always_pass)
    with app_in_thread(app) as url:  # fault injection: a broken service
        with pytest.raises(SandboxUnavailable, match="reported a failing canary program as pass"):
            check_code_sandbox(_service_config(url))
