"""Cost measurement of generation actors: process-tree peak memory, NVML attribution, latency sample."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from factory.stages.generate import metrics as generate_metrics
from factory.stages.generate.metrics import LatencySample, device_bytes, peak_rss_bytes

MIB = 2**20
# A child that touches 200 MiB, frees it, then waits: its current RSS is small, its high-water mark is not.
CHILD = "b = bytearray(200 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\ndel b\nprint('ready', flush=True)\ninput()"


def _own_peak() -> int:
    return generate_metrics._high_water_rss(generate_metrics._process_tree(None)[0])


def test_peak_rss_counts_a_child_process_high_water_mark():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        import psutil

        assert psutil.Process(child.pid).memory_info().rss < 150 * MIB  # freed: only the peak remembers it
        assert peak_rss_bytes() - _own_peak() >= 200 * MIB
        assert peak_rss_bytes(child.pid) >= 200 * MIB
    finally:
        child.communicate("\n", timeout=30)


def test_peak_rss_of_this_process_is_at_least_its_current_rss():
    import psutil

    assert peak_rss_bytes() >= psutil.Process().memory_info().rss > 0


def test_device_bytes_is_none_without_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    assert device_bytes() is None


def test_device_bytes_counts_only_this_process_tree(monkeypatch):
    """NVML stub (no GPU here): memory of a foreign process on the same device is not ours."""
    proc = types.SimpleNamespace
    fake = types.SimpleNamespace(
        NVMLError=RuntimeError, nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetComputeRunningProcesses=lambda h: [proc(pid=os.getpid(), usedGpuMemory=3 * MIB),
                                                        proc(pid=1, usedGpuMemory=50 * MIB)] if h == 0
        else [proc(pid=os.getpid(), usedGpuMemory=None)],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert device_bytes() == 3 * MIB


def test_device_bytes_is_unknown_when_nvml_lists_none_of_our_processes(monkeypatch):
    """e.g. a container without the host pid namespace: NVML's pids are the host's."""
    fake = types.SimpleNamespace(
        NVMLError=RuntimeError, nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetComputeRunningProcesses=lambda h: [types.SimpleNamespace(pid=1, usedGpuMemory=50 * MIB)],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert device_bytes() is None


def test_latency_percentiles_are_nearest_rank():
    sample = LatencySample()
    sample.extend([float(v) for v in range(1, 11)])
    assert (sample.percentile(50), sample.percentile(90), sample.percentile(100)) == (5.0, 9.0, 10.0)
    assert sample.mean() == 5.5 and LatencySample().percentile(50) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_latency_reservoir_is_bounded_seeded_and_unbiased(seed):
    def filled():
        sample = LatencySample(capacity=1000, seed=seed)
        sample.extend([float(v) for v in range(100_000)])
        return sample

    a, b = filled(), filled()
    assert len(a._values) == 1000 and a.count == 100_000 and a.mean() == 49_999.5
    assert a.percentile(50) == b.percentile(50)
    assert abs(a.percentile(50) - 50_000) < 5_000  # a uniform sample's median is near the true one
