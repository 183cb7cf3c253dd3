"""What else the machine did during a run: load average and CPU steal, to flag timings that
interference may have spoiled (a shared node, a noisy neighbour, a hypervisor taking cycles).

A run records, from its start to its end: the highest 1-minute load average seen at either end,
and the fraction of CPU time stolen by the hypervisor (/proc/stat). With the run's own busy
threads known, `interference` says in one phrase why its timings are doubtful, or None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# Beyond these, a run's timings say more about the machine than about the algorithm.
SPREAD_LIMIT = 0.25  # interquartile range of the steady step times / their median
STEAL_LIMIT = 0.05  # fraction of CPU time stolen
EXTRA_LOAD_LIMIT = 1.0  # runnable threads beyond the run's own busy threads


@dataclass(frozen=True)
class Snapshot:
    at: float
    load_1m: float | None
    steal: int | None  # jiffies stolen, summed over CPUs
    total: int | None  # all jiffies


def snapshot() -> Snapshot:
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        steal, total = (fields[7] if len(fields) > 7 else 0), sum(fields[:8])
    except (OSError, ValueError, IndexError):
        steal = total = None
    return Snapshot(time.time(), load, steal, total)


def load_record(before: Snapshot, after: Snapshot, busy_threads: int, spread: float | None) -> dict:
    """The machine's load over a run, and the interference verdict (see the module docstring).
    `spread`: the run's step-time IQR / median, if known."""
    loads = [v for v in (before.load_1m, after.load_1m) if v is not None]
    steal = None
    if None not in (before.steal, after.steal, before.total, after.total) and after.total > before.total:
        steal = (after.steal - before.steal) / (after.total - before.total)
    load = max(loads) if loads else None
    causes = []
    if spread is not None and spread > SPREAD_LIMIT:
        causes.append(f"step times spread {spread:.0%} of their median")
    if steal is not None and steal > STEAL_LIMIT:
        causes.append(f"{steal:.0%} of CPU time stolen")
    if load is not None and load > busy_threads + EXTRA_LOAD_LIMIT:
        causes.append(f"load average {load:.1f} for {busy_threads} busy threads of this run")
    return {"load_average_1m": load, "cpu_steal_fraction": steal,
            "interference": "; ".join(causes) or None}
