"""What a generation actor costs to run: peak memory of its process tree and request latencies.

Contract: :func:`peak_rss_bytes` is the sum, over the actor process and every descendant (vLLM runs
its engine core in a child process), of each process's high-water-mark resident set (Linux
``VmHWM``), so it includes model loading and the KV cache pages actually touched; it is sampled
after each batch, but a high-water mark cannot miss a peak between samples. :func:`device_bytes`
is the GPU memory NVML attributes to the same processes (None without a GPU or NVML, or when NVML
lists none of them: in a container without the host's pid namespace its pids are the host's); with vLLM it
includes the KV-cache reservation set by ``gpu_memory_utilization``, and vLLM workers placed by the
Ray executor (TP/PP > 1) are separate Ray actors, not descendants, so they are not counted.
:class:`LatencySample` keeps a bounded, seeded reservoir of per-request latencies for percentiles.
"""

from __future__ import annotations

import os
import random


def _process_tree(pid: int | None):
    import psutil

    root = psutil.Process(pid or os.getpid())
    return [root, *root.children(recursive=True)]


def _high_water_rss(process) -> int:
    """A live process's peak resident set in bytes (VmHWM), or its current RSS where /proc lacks it."""
    import psutil

    try:
        with open(f"/proc/{process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return process.memory_info().rss
    except (OSError, psutil.Error):  # the process ended between listing and reading
        return 0


def peak_rss_bytes(pid: int | None = None) -> int:
    """Sum of the high-water-mark RSS of process ``pid`` (default: this one) and its descendants."""
    return sum(_high_water_rss(p) for p in _process_tree(pid))


def device_bytes(pid: int | None = None) -> int | None:
    """GPU memory NVML attributes to process ``pid`` and its descendants; None without NVML or GPUs."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        pids = {p.pid for p in _process_tree(pid)}
        used, matched = 0, False
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid in pids:
                    matched = True
                    used += proc.usedGpuMemory or 0
        # No match: no GPU use, or (in a container without the host's pid namespace) NVML's pids are
        # the host's; either way 0 would be a claim we cannot make.
        return used if matched else None
    finally:
        pynvml.nvmlShutdown()


class LatencySample:
    """Per-request latencies: every value up to ``capacity``, then a uniform reservoir (seeded, so
    percentiles are reproducible for the same arrival order)."""

    def __init__(self, capacity: int = 100_000, seed: int = 0):
        self.capacity = capacity
        self.count = 0
        self.total = 0.0
        self._values: list[float] = []
        self._ordered: list[float] | None = None  # sorted _values, kept until the next extend
        self._rng = random.Random(seed)

    def extend(self, values: list[float]) -> None:
        if values:
            self._ordered = None
        for value in values:
            self.count += 1
            self.total += value
            if len(self._values) < self.capacity:
                self._values.append(value)
            else:
                slot = self._rng.randrange(self.count)
                if slot < self.capacity:
                    self._values[slot] = value

    def percentile(self, q: float) -> float | None:
        """Nearest-rank ``q``-th percentile (0 < q <= 100); None before any value."""
        if not self._values:
            return None
        if self._ordered is None:  # the stats file is rewritten per batch: sort once per batch, not per query
            self._ordered = sorted(self._values)
        ordered = self._ordered
        rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least the first value
        return ordered[int(rank) - 1]

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None
