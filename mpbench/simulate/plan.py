"""One plan per algorithm family: a configuration turned into each worker's program of tasks.

A plan reads the algorithm's settings and the profiled costs (`Setup`) and writes, for every
worker, the tasks it runs per iteration in the order the real code runs them
(`Programs.add`), for `setup.iterations` iterations, plus what each worker holds throughout
(`Programs.hold`: weights, gradients, optimizer state, and the seconds of the trainer's per-step
finiteness check of those weights). The harness (mpbench/simulate/simulation.py) adds what every
algorithm shares: the trainer's per-step overhead and its loss all-reduce.

    data_parallel.py   backprop, data_parallel (DDP's bucketed all-reduce beside the backward)
    pipelines.py       pipeline (every torch schedule, from torch's own action lists), hypar
    stale_gradient.py  ddg, features_replay, ouroboros (linear and ring; S, H, R)
    local_learning.py  local_critic, critic_training, dgl, dni, sub_model_backprop
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from mpbench.blocks import BlockModel
from mpbench.simulate.costs import Profiler
from mpbench.simulate.engine import Lane, Task
from mpbench.simulate.link import Link


@dataclass(frozen=True)
class Setup:
    """What a plan is built from."""

    algorithm: str
    workers: int
    batch_size: int
    element_bytes: int  # of the run's dtype
    settings: Any  # the algorithm's settings dataclass
    costs: Profiler  # per-block costs of the run's model at any number of rows
    model: BlockModel  # the run's model, with weights (local heads are built from it)
    link: Link
    state_copies: int  # optimizer state per parameter: 2 for Adam(W), 1 for SGD with momentum, else 0
    iterations: int  # how many steps to simulate (enough for the steady state)


class Programs:
    """Every lane's tasks in program order, each worker's memory held throughout, and the seconds
    the trainer's per-step finiteness check of what it holds takes."""

    def __init__(self):
        self.lanes: dict[Lane, list[Task]] = defaultdict(list)
        self.held_bytes: dict[int, int] = defaultdict(int)
        self.check_s: dict[int, float] = defaultdict(float)

    def add(self, key: Hashable, worker: int, kind: str, seconds: float, needs=(), iteration: int = 0,
            memory: int = 0, lane: str = "compute", group: Hashable | None = None, label: str = "") -> Hashable:
        """Append a task to `worker`'s `lane`; returns its key (for the `needs` of later tasks)."""
        self.lanes[(worker, lane)].append(Task(key, (worker, lane), seconds, kind, tuple(needs), iteration,
                                               memory, group, label or str(kind)))
        return key

    def hold(self, worker: int, parameter_bytes: int, state_copies: int, check_s: float = 0.0) -> None:
        """`worker` holds weights of `parameter_bytes`, their gradients and the optimizer's state;
        `check_s`: the trainer's finiteness check of those weights, per step (the blocks' `check_s`)."""
        self.held_bytes[worker] += parameter_bytes * (2 + state_copies)
        self.check_s[worker] += check_s


Plan = Callable[[Setup], Programs]
PLANS: dict[str, Plan] = {}
WARM_UP: dict[str, Callable[[Setup], int]] = {}  # iterations before the steady state


def plan_for(*algorithms: str, warm_up: Callable[[Setup], int] = lambda setup: 1):
    """Register a plan for the named algorithms, and how many iterations they take to fill."""
    def register(fn: Plan) -> Plan:
        for name in algorithms:
            PLANS[name], WARM_UP[name] = fn, warm_up
        return fn
    return register


def message(link: Link, nbytes: int, same_worker: bool) -> float:
    """Transfer time of a message between two workers (none within one worker)."""
    return 0.0 if same_worker else link.message_s(nbytes)
