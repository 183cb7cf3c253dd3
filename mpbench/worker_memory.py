"""What a worker's memory figures measure: the memory this worker process itself holds.

On CUDA, the allocator's own counters: `baseline` is what is allocated when the worker starts
building (about nothing), `peak` the most allocated since, after the peak was reset there.

On a Linux CPU, the resident set of this process's own address space (`/proc/self/status`):
`baseline` is VmRSS before data and model are built (interpreter, PyTorch, gloo), `peak` is
VmHWM, its high-water mark, reset to the baseline at that moment where the kernel allows it
(`/proc/self/clear_refs`). Not `getrusage`'s `ru_maxrss`: Linux keeps that maximum across
`execve`, so a spawned worker would start from the launcher's resident size (a sweep's launcher
holds hundreds of MiB) and every small worker's peak would read as the launcher's. Elsewhere
(macOS, no /proc) `ru_maxrss` is the only figure there is, and it is recorded as such.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_PEAK = "5"  # clear_refs: set the high-water mark to the current resident size (Linux >= 4.0)


def _status_bytes(field: str) -> int | None:
    """A `kB` field of /proc/self/status in bytes, or None where there is none."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def start_measuring(device: torch.device) -> int:
    """This worker's memory now (its baseline), and its peak counted from here; in bytes."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    resident = _status_bytes("VmRSS")
    if resident is None:
        return _ru_maxrss_bytes()
    try:
        CLEAR_REFS.write_text(_RESET_PEAK)
    except OSError:
        pass  # the high-water mark then also covers start-up, which the baseline is part of anyway
    return resident


def peak_bytes(device: torch.device) -> int:
    """The most memory this worker has held: allocated on CUDA, resident on the CPU (above)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else _ru_maxrss_bytes()


def measure_of(device: torch.device) -> str:
    """What `peak_bytes` measures on `device` in this process, for the run's record."""
    if device.type == "cuda":
        return "cuda peak allocated"
    if _status_bytes("VmHWM") is not None:
        return "resident set high-water mark of the worker's own process (VmHWM)"
    return "ru_maxrss (may include the launcher's resident size)"
