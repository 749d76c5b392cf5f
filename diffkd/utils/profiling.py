"""Measurement helpers for the benchmark tools: peak memory of a phase and
wall time of named stages."""
import ctypes
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch


def _status_kb(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def release_freed_memory():
    """Hand memory freed by Python/torch back to the OS (glibc keeps it
    otherwise, and the next phase's RSS would look smaller than it is)."""
    import gc
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory since :meth:`reset`: CUDA max allocated on a GPU; on a CPU
    the kernel's resident-set high-water mark (reset through
    ``/proc/self/clear_refs``), or a 2 ms RSS poll where that is refused."""

    def __init__(self, device: str = 'cpu'):
        self.device = torch.device(device)
        self._poll: Optional[threading.Thread] = None
        self._polled = 0
        self._stop = threading.Event()
        if self.device.type == 'cuda':
            self.method = 'cuda_max_allocated'
        elif self._clear_refs():
            self.method = 'rss_hwm'
        else:
            self.method = 'rss_poll'

    @staticmethod
    def _clear_refs() -> bool:
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            return _status_kb('VmHWM') is not None
        except OSError:
            return False

    def current(self) -> int:
        if self.device.type == 'cuda':
            return torch.cuda.memory_allocated(self.device)
        return (_status_kb('VmRSS') or 0) * 1024

    def reset(self):
        self.stop()
        self.start = self.current()
        if self.method == 'cuda_max_allocated':
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.method == 'rss_hwm':
            self._clear_refs()
        else:
            self._polled = self.start
            self._stop.clear()
            self._poll = threading.Thread(target=self._run, daemon=True)
            self._poll.start()

    def _run(self):
        while not self._stop.wait(0.002):
            self._polled = max(self._polled, self.current())

    def stop(self):
        if self._poll is not None:
            self._stop.set()
            self._poll.join()
            self._poll = None

    def peak(self) -> int:
        if self.method == 'cuda_max_allocated':
            return torch.cuda.max_memory_allocated(self.device)
        if self.method == 'rss_hwm':
            return (_status_kb('VmHWM') or 0) * 1024
        return max(self._polled, self.current())


class StageTimer:
    """Wall time per named stage; synchronises CUDA around each stage so
    asynchronous kernels are charged to the stage that launched them."""

    def __init__(self, device: str = 'cpu'):
        self.cuda = torch.device(device).type == 'cuda'
        self.totals: Dict[str, float] = defaultdict(float)
        self.samples: Dict[str, List[float]] = defaultdict(list)
        self.active = False

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        if not self.active:
            yield
            return
        t = self.now()
        try:
            yield
        finally:
            self.add(name, self.now() - t)

    def add(self, name: str, seconds: float):
        if self.active:
            self.totals[name] += seconds
            self.samples[name].append(seconds)
