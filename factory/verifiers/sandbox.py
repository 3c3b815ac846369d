"""Run untrusted Python in a separate, isolated, resource-limited process.

What it does, per run:
- a new process (never the caller's own), started under ``prlimit`` with RLIMIT_AS (memory),
  RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_FSIZE (every written file, stdout/stderr included), RLIMIT_CORE=0;
- network, pid, ipc and uts namespaces (``bwrap``, or ``unshare`` as root), so no socket reaches
  anything, not even 127.0.0.1, and other processes (and their environment) are invisible;
- a non-root uid (``uid_base + slot``, capabilities dropped with ``setpriv``) so RLIMIT_NPROC holds,
  which root ignores: a fork bomb stops at ``max_processes``; one uid per parallel slot keeps slots
  from starving each other;
- a scrubbed environment (PATH, HOME, TMPDIR, LANG only) and a scratch working directory;
- a wall-clock limit after which the whole process group is SIGKILLed (the pid namespace then takes
  every descendant with it);
- output captured to files, so flooding stdout hits RLIMIT_FSIZE instead of filling memory or hanging.
With ``bwrap`` the file system is read-only except a size-limited tmpfs scratch dir (``/sandbox``) and
only /usr and the interpreter's prefix are visible. With the ``unshare`` fallback the host file system is
visible read-only *by permissions only*: the sandbox uid can still write world-writable places
(``/tmp``, ``/dev/shm``) and read world-readable files.

What it does NOT cover: it is not a security boundary against kernel exploits, side channels or a
determined attacker (the kernel is shared; seccomp is not applied); disk use in the ``unshare`` mode is
bounded per file only; memory is bounded per process (address space), not per process tree; the
interpreter is the base Python with the standard library only (``-I -S``: no site-packages).

Statuses: ``pass`` (ran to its end), ``fail`` (exception, assertion, non-zero exit, early exit),
``timeout`` (wall clock or CPU limit), ``memory`` (MemoryError or killed by SIGKILL), ``sandbox_error``
(no isolation available, or the sandbox itself failed to start: never run unsandboxed).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SANDBOX_STATUSES = ("pass", "fail", "timeout", "memory", "sandbox_error")
SANDBOX_MODES = ("auto", "bwrap", "unshare")
HARNESS = Path(__file__).with_name("sandbox_harness.py")
_SCRATCH = "/sandbox"
_HARNESS_IN_SANDBOX = "/.harness.py"
_STREAM_TAIL = 4000


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run; also the ``verify.code_limits`` config section (pydantic
    validates this plain dataclass: unknown keys are errors, every limit must be > 0)."""

    __pydantic_config__ = {"extra": "forbid"}  # a plain dict: this module imports the stdlib only

    timeout_s: float = 10.0
    """Wall-clock limit; the process group is killed after it, so infinite loops and sleeps end."""
    cpu_s: int = 10
    """CPU-seconds limit (RLIMIT_CPU); SIGXCPU ends the run as ``timeout``, even on a slow machine."""
    memory_mb: int = 512
    """Address-space limit per process (RLIMIT_AS); allocating past it is ``memory``, not swapping the node."""
    max_processes: int = 32
    """Processes+threads of the sandbox uid (RLIMIT_NPROC); stops fork bombs."""
    max_file_mb: int = 16
    """Largest file the program may write, stdout/stderr included (RLIMIT_FSIZE): bounds output floods."""
    scratch_mb: int = 64
    """Size of the bwrap tmpfs scratch directory, the only writable place in the sandbox."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "max_processes", "max_file_mb", "scratch_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run."""

    status: str
    """One of ``SANDBOX_STATUSES``."""
    detail: str
    """Why: last lines of stderr, the limit hit, or the sandbox failure."""
    exit_code: int | None
    """Return code of the sandbox launcher (negative: killed by that signal); None if never run."""
    stdout: str
    """Up to the last 4000 characters of stdout."""
    duration_s: float
    """Wall-clock time of the run."""
    mode: str | None
    """Isolation actually used: ``bwrap``, ``unshare`` or None when none was available."""


