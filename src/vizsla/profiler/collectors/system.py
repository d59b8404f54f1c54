"""System metrics on a background thread: per-core CPU and I/O wait, memory, disk, network, process RSS, GPUs.

psutil gives the host figures; NVML (pynvml) the GPU ones, only when pynvml imports and finds a GPU. One
sample costs ~1 ms of one core here (2-core EPYC), so the default 500 ms interval costs ~0.2 % of a core.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from vizsla.callbacks import TrainState
from vizsla.profiler.collectors.base import BaseCollector, JsonlWriter

log = logging.getLogger("vizsla.profiler")


class Nvml:
    """Per-GPU utilisation, memory and power through NVML; `available` is False without pynvml or GPUs."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no pynvml, no driver or no GPU: profile without GPU metrics
            self.handles = []

    @property
    def available(self) -> bool:
        return bool(self.handles)

    def sample(self) -> list[dict[str, float]]:
        gpus = []
        for handle in self.handles:
            util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                power = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W
            except Exception:  # noqa: BLE001 - some boards do not report power
                power = None
            gpus.append(
                {
                    "util": float(util.gpu),
                    "memory_percent": 100.0 * memory.used / memory.total if memory.total else 0.0,
                    "memory_used_mb": memory.used / 2**20,
                    "power_w": power,
                }
            )
        return gpus


class SystemCollector(BaseCollector):
    """Samples the machine every `interval_ms` on a daemon thread from fit_start to fit_end."""

    name = "system"

    def __init__(self, path: Path, interval_ms: int = 500) -> None:
        import psutil

        self.path = Path(path)
        self.interval = interval_ms / 1000.0
        self.writer = JsonlWriter(self.path, flush_every=20)
        self._psutil = psutil
        self._process = psutil.Process(os.getpid())
        self._children: dict[int, Any] = {}
        self._nvml = Nvml()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] | None = None
        self._previous: tuple[float, Any, Any] | None = None

    @property
    def gpu_count(self) -> int:
        return len(self._nvml.handles)

    def sample(self) -> dict[str, Any]:
        """One snapshot; rates (bytes/s) and CPU % are over the time since the previous snapshot."""
        psutil = self._psutil
        now = time.time()
        cores = psutil.cpu_times_percent(percpu=True)
        disk, net = psutil.disk_io_counters(), psutil.net_io_counters()
        memory = psutil.virtual_memory()
        record: dict[str, Any] = {
            "time": now,
            "cpu": [round(max(0.0, 100.0 - c.idle - getattr(c, "iowait", 0.0)), 1) for c in cores],
            "iowait": [round(getattr(c, "iowait", 0.0), 1) for c in cores],
            "memory_percent": memory.percent,
            "memory_used_mb": round(memory.used / 2**20, 1),
            "rss_mb": round(self._rss_bytes() / 2**20, 1),
            "workers": len(self._children),
        }
        if self._previous is not None:
            then, old_disk, old_net = self._previous
            dt = max(now - then, 1e-6)
            if disk is not None and old_disk is not None:
                record["disk_read_bps"] = (disk.read_bytes - old_disk.read_bytes) / dt
                record["disk_write_bps"] = (disk.write_bytes - old_disk.write_bytes) / dt
            if net is not None and old_net is not None:
                record["net_recv_bps"] = (net.bytes_recv - old_net.bytes_recv) / dt
                record["net_sent_bps"] = (net.bytes_sent - old_net.bytes_sent) / dt
        self._previous = (now, disk, net)
        if self._nvml.available:
            record["gpus"] = self._nvml.sample()
        self._last = record
        return record

    def _rss_bytes(self) -> int:
        """RSS of this process and its children (data loader workers), tolerant of workers exiting."""
        psutil = self._psutil
        total = self._process.memory_info().rss
        try:
            children = self._process.children(recursive=True)
        except psutil.Error:
            children = []
        self._children = {child.pid: child for child in children}
        for child in children:
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.writer.append(self.sample())
            except Exception as exc:  # noqa: BLE001 - a failing sample must not end the sampling
                log.debug("system sample failed: %r", exc)

    def start(self) -> None:
        if self._thread is not None:
            return
        self.sample()  # primes the CPU-times and I/O counters; the first written sample covers one interval
        self._thread = threading.Thread(target=self._run, name="vizsla-profiler-system", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        self.writer.close()

    def fit_start(self, state: TrainState) -> None:
        self.start()

    def epoch_end(self, state: TrainState) -> None:
        self.writer.flush()

    def fit_end(self, state: TrainState) -> None:
        self.stop()
