"""What else the machine did during a run, to flag timings that interference may have spoiled
(a shared node, a noisy neighbour, a hypervisor taking cycles).

From the run's start to its end (the launcher's view: it and its workers are "the run"):
- `other_cpu_cores`: CPU time the machine spent on other processes, in cores on average: all
  busy CPU time (/proc/stat) minus the CPU time of this process and its reaped workers, over the
  wall time. Not measured under torchrun, whose workers are not this process's children;
- `cpu_steal_fraction`: the fraction of CPU time a hypervisor took (/proc/stat "steal");
- `load_average_1m` at the end, for the record (it lags: it still holds the previous run's load).
`interference` says in one phrase why the timings are doubtful, or None.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

# Beyond these, a run's timings say more about the machine than about the algorithm.
SPREAD_LIMIT = 0.25  # interquartile range of the steady step times / their median
STEAL_LIMIT = 0.05  # fraction of CPU time stolen
OTHER_CORES_LIMIT = 0.5  # cores' worth of CPU time used by other processes, on average


@dataclass(frozen=True)
class Snapshot:
    at: float
    load_1m: float | None = None
    busy_s: float | None = None  # CPU time of the whole machine not idle, summed over CPUs
    steal_s: float | None = None
    total_s: float | None = None
    own_s: float = 0.0  # CPU time of this process and its reaped children


def snapshot() -> Snapshot:
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    try:
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, idle, iowait, irq, softirq, steal = (
            [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]] + [0] * 8)[:8]
        busy = (user + nice + system + irq + softirq) / tick
        return Snapshot(time.time(), load, busy, steal / tick, (busy * tick + idle + iowait + steal) / tick, own)
    except (OSError, ValueError):
        return Snapshot(time.time(), load, own_s=own)


def load_record(before: Snapshot, after: Snapshot, spread: float | None, own_children: bool = True) -> dict:
    """The machine's load over a run, and the interference verdict. `spread`: the run's step-time
    IQR / median, if known; `own_children`: the run's workers are this process's children."""
    wall = after.at - before.at
    others = steal = None
    if None not in (before.busy_s, after.busy_s) and wall > 0:
        if own_children:
            others = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / wall
        if after.total_s > before.total_s:
            steal = (after.steal_s - before.steal_s) / (after.total_s - before.total_s)
    causes = []
    if spread is not None and spread > SPREAD_LIMIT:
        causes.append(f"step times spread {spread:.0%} of their median")
    if steal is not None and steal > STEAL_LIMIT:
        causes.append(f"{steal:.0%} of CPU time stolen")
    if others is not None and others > OTHER_CORES_LIMIT:
        causes.append(f"other processes used {others:.1f} cores meanwhile")
    return {"other_cpu_cores": others, "cpu_steal_fraction": steal, "load_average_1m": after.load_1m,
            "interference": "; ".join(causes) or None}