def default_python() -> str:
    """The base interpreter (outside any venv) that runs sandboxed programs."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _interpreter_prefix(python: str) -> str:
    return str(Path(python).resolve().parents[1])


def _bwrap_command(python: str, uid: int, limits: SandboxLimits, report_fd: int) -> list[str]:
    prefix = _interpreter_prefix(python)
    command = [
        "bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", str(limits.scratch_mb << 20), "--tmpfs", _SCRATCH,
        "--ro-bind", str(HARNESS), _HARNESS_IN_SANDBOX,
    ]
    if not prefix.startswith("/usr/"):
        command += ["--ro-bind", prefix, prefix]
    for name, value in _scrubbed_env(_SCRATCH).items():
        command += ["--setenv", name, value]
    command += ["--chdir", _SCRATCH, "--cap-add", "CAP_SETUID,CAP_SETGID", "--"]
    return command + _drop_privileges(uid) + [python, "-I", "-S", _HARNESS_IN_SANDBOX, str(report_fd)]


def _unshare_command(python: str, uid: int, report_fd: int) -> list[str]:
    namespaces = ["--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts"]
    return (["unshare", *namespaces, "--"] + _drop_privileges(uid)
            + [python, "-I", "-S", str(HARNESS), str(report_fd)])


def _drop_privileges(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


def _scrubbed_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}


def _prlimit_prefix(limits: SandboxLimits) -> list[str]:
    return ["prlimit", f"--as={limits.memory_mb << 20}", f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
            f"--nproc={limits.max_processes}", f"--fsize={limits.max_file_mb << 20}", "--core=0", "--"]


def _launch_command(mode: str, python: str, uid: int, limits: SandboxLimits, report_fd: int) -> list[str]:
    if mode == "bwrap":
        inner = _bwrap_command(python, uid, limits, report_fd)
    else:
        inner = _unshare_command(python, uid, report_fd)
    return _prlimit_prefix(limits) + inner


_PACKAGE_OF = {"bwrap": "bubblewrap", "unshare": "util-linux", "setpriv": "util-linux", "prlimit": "util-linux"}


def _missing_tools(mode: str) -> str:
    """The tools ``mode`` needs that are not installed here ("" when all are)."""
    tools = {"bwrap": ["bwrap"], "unshare": ["unshare"]}[mode] + ["setpriv", "prlimit"]
    absent = [tool for tool in tools if not shutil.which(tool)]
    return ", ".join(f"{tool} is not installed (package {_PACKAGE_OF[tool]})" for tool in absent)


@dataclass(frozen=True)
class Isolation:
    """What the probe found: the isolation runs get here, or why there is none."""

    mode: str | None
    """``bwrap`` or ``unshare``; None when neither works."""
    problem: str
    """Why each candidate failed ("" when ``mode`` is set)."""


_PROBE_LOCK = threading.Lock()


def probe_isolation(mode: str = "auto", python: str | None = None, uid_base: int = 61000) -> Isolation:
    """The isolation a run in ``mode`` gets here, probed once per process (``auto`` prefers bwrap),
    with the reason when there is none (then every run is ``sandbox_error``).

    Both modes need root (namespaces without a user namespace, and a uid switch for RLIMIT_NPROC).
    The probe runs a program as ``uid_base - 1``, a uid no slot uses, one probe at a time.
    """
    if mode not in SANDBOX_MODES:
        raise ValueError(f"sandbox mode must be one of {SANDBOX_MODES}, got {mode!r}")
    with _PROBE_LOCK:
        return _probe(mode, python, uid_base)


def resolve_mode(mode: str = "auto", python: str | None = None, uid_base: int = 61000) -> str | None:
    """``probe_isolation(...).mode``: ``bwrap``, ``unshare``, or None when none works."""
    return probe_isolation(mode, python, uid_base).mode


def forget_probes() -> None:
    """Drop the cached probe results (after installing a tool, or in tests)."""
    _probe.cache_clear()


@functools.lru_cache(maxsize=None)
def _probe(mode: str, python: str | None, uid_base: int) -> Isolation:
    candidates = ["bwrap", "unshare"] if mode == "auto" else [mode]
    problems = [f"{candidate}: {missing}" for candidate in candidates if (missing := _missing_tools(candidate))]
    if os.geteuid() != 0:
        problems.insert(0, f"this process runs as uid {os.geteuid()}, not root (the sandbox creates namespaces "
                        "without a user namespace and runs each program as its own uid)")
        return Isolation(None, "; ".join(problems))
    for candidate in candidates:
        if _missing_tools(candidate):
            continue
        probe = _run(candidate, "print('ok')", SandboxLimits(timeout_s=20), python or default_python(), uid_base - 1)
        if probe.status == "pass" and probe.stdout.strip() == "ok":
            return Isolation(candidate, "")
        problems.append(f"{candidate}: a probe run ended {probe.status}: {probe.detail}")
    return Isolation(None, "; ".join(problems))


def run_sandboxed(source: str, limits: SandboxLimits = SandboxLimits(), mode: str = "auto",
                  python: str | None = None, uid_base: int = 61000, slot: int = 0) -> SandboxResult:
    """Run Python ``source`` in the sandbox and classify the outcome (see module doc).

    ``slot`` picks the sandbox uid (``uid_base + slot``): concurrent runs must use distinct slots, since
    a finished run kills every process left with its uid.
    """
    python = python or default_python()
    isolation = probe_isolation(mode, python, uid_base)
    if isolation.mode is None:
        return SandboxResult("sandbox_error", f"no working sandbox for mode {mode!r}: {isolation.problem}",
                             None, "", 0.0, None)
    return _run(isolation.mode, source, limits, python, uid_base + slot)


def _run(mode: str, source: str, limits: SandboxLimits, python: str, uid: int) -> SandboxResult:
    nonce = secrets.token_hex(16)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="factory-sandbox-") as scratch:
        if mode == "unshare":  # the scratch dir is the program's working directory
            os.chown(scratch, uid, uid)
        stdout_path, stderr_path = Path(scratch, "stdout"), Path(scratch, "stderr")
        report_read, report_write = os.pipe()
        try:
            with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
                command = _launch_command(mode, python, uid, limits, report_write)
                exit_code, timed_out = _execute(command, f"{nonce}\n{source}".encode(), limits,
                                                out, err, report_write, scratch, mode)
            _await_namespace_teardown(uid)
            os.close(report_write)
            report_write = -1
            report = _read_available(report_read)
        finally:
            os.close(report_read)
            if report_write >= 0:
                os.close(report_write)
        stdout = _tail(stdout_path)
        stderr = _tail(stderr_path)
        output_capped = stdout_path.stat().st_size >= limits.max_file_mb << 20
    duration = time.monotonic() - started
    status, detail = _classify(exit_code, timed_out, report, nonce, stderr, limits, duration)
    if output_capped:
        detail = f"output limit ({limits.max_file_mb} MB) reached; {detail}"
    return SandboxResult(status, detail, exit_code, stdout, duration, mode)


def _execute(command: list[str], stdin: bytes, limits: SandboxLimits, out, err, report_fd: int,
             scratch: str, mode: str) -> tuple[int | None, bool]:
    """Start the launcher in its own process group, feed stdin, wait; returns (exit code, timed out).
    Kills the whole group at the wall-clock limit. A launcher that cannot start returns (None, False)."""
    workdir = scratch if mode == "unshare" else None
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                pass_fds=(report_fd,), cwd=workdir, env=_scrubbed_env(workdir or _SCRATCH),
                                start_new_session=True)
    except OSError as exc:
        err.write(f"cannot start sandbox launcher: {exc}".encode())
        return None, False
    timed_out = False
    try:
        proc.communicate(stdin, timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return proc.returncode, timed_out


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
    return pids


def _await_namespace_teardown(uid: int, deadline_s: float = 10.0) -> None:
    """Wait until no process of the sandbox uid is left (the kernel kills a dead pid namespace's
    members asynchronously), so the slot's RLIMIT_NPROC count is free for the next run."""
    stop = time.monotonic() + deadline_s
    while (pids := _processes_of(uid)) and time.monotonic() < stop:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def _read_available(fd: int) -> str:
    """What was written to the report pipe; non-blocking, in case a writer outlived the run."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        if sum(map(len, chunks)) > 65536:
            break
    return b"".join(chunks).decode(errors="replace")


def _tail(path: Path) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - _STREAM_TAIL))
        return handle.read().decode(errors="replace")


def _signal_of(exit_code: int | None) -> int | None:
    """The signal that ended the program: negative codes from Popen, 128+n from bwrap/unshare."""
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    return exit_code - 128 if 128 < exit_code < 160 else None


def _classify(exit_code: int | None, timed_out: bool, report: str, nonce: str, stderr: str,
              limits: SandboxLimits, duration_s: float) -> tuple[str, str]:
    markers = {line.split(" ", 1)[0] for line in report.splitlines() if line.endswith(" " + nonce)}
    last_lines = " | ".join(stderr.strip().splitlines()[-3:])
    if timed_out:
        return "timeout", f"wall-clock limit {limits.timeout_s}s"
    if "start" not in markers:
        return "sandbox_error", f"sandbox did not start the program (exit {exit_code}): {last_lines}"
    if "memory" in markers:
        return "memory", f"MemoryError (limit {limits.memory_mb} MB)"
    ended_by = _signal_of(exit_code)
    if ended_by == signal.SIGXCPU:
        return "timeout", f"CPU limit {limits.cpu_s}s"
    if ended_by == signal.SIGKILL:  # the hard CPU limit, or the kernel's OOM killer
        if duration_s >= limits.cpu_s:
            return "timeout", f"CPU limit {limits.cpu_s}s (SIGKILL)"
        return "memory", "killed by SIGKILL (out of memory)"
    if "done" in markers and exit_code == 0:
        return "pass", ""
    return "fail", last_lines or f"exit code {exit_code}"
