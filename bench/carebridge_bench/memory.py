"""Resident memory (RSS) of the service processes: a reading now, and the peak of a phase."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import psutil

MB = 1024 * 1024


def rss_mb(pids: Mapping[str, int]) -> dict[str, float]:
    """RSS in MiB of each named process that is still running."""
    found: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            found[name] = psutil.Process(pid).memory_info().rss / MB
        except psutil.Error:
            continue
    return found


def cpu_seconds(pid: int, *, children: bool = False) -> float | None:
    """User + system CPU of a process, with `children` also of its live children (PostgreSQL's
    backends)."""
    try:
        process = psutil.Process(pid)
        total = sum(process.cpu_times()[:2])
        for child in process.children(recursive=True) if children else []:
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                continue
    except psutil.Error:
        return None
    return total


class PeakSampler:
    """Samples RSS in a thread every `interval` seconds; `peaks` holds each process's highest.
    `cpu_seconds` is the CPU each process used between enter and exit (`cpu_only` ones with
    their children, and no RSS: PostgreSQL's backends share memory)."""

    def __init__(
        self,
        pids: Mapping[str, int],
        *,
        cpu_only: Mapping[str, int] | None = None,
        interval: float = 0.25,
    ) -> None:
        self.pids = dict(pids)
        self.cpu_only = dict(cpu_only or {})
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._cpu_start = self._cpu()

    def restart_cpu(self) -> None:
        """Count `cpu_seconds` from now (after a warm-up that is not measured)."""
        self._cpu_start = self._cpu()

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds each process used so far (to take differences over a step)."""
        return self._cpu()

    def _cpu(self) -> dict[str, float]:
        times: dict[str, float] = {}
        for name, pid, children in [
            *((name, pid, False) for name, pid in self.pids.items()),
            *((name, pid, True) for name, pid in self.cpu_only.items()),
        ]:
            used = cpu_seconds(pid, children=children)
            if used is not None:
                times[name] = used
        return times

    def _sample(self) -> None:
        for name, value in rss_mb(self.pids).items():
            self.peaks[name] = max(self.peaks.get(name, 0.0), value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._cpu_start = self._cpu()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        end = self._cpu()
        self.cpu_seconds = {
            name: round(end[name] - self._cpu_start[name], 2)
            for name in end
            if name in self._cpu_start
        }
