"""The sandbox service's HTTP API, against the real server process on 127.0.0.1 (started as root, like its
privileged pod): health, results, request validation naming the field, limit ceilings, slots and queue."""

import asyncio
import json
from importlib import metadata
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sandbox_servers import sandbox_service

from factory.verifiers.sandbox import SandboxLimits
from factory.verifiers.sandbox_client import SandboxClient

ROOT_ONLY = "needs root: the service switches each program to its own uid"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason=ROOT_ONLY)


@pytest.fixture(scope="module")
def url():
    with sandbox_service(slots=2) as service:
        yield service


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/run", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_reports_the_isolation_and_the_slots(url):
    with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert health == {"mode": "bwrap", "slots": 2, "running": 0, "waiting": 0}


def test_run_answers_with_the_sandbox_result(url):
    status, body = _post(url, {"source": "print(6 * 7)", "limits": {"timeout_s": 5}})
    assert status == 200
    assert (body["status"], body["stdout"], body["mode"]) == ("pass", "42\n", "bwrap")


@pytest.mark.parametrize("body, field", [
    ({"limits": {}}, "source"),
    ({"source": "print(1)", "limits": {"memory_gb": 1}}, "limits.memory_gb"),
    ({"source": "print(1)", "limits": {"cpu_s": "3"}}, "limits.cpu_s"),
    ({"source": "print(1)", "extra": True}, "extra"),
])
def test_malformed_request_is_400_naming_the_field(url, body, field):
    status, answer = _post(url, body)
    assert status == 400 and field in answer["error"]


def test_limits_above_the_services_ceiling_are_400_naming_the_limit(url):
    status, answer = _post(url, {"source": "print(1)", "limits": {"memory_mb": 1 << 20}})
    assert status == 400 and "limits.memory_mb" in answer["error"] and "ceiling" in answer["error"]


def test_at_most_slots_programs_run_at_once(url):
    started = time.monotonic()
    results = SandboxClient(url, concurrency=4).run_many(["import time\ntime.sleep(1)"] * 4, SandboxLimits(timeout_s=5))
    assert [r.status for r in results] == ["pass"] * 4
    assert time.monotonic() - started >= 2.0  # 4 programs of 1 s through 2 slots


def test_requests_beyond_the_queue_are_refused_busy():
    async def two_at_once(url: str) -> list[tuple[int, dict]]:
        import aiohttp

        body = {"source": "import time\ntime.sleep(1.5)", "limits": {"timeout_s": 5}}
        async with aiohttp.ClientSession() as session:
            async def post():
                async with session.post(url + "/v1/run", json=body) as response:
                    return response.status, await response.json()

            first = asyncio.create_task(post())
            await asyncio.sleep(0.5)  # the first one holds the only slot
            return [await post(), await first]

    with sandbox_service(slots=1, extra_args=("--max-queue", "0")) as url:
        (busy_status, busy), (ran_status, ran) = asyncio.run(two_at_once(url))
    assert (busy_status, ran_status, ran["status"]) == (503, 200, "pass")
    assert busy["error"].startswith("busy")


def test_service_imports_only_the_dependencies_its_image_installs():
    """cluster/sandbox/Dockerfile installs the package without dependencies, then pydantic and aiohttp."""
    code = ("import sys, json, factory.verifiers.sandbox_service\n"
            "print(json.dumps(sorted({name.split('.')[0] for name, module in list(sys.modules.items())\n"
            "                         if 'site-packages' in (getattr(module, '__file__', None) or '')})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(json.loads(out.stdout.strip().splitlines()[-1]))
    # aiohttp uses brotli if installed; setuptools' and this checkout's editable-install hooks load everywhere
    optional = {"brotli", "_brotli", "_distutils_hack"}
    imported = {name for name in imported if not name.startswith("__editable__")}
    assert imported - _modules_of(["pydantic", "aiohttp"]) - optional == set()


def _modules_of(names: list[str]) -> set[str]:
    """Top-level modules of the distributions ``names`` install (with their non-extra requirements)."""
    seen, modules, todo = set(), set(), list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        modules |= {Path(str(f)).parts[0].split(".")[0] for f in dist.files or [] if f.suffix in (".py", ".so")}
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return modules
