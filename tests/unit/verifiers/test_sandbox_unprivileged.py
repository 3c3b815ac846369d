"""Code verification under the shipped pods' conditions, for real: the verify path runs as uid 1000 with
every capability dropped and no_new_privs (``setpriv``), as the Ray pods do; the sandbox service is the
real server process, started by the test as root on 127.0.0.1, as its own privileged pod is.

(a) the local backend's start-up check fails there, saying why and pointing at the service deployment;
(b) the service backend verifies code correctly for that uid, with planted secrets out of reach;
(c) the local backend there stops at the circuit breaker instead of returning only error verdicts;
(d) a service that itself lacks its privileges is not ready, and the start-up check says why.
Needs root (to start processes as another uid and the privileged service).
"""

import json
import os
import secrets
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
from sandbox_servers import POD_UID, sandbox_service, unprivileged, unprivileged_env, unprivileged_python

from factory.stages.verify import SandboxUnavailable, VerifyConfig, check_code_sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: starts the verify path as uid 1000 "
                                                          "and the privileged sandbox service")
WORKER_SECRET = "wrk-" + secrets.token_hex(8)
SERVICE_SECRET = "svc-" + secrets.token_hex(8)
CHECK = "def check(fn):\n    assert fn(2) == 4"
ROWS = [  # (candidate, verdict)
    ("def double(x):\n    return 2 * x", "correct"),
    ("def double(x):\n    return x", "wrong"),
    ("def double(x):\n    while True:\n        pass", "timeout"),
    ("import os, glob\nblobs = str(os.environ) + str([open(p, 'rb').read() for p in glob.glob('/proc/*/environ')\n"
     "    if os.access(p, os.R_OK)])\nassert 'FACTORY_FAKE' not in blobs\n"
     "def double(x):\n    return 2 * x", "correct"),
]
VERIFY_ROWS = """
import json, sys
import pyarrow as pa
from factory.stages.verify import INPUT_COLUMNS, SandboxCircuitOpen, Verify, VerifyConfig, check_code_sandbox
cfg = VerifyConfig.model_validate_json(sys.argv[1])
rows = [dict.fromkeys(INPUT_COLUMNS) | {"task": "code", "prompt": "q", "gen_status": "ok", "tests": sys.argv[3],
        "entry_point": "double", "completion": "ok</think>```python\\n" + candidate + "\\n```"}
        for candidate in json.loads(sys.argv[2])]
if cfg.sandbox_backend == "service":
    check_code_sandbox(cfg)
try:
    table = Verify(cfg)(pa.Table.from_pylist(rows))
    print(json.dumps({"verdicts": table["verdict"].to_pylist(), "details": table["verdict_detail"].to_pylist()}))
except SandboxCircuitOpen as error:
    print(json.dumps({"circuit_open": str(error)}))
"""


@pytest.fixture(scope="module")
def pod_python():
    python = unprivileged_python()
    if python is None:
        pytest.skip(f"no interpreter uid {POD_UID} can run with this venv's packages")
    return python


@pytest.fixture
def as_pod(pod_python):
    """Run Python code as the pod's uid, with a fake secret in its environment; returns the process."""
    home = tempfile.mkdtemp(prefix="factory-pod-home-")
    os.chmod(home, 0o777)

    def run(code: str, *args: str) -> subprocess.CompletedProcess:
        env = unprivileged_env(home, FACTORY_FAKE_WORKER_TOKEN=WORKER_SECRET)
        return subprocess.run(unprivileged() + [pod_python, "-c", code, *args], env=env, capture_output=True,
                              text=True, timeout=300)

    return run


def _verify_as_pod(as_pod, cfg: VerifyConfig) -> dict:
    done = as_pod(VERIFY_ROWS, cfg.model_dump_json(), json.dumps([c for c, _ in ROWS]), CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_local_canary_as_the_pods_uid_fails_saying_why_and_how_to_fix(as_pod):
    done = as_pod("from factory.stages.verify import SandboxUnavailable, VerifyConfig, check_code_sandbox\n"
                  "try:\n    check_code_sandbox(VerifyConfig())\nexcept SandboxUnavailable as e:\n"
                  "    print('UNAVAILABLE:', e)\nelse:\n    print('CODE CAN RUN')")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("UNAVAILABLE:")
    assert f"runs as uid {POD_UID}, not root" in done.stdout
    assert "kubectl -n distill-factory apply -f cluster/k8s/sandbox-service.yaml" in done.stdout
    assert "verify.sandbox_backend: service" in done.stdout


def test_service_backend_verifies_code_for_the_pods_uid(as_pod):
    with sandbox_service(slots=2, env={"FACTORY_FAKE_SERVICE_TOKEN": SERVICE_SECRET}) as url:
        cfg = VerifyConfig(sandbox_backend="service", sandbox_service={"url": url},
                           code_limits={"timeout_s": 3, "cpu_s": 2})
        out = _verify_as_pod(as_pod, cfg)
    assert out["verdicts"] == [verdict for _, verdict in ROWS], out["details"]


def test_local_backend_as_the_pods_uid_stops_at_the_circuit_breaker(as_pod):
    cfg = VerifyConfig(circuit_breaker={"window": len(ROWS), "min_runs": len(ROWS)})
    out = _verify_as_pod(as_pod, cfg)
    assert "circuit_open" in out, out
    assert f"{len(ROWS)} of the last {len(ROWS)} sandbox runs (100.0%) were sandbox_error" in out["circuit_open"]
    assert f"uid {POD_UID}, not root" in out["circuit_open"]


def test_service_without_its_privileges_is_not_ready_and_the_canary_says_why(pod_python):
    home = tempfile.mkdtemp(prefix="factory-pod-home-")
    os.chmod(home, 0o777)
    with sandbox_service(slots=1, prefix=unprivileged(), python=pod_python, env=unprivileged_env(home),
                         require_healthy=False) as url:
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(url + "/healthz", timeout=30)
        assert health.value.code == 503
        cfg = VerifyConfig(sandbox_backend="service", sandbox_service={"url": url, "retries": 1, "backoff_s": 0.01})
        with pytest.raises(SandboxUnavailable) as failure:
            check_code_sandbox(cfg)
    message = str(failure.value)
    assert "answers but cannot run code (HTTP 503)" in message and f"uid {POD_UID}, not root" in message
