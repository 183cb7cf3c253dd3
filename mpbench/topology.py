"""Where the workers of a run execute: device, backend, threads, and whether cores are oversubscribed.

Decided once per run, from the config and the machine, and recorded in the run's summary. A
worker without CUDA is one gloo process with `threads_per_worker` threads: a fixed unit of
compute, the CPU analogue of one GPU.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from mpbench.errors import ConfigError
from mpbench.external_workers import workers_on_this_node


@dataclass(frozen=True)
class Topology:
    workers: int
    device_type: str  # "cpu" or "cuda"
    backend: str  # "gloo" or "nccl"
    threads_per_worker: int
    cores: int
    notice: str | None = None  # e.g. why a CUDA request fell back to CPU
    workers_on_node: int | None = None  # where a launcher spreads the workers over nodes: this node's

    @property
    def oversubscribed(self) -> bool:
        """More busy threads than cores: timings then measure contention, not the algorithm."""
        here = self.workers_on_node or self.workers
        return self.device_type == "cpu" and here * self.threads_per_worker > self.cores

    def as_record(self) -> dict:
        return {**asdict(self), "oversubscribed": self.oversubscribed}


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_topology(workers: int, device: str, threads_per_worker: int, workers_here: int | None = None) -> Topology:
    """Pick the device and backend for `workers` workers, `workers_here` of them on this node
    (default: all; fewer when a launcher spreads them over several nodes).

    `device=auto` uses CUDA (NCCL) when there is one GPU per worker and otherwise falls back to
    the CPU (gloo) with a notice; `device=cuda` without enough GPUs is an error.
    """
    gpus_here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    needed = workers if workers_here is None else workers_here
    spread = None if needed == workers else needed
    cores = available_cores()
    if device == "cpu":
        return Topology(workers, "cpu", "gloo", threads_per_worker, cores, workers_on_node=spread)
    if gpus_here >= needed:
        return Topology(workers, "cuda", "nccl", threads_per_worker, cores, workers_on_node=spread)
    if device == "cuda":
        raise ConfigError(f"device=cuda needs {needed} CUDA devices on this node (gpus={workers}) but "
                          f"{gpus_here} are available; use device=auto or device=cpu")
    notice = None
    if gpus_here:
        notice = (f"device=auto: {gpus_here} CUDA device(s) for {workers} workers; "
                  f"running on CPU with gloo instead")
    return Topology(workers, "cpu", "gloo", threads_per_worker, cores, notice, workers_on_node=spread)


def cpu_worker_limit(worker_limit: int | str) -> int:
    """The most CPU workers a run may start: `worker_limit`, for `auto` 4 per available core and
    at least 8 (each worker is a process of a few hundred MB), for `cores` one per core (no
    oversubscribed run: a sweep measures only where the machine holds the workers)."""
    if worker_limit == "auto":
        return max(8, 4 * available_cores())
    return available_cores() if worker_limit == "cores" else int(worker_limit)


def check_worker_limit(workers: int, device: str, worker_limit: int | str) -> None:
    """ConfigError unless `workers` CPU workers fit `worker_limit` (GPU runs are bounded by the
    GPUs there are); a guard against `gpus=1000` starting a thousand processes on this node."""
    here = workers_on_this_node(workers)
    if device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() >= here:
        return  # one GPU per worker
    limit = cpu_worker_limit(worker_limit)
    if here > limit:
        bound = (f"worker_limit={worker_limit} allows {limit} on {available_cores()} cores"
                 if worker_limit in ("auto", "cores") else f"worker_limit={limit}")
        raise ConfigError(f"gpus={workers} would start {here} CPU worker processes here but {bound}; "
                          f"use fewer gpus, or raise the bound explicitly with worker_limit={workers}")
