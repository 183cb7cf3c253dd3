"""One configuration, simulated: the plan's programs, what every trainer adds, and what comes out.

Every algorithm's plan (algorithms/simulated/) gives the workers' programs. Added here, the same
for all, as the trainer (mpbench/trainer.py) does per step: the per-step overhead, a task of its
own on every worker (the trainer's own work, measured: mpbench/simulate/overhead.py; plus the
finiteness check of the weights that worker holds, profiled per block), and the loss all-reduce,
started at the end of step t and waited for at the end of step t+1, which keeps every worker
within a step of the others. The steady state is read off worker 0, as the trainer times it: the
period between the starts of two iterations, once the warm-up (a stale pipeline filling, a
delayed target arriving) is over. Per worker, that step splits into busy (the plan's compute),
overhead, and idle (neither); communication runs beside them on its own lane.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from dataclasses import dataclass

from mpbench.simulate.engine import Task, Timeline, simulate
from mpbench.simulate.plan import PLANS, WARM_UP, Programs, Setup

LOSS_BYTES = 8 * 4  # the trainer's per-step reduction: loss sum, rows, stop flag, non-finite flags


@dataclass(frozen=True)
class Simulated:
    """A configuration's simulated steady step, per worker, and the timeline it came from."""

    step_s: float
    busy_s: list[float]  # computing the plan's tasks (forward, backward, optimizer, local modules)
    comm_s: list[float]  # on the communication lane (all-reduces)
    idle_s: list[float]  # neither busy nor overhead: waiting for a message, a peer, a bubble
    peak_memory_bytes: list[int]  # weights, gradients, optimizer state, stashed weights, kept activations
    timeline: Timeline
    window: tuple[float, float]  # the steady iteration measured, on worker 0's clock
    overhead_s: list[float]  # the trainer's per-step work (its own, and the check of the weights held)

    @property
    def idle_fraction(self) -> list[float]:
        return [idle / self.step_s if self.step_s else 0.0 for idle in self.idle_s]


def iterations_for(setup: Setup) -> int:
    return WARM_UP[setup.algorithm](setup) + 4


def with_trainer(programs: Programs, workers: int, overhead_s: list[float], reduce_s: float) -> dict:
    """The plan's lanes plus, per worker and step, the trainer's overhead (`overhead_s[w]`) and
    loss all-reduce."""
    lanes: dict = {}
    by_iteration: dict = defaultdict(lambda: defaultdict(list))
    for lane, tasks in programs.lanes.items():
        for task in tasks:
            by_iteration[lane][task.iteration].append(task)
    steps = max(t.iteration for tasks in programs.lanes.values() for t in tasks) + 1
    for w in range(workers):
        compute, comm = [], []
        for t in range(steps):
            tasks = by_iteration[(w, "compute")][t]
            if t >= 2 and tasks and workers > 1:  # step t+2 starts once the loss of step t is reduced
                tasks[0] = dataclasses.replace(tasks[0], needs=(*tasks[0].needs, (("loss", t - 2, w), 0.0)))
            compute += tasks
            compute.append(Task(("overhead", t, w), (w, "compute"), overhead_s[w], "overhead", iteration=t,
                                label="overhead"))
            comm += by_iteration[(w, "comm")][t]
            if workers > 1:
                comm.append(Task(("loss", t, w), (w, "comm"), reduce_s, "allreduce",
                                 ((("overhead", t, w), 0.0),), t, group=("loss", t), label="loss"))
        lanes[(w, "compute")] = compute
        if comm:
            lanes[(w, "comm")] = comm
    return lanes


def run_plan(setup: Setup) -> Simulated:
    """Simulate `setup.algorithm` on `setup` (its plan must be registered in PLANS)."""
    programs = PLANS[setup.algorithm](setup)
    workers = max(lane[0] for lane in programs.lanes) + 1
    fixed = setup.costs.step_overhead_s()
    overhead_s = [fixed + programs.check_s.get(w, 0.0) for w in range(workers)]
    lanes = with_trainer(programs, workers, overhead_s, setup.link.all_reduce_s(LOSS_BYTES, workers))
    timeline = simulate(lanes)
    starts = _iteration_starts(timeline, lanes[(0, "compute")])
    periods = [b - a for a, b in zip(starts, starts[1:])][-3:]
    step = statistics.median(periods)
    last = len(starts) - 2
    window = (starts[last - 1], starts[last - 1] + step) if last >= 1 else (starts[0], starts[0] + step)
    busy, overhead, comm = [], [], []
    for w in range(workers):
        compute = lanes[(w, "compute")]
        busy.append(_overlap(timeline, [t for t in compute if t.kind != "overhead"], window))
        overhead.append(_overlap(timeline, [t for t in compute if t.kind == "overhead"], window))
        comm.append(_overlap(timeline, lanes.get((w, "comm"), []), window))
    idle = [max(step - b - o, 0.0) for b, o in zip(busy, overhead)]
    return Simulated(step, busy, comm, idle, _peaks(timeline, lanes, programs.held_bytes, workers), timeline, window,
                     overhead)


def _iteration_starts(timeline: Timeline, tasks: list[Task]) -> list[float]:
    starts: dict[int, float] = {}
    for task in tasks:
        starts.setdefault(task.iteration, timeline.start[task.key])
    return [starts[t] for t in sorted(starts)]


def _overlap(timeline: Timeline, tasks: list[Task], window: tuple[float, float]) -> float:
    lo, hi = window
    return sum(max(0.0, min(timeline.end[t.key], hi) - max(timeline.start[t.key], lo)) for t in tasks)


def _peaks(timeline: Timeline, lanes: dict, held: dict[int, int], workers: int) -> list[int]:
    """Held bytes plus the highest sum of live allocations (a task's bytes count from its start
    when it allocates, until the end of the task that frees them)."""
    peaks = []
    for w in range(workers):
        events = []
        for task in lanes[(w, "compute")]:
            if task.memory > 0:
                events.append((timeline.start[task.key], 1, task.memory))
            elif task.memory < 0:
                events.append((timeline.end[task.key], 0, task.memory))
        live = peak = 0
        for _, _, delta in sorted(events):
            live += delta
            peak = max(peak, live)
        peaks.append(held.get(w, 0) + peak)
    return peaks
