"""Hostile-code suite for the sandbox: one property per test, each contained with its own status.

Runs in ``bwrap`` mode, and the properties that hold there too in the ``unshare`` fallback (which
needs an interpreter the sandbox uid can read: /usr/bin/python3.11 here)."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from factory.verifiers.sandbox import SandboxLimits, forget_probes, resolve_mode, run_sandboxed

SYSTEM_PYTHON = "/usr/bin/python3.11"
FAST = SandboxLimits(timeout_s=4, cpu_s=3)
MODES = [
    pytest.param(("bwrap", None), id="bwrap"),
    pytest.param(("unshare", SYSTEM_PYTHON), id="unshare", marks=pytest.mark.skipif(
        not os.path.exists(SYSTEM_PYTHON), reason="unshare mode needs an interpreter outside /root")),
]


@pytest.fixture(params=MODES)
def sandbox(request):
    mode, python = request.param
    if resolve_mode(mode, python) != mode:
        pytest.fail(f"sandbox mode {mode} is not available on this machine")

    def run(source: str, limits: SandboxLimits = FAST):
        return run_sandboxed(source, limits, mode=mode, python=python)

    return run


def test_clean_program_passes_with_its_output(sandbox):
    result = sandbox("print('hello')")
    assert (result.status, result.stdout) == ("pass", "hello\n")


@pytest.mark.parametrize("source", [
    "assert 1 == 2",
    "raise ValueError('boom')",
    "def broken(:\n    pass",
    "import sys; sys.exit(3)",
])
def test_failing_program_is_fail(sandbox, source):
    assert sandbox(source).status == "fail"


@pytest.mark.parametrize("source", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
def test_exiting_before_the_end_is_not_a_pass(sandbox, source):
    assert sandbox(source + "\nassert False").status == "fail"


def test_infinite_loop_times_out(sandbox):
    started = time.monotonic()
    result = sandbox("while True:\n    pass")
    assert result.status == "timeout"
    assert time.monotonic() - started < FAST.timeout_s + 3


def test_sleeping_program_is_killed_at_the_wall_clock_limit(sandbox):
    result = sandbox("import time\ntime.sleep(60)", SandboxLimits(timeout_s=1.5))
    assert result.status == "timeout" and result.duration_s < 4


def test_one_gigabyte_allocation_is_memory(sandbox):
    result = sandbox("blob = bytearray(1 << 30)")
    assert result.status == "memory"


def test_fork_bomb_is_contained(sandbox):
    result = sandbox("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert result.status in ("timeout", "fail")
    leftovers = subprocess.run(["pgrep", "-u", "61000"], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_fork_bomb_stops_at_the_process_limit(sandbox):
    source = ("import os, sys\nforked = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n"
              "            import time; time.sleep(30)\n        forked += 1\nexcept OSError:\n    pass\nprint(forked)")
    result = sandbox(source)
    assert result.status == "pass" and int(result.stdout) < FAST.max_processes


def test_socket_to_the_hosts_loopback_fails(sandbox):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = sandbox(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
    assert result.status == "fail" and ("Error" in result.detail)


def test_socket_to_an_outside_address_fails(sandbox):
    result = sandbox("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
    assert result.status == "fail" and "unreachable" in result.detail.lower()


def test_parent_environment_is_invisible(sandbox):
    os.environ["FACTORY_TEST_SECRET"] = "hunter2"
    source = ("import os, glob\nseen = [open(p, 'rb').read() for p in glob.glob('/proc/*/environ')\n"
              "        if os.access(p, os.R_OK)]\nassert 'FACTORY_TEST_SECRET' not in os.environ\n"
              "assert not any(b'hunter2' in blob for blob in seen)\nprint(sorted(os.environ))")
    result = sandbox(source)
    assert result.status == "pass", result.detail
    assert "FACTORY_TEST_SECRET" not in result.stdout


def test_writing_outside_the_scratch_dir_fails(sandbox):
    outside = Path(tempfile.mkdtemp(prefix="factory-outside-"))
    try:
        outside.chmod(0o755)
        result = sandbox(f"open({str(outside / 'evil')!r}, 'w').write('x')")
        assert result.status == "fail"
        assert not (outside / "evil").exists()
    finally:
        shutil.rmtree(outside)


def test_scratch_dir_is_writable(sandbox):
    source = "import os\nopen('note.txt', 'w').write('ok')\nprint(open(os.path.join(os.getcwd(), 'note.txt')).read())"
    assert sandbox(source).stdout == "ok\n"


def test_stdout_flood_is_capped_without_hanging(sandbox):
    result = sandbox("while True:\n    print('x' * 10000)", SandboxLimits(timeout_s=20, max_file_mb=2))
    assert result.status == "fail" and "output limit" in result.detail
    assert result.duration_s < 20 and len(result.stdout) <= 4000


def test_runs_as_unprivileged_user(sandbox):
    result = sandbox("import os\nprint(os.getuid(), os.geteuid())")
    assert result.stdout.split() == ["61000", "61000"]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="sandbox mode"):
        run_sandboxed("print(1)", mode="docker")


def test_missing_isolation_is_sandbox_error_not_an_unsandboxed_run(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: None)  # fault injection: no bwrap/unshare here
    forget_probes()
    try:
        result = run_sandboxed("print('ran')", FAST, mode="auto")
    finally:
        forget_probes()
    assert (result.status, result.stdout, result.mode) == ("sandbox_error", "", None)


def test_sandbox_that_cannot_start_the_interpreter_is_sandbox_error():
    result = run_sandboxed("print(1)", FAST, mode="bwrap", python="/nonexistent/bin/python3")
    assert result.status == "sandbox_error"
