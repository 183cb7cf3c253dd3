"""How a worker's host memory allocator treats freed memory: kept for reuse, as a GPU's caching
allocator keeps it.

glibc's malloc hands large freed blocks back to the kernel (it trims the heap's top and unmaps
blocks above a threshold that moves at run time), so the next step's tensors fault their pages
in again. On this machine that cost resnet20 on CIFAR-10 about 20% of a step on one thread, and
more at random: how much came back depended on the order of allocations, so a block timed alone
by the simulator's profiler paid faults that the same block inside a training step did not
(the early, large-activation blocks up to twice). Keeping freed memory removes both: a
worker's time is compute, and the profile and the run see the same allocator. Memory is still
reused, so the resident size stays near the run's peak.

Applied in every worker process and in the process that profiles for the simulator; recorded
in every run's `environment.host_allocator`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_NEVER_TRIM_BYTES = 1 << 30
_MMAP_ABOVE_BYTES = 32 << 20  # glibc's largest allowed threshold on 64-bit; larger blocks are still mapped


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def host_allocator_policy() -> str:
    """What `keep_freed_host_memory` does on this machine, for the run's record."""
    if _glibc() is None:
        return "system default (not glibc)"
    return f"glibc, freed memory kept (trim threshold {_NEVER_TRIM_BYTES >> 20} MiB, mmap above {_MMAP_ABOVE_BYTES >> 20} MiB)"


def keep_freed_host_memory() -> bool:
    """Tell this process's glibc malloc to keep freed memory for reuse; False where it cannot."""
    libc = _glibc()
    if libc is None:
        return False
    # Setting either threshold also stops glibc moving the mmap threshold itself, so both are set.
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM_BYTES)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE_BYTES))
