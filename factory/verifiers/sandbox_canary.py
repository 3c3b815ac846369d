"""Start-up check of the code sandbox: canary programs through the configured backend, before any
teacher compute, failing with an error that says why code cannot be verified and how to fix it.

Two canaries run with the run's own limits: one must ``pass`` with the expected output, one must
``fail`` (an assertion), so a sandbox that cannot start Python under those limits, or that reports
every program alike, is caught. For the service backend ``/healthz`` is asked first, so "unreachable"
and "up but cannot isolate code" get their own messages.
Not covered: the hostile-code properties (tests/unit/verifiers/test_sandbox.py checks them per backend).
"""

from __future__ import annotations

from factory.verifiers.sandbox import SandboxLimits, probe_isolation, run_sandboxed

CANARY_PASS = "import sys\nprint('canary', sum(range(10)), sys.version_info[0])"
CANARY_PASS_STDOUT = "canary 45 3"
CANARY_FAIL = "assert 1 + 1 == 3, 'canary'"
SERVICE_DOCS = ("cluster/k8s/sandbox-service.yaml; cluster/README.md, section 'Code verification'")
DEPLOY_HINT = ("deploy the sandbox service (kubectl -n distill-factory apply -f cluster/k8s/sandbox-service.yaml) "
               "and set verify.sandbox_backend: service and verify.sandbox_service.url: "
               "http://distill-factory-sandbox:8080 (see cluster/README.md, section 'Code verification')")


class SandboxUnavailable(RuntimeError):
    """Code verification cannot work with this configuration here; the message says why and what to do."""


def check_local(limits: SandboxLimits, mode: str, python: str | None, uid_base: int) -> str:
    """Raise :class:`SandboxUnavailable` unless the local sandbox runs the canaries; returns its mode."""
    isolation = probe_isolation(mode, python, uid_base)
    if isolation.mode is None:
        raise SandboxUnavailable(
            f"code verification cannot run in this process (verify.sandbox_backend: local, verify.sandbox: {mode}): "
            f"{isolation.problem}. On one machine, run the factory as root with bubblewrap installed "
            "(apt-get install bubblewrap). Where it runs unprivileged (the shipped pods run as uid 1000 with every "
            "capability dropped, under the runtime's default seccomp profile, which also blocks the user namespaces "
            f"an unprivileged bwrap would need), {DEPLOY_HINT}.")
    results = [run_sandboxed(source, limits, isolation.mode, python, uid_base) for source in (CANARY_PASS, CANARY_FAIL)]
    _expect_canaries(results, f"the local sandbox ({isolation.mode})", limits)
    return isolation.mode


def check_service(client, limits: SandboxLimits) -> str:
    """Raise :class:`SandboxUnavailable` unless the service (a ``SandboxClient``) is ready and runs the
    canaries; returns the isolation mode it reports."""
    status, health = client.health()
    if status is None:
        raise SandboxUnavailable(
            f"cannot reach the sandbox service at {client.url} (verify.sandbox_service.url): {health['error']}. "
            "Is it deployed and ready? kubectl -n distill-factory get pods -l "
            "app.kubernetes.io/name=distill-factory-sandbox; deploy it with kubectl -n distill-factory apply -f "
            "cluster/k8s/sandbox-service.yaml. Its NetworkPolicy admits only pods labelled "
            f"app.kubernetes.io/part-of: distill-factory ({SERVICE_DOCS}).")
    if status != 200:
        raise SandboxUnavailable(
            f"the sandbox service at {client.url} answers but cannot run code (HTTP {status}): "
            f"{health.get('error', health)}. Its pod needs the privileges the manifest gives it (privileged, or "
            f"the gVisor RuntimeClass) and an image with bubblewrap ({SERVICE_DOCS}).")
    results = client.run_many([CANARY_PASS, CANARY_FAIL], limits)
    _expect_canaries(results, f"the sandbox service at {client.url}", limits)
    return health.get("mode", "?")


def _expect_canaries(results: list, where: str, limits: SandboxLimits) -> None:
    passing, failing = results
    if passing.status != "pass" or passing.stdout.strip() != CANARY_PASS_STDOUT:
        raise SandboxUnavailable(
            f"{where} did not run the canary program under verify.code_limits (timeout_s={limits.timeout_s}, "
            f"cpu_s={limits.cpu_s}, memory_mb={limits.memory_mb}, max_processes={limits.max_processes}): it ended "
            f"{passing.status} ({passing.detail or passing.stdout.strip()!r}). Check that these limits let Python "
            "start (memory_mb of 64 or more); if they do, the sandbox itself is broken: see cluster/README.md, "
            "section 'Code verification'.")
    if failing.status != "fail":
        raise SandboxUnavailable(
            f"{where} reported a failing canary program as {failing.status} ({failing.detail}): its verdicts "
            "cannot be trusted; see cluster/README.md, section 'Code verification'.")
