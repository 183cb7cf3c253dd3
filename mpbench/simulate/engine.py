"""The discrete-event core: lanes that run their tasks in program order, messages with a delay.

A plan (algorithms/simulated/) turns one configuration into programs: for every lane, the list
of tasks it runs, in the order the real code runs them. A lane is one sequential resource of a
worker, `(worker, "compute")` or `(worker, "comm")` (DDP's all-reduces run beside the backward).
A task starts when its lane is free and every task it needs has ended, plus that edge's transfer
time (a message between workers: latency + bytes / bandwidth). That is how a worker blocked on a
receive behaves: it runs nothing else meanwhile. The tasks of one collective (`group`) start
together, when the last member is ready.

No clock ticks and no priority queue: since every lane's order is given, each start time follows
from the ends it waits for, so tasks are settled in dependency order, each lane resuming when
what it waits for is settled. A plan whose lanes wait on each other in a cycle (a bug in the plan)
raises `ScheduleDeadlock` naming the stuck tasks, instead of hanging.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass

Lane = tuple[int, str]  # (worker, "compute" | "comm")


@dataclass(frozen=True)
class Task:
    """One piece of work on one lane.

    `needs` are (task key, transfer seconds after that task ends). `kind` names what it is
    (forward, backward_input, backward_weight, backward, optimizer, local, allreduce, overhead),
    for the busy/communication split and the Gantt chart. `memory` is the bytes the task leaves
    allocated on its worker (negative: bytes it frees), e.g. the activations a forward keeps for
    its backward; `iteration` is the training step the task belongs to.
    """

    key: Hashable
    lane: Lane
    seconds: float
    kind: str
    needs: tuple[tuple[Hashable, float], ...] = ()
    iteration: int = 0
    memory: int = 0
    group: Hashable | None = None
    label: str = ""


class ScheduleDeadlock(RuntimeError):
    """The programs wait on each other in a cycle (or on a task no lane runs)."""


@dataclass(frozen=True)
class Timeline:
    """When every task ran: `start[key]`, `end[key]`, and the tasks by key."""

    tasks: dict[Hashable, Task]
    start: dict[Hashable, float]
    end: dict[Hashable, float]

    def on(self, worker: int, lane: str = "compute") -> list[Task]:
        """The tasks of one lane, in the order they ran."""
        return sorted((t for t in self.tasks.values() if t.lane == (worker, lane)), key=lambda t: self.start[t.key])

    @property
    def workers(self) -> list[int]:
        return sorted({t.lane[0] for t in self.tasks.values()})


def simulate(programs: dict[Lane, list[Task]]) -> Timeline:
    """Start and end of every task of `programs` (see the module docstring)."""
    tasks = {t.key: t for program in programs.values() for t in program}
    if len(tasks) != sum(len(p) for p in programs.values()):
        raise ValueError("task keys must be unique")
    members: dict[Hashable, list[Hashable]] = defaultdict(list)
    for t in tasks.values():
        if t.group is not None:
            members[t.group].append(t.key)
    start: dict[Hashable, float] = {}
    end: dict[Hashable, float] = {}
    position = {lane: 0 for lane in programs}
    free_at = {lane: 0.0 for lane in programs}
    group_ready: dict[Hashable, dict[Hashable, float]] = defaultdict(dict)
    waiting: dict[Hashable, list[Lane]] = defaultdict(list)  # task or group key -> lanes blocked on it
    todo = list(programs)

    def settle(task: Task, at: float) -> None:
        start[task.key], end[task.key] = at, at + task.seconds
        free_at[task.lane] = end[task.key]
        position[task.lane] += 1
        todo.extend(waiting.pop(task.key, ()))

    while todo:
        lane = todo.pop()
        program = programs[lane]
        while position[lane] < len(program):
            task = program[position[lane]]
            missing = next((k for k, _ in task.needs if k not in end), None)
            if missing is not None:
                waiting[missing].append(lane)
                break
            ready = max([free_at[lane], *(end[k] + delay for k, delay in task.needs)])
            if task.group is None:
                settle(task, ready)
                continue
            group_ready[task.group][task.key] = ready
            if len(group_ready[task.group]) < len(members[task.group]):
                waiting[task.group].append(lane)
                break
            at = max(group_ready[task.group].values())
            for key in members[task.group]:
                settle(tasks[key], at)
            todo.extend(waiting.pop(task.group, ()))
    stuck = [programs[lane][position[lane]] for lane in programs if position[lane] < len(programs[lane])]
    if stuck:
        names = ", ".join(f"{t.label or t.key} on worker {t.lane[0]}" for t in stuck[:4])
        raise ScheduleDeadlock(f"the simulated programs wait on each other: {names}")
    return Timeline(tasks, start, end)
