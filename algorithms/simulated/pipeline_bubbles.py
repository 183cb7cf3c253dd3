"""One pipeline flush from per-stage costs, no profiling: the bubble of a schedule, exactly.

`flush` runs each rank's action order (from `torch_actions`, or written by hand as
(kind, stage, microbatch) with kind F, B, I or W) through the pipeline plan's own task builder
(`pipelines.add_schedule`, which states the dependencies) on the one engine, with every
cross-rank hop costing T_comm = c: the model of Qi et al., "Zero Bubble Pipeline Parallelism"
(ICLR 2024), §3.

`zb_h1` and `zb_h2` are that paper's handcrafted schedules (§3.1, Figure 3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from algorithms.simulated.pipelines import Action, add_schedule, as_actions
from mpbench.simulate.engine import Timeline, simulate
from mpbench.simulate.plan import Programs

Costs = float | Sequence[float]  # one value for every stage, or one per stage


@dataclass(frozen=True)
class Flush:
    """The simulated flush. Times start at 0, when every rank is free and no microbatch has begun.

    `busy[r]` is rank r's compute seconds; `span[r]` runs from its first start to its last end.
    """

    timeline: Timeline
    makespan: float
    busy: dict[int, float]
    span: dict[int, float]

    @property
    def bubble(self) -> float:
        """Idle time of one isolated flush: max over ranks of makespan - busy (the paper's
        "largest execution time of all stages" minus n(T_F + T_B + T_W), all ranks starting at 0).
        For every schedule tested here the busy time is the same on all ranks, so this is
        also each rank's bubble."""
        return max(self.makespan - busy for busy in self.busy.values())

    @property
    def bubble_rate(self) -> float:
        """bubble / (busy + bubble), the paper's bubble rate (§5), for equal busy time per rank."""
        return self.bubble / self.makespan

    @property
    def steady_bubble(self) -> float:
        """Idle time per iteration when consecutive iterations overlap: max over ranks of its own
        span - busy, so the idle before a rank's first action (filled by the previous iteration's
        tail) does not count. This is how the paper measures ZB-H2, whose flush is a
        parallelogram (§3.1, Figure 3): its closed form (p-1)(T_F + T_B + 2T_comm - 2T_W) holds
        in this measure only."""
        return max(self.span[r] - self.busy[r] for r in self.busy)

    @property
    def steady_bubble_rate(self) -> float:
        """steady_bubble / (busy + steady_bubble), for equal busy time per rank."""
        return self.steady_bubble / max(self.span.values())


def _per_stage(value: Costs, stages: int) -> list[float]:
    return [float(value)] * stages if isinstance(value, (int, float)) else [float(v) for v in value]


def flush(order: dict[int, Iterable], rank_of: Sequence[int], f: Costs, b: Costs, w: Costs, c: float = 0.0) -> Flush:
    """Simulate one flush of `order` (rank -> actions) with stage s on rank `rank_of[s]`.

    `f`, `b`, `w`: forward, input-gradient and weight-gradient seconds, per stage or one for all;
    `c`: seconds per message between ranks (none within a rank). A full backward B costs b + w.
    Raises `ScheduleDeadlock` when the order waits on itself (an invalid schedule).
    """
    stages = len(rank_of)
    f, b, w = (_per_stage(x, stages) for x in (f, b, w))
    programs = Programs()
    add_schedule(programs, as_actions(order), rank_of, f, b, w,
                 hop=lambda source, target: 0.0 if rank_of[source] == rank_of[target] else c)
    timeline = simulate(programs.lanes)
    busy, span = {}, {}
    for (rank, _), tasks in programs.lanes.items():
        busy[rank] = sum(t.seconds for t in tasks)
        span[rank] = max(timeline.end[t.key] for t in tasks) - min(timeline.start[t.key] for t in tasks)
    return Flush(timeline, max(timeline.end.values(), default=0.0), busy, span)


def _handcrafted(ranks: int, microbatches: int, warm_up_per_hop: int) -> dict[int, list[Action]]:
    """The shape shared by ZB-H1 and ZB-H2 (one stage per rank, stage r on rank r).

    Rank r first runs warm_up_per_hop * (p-1-r) forwards, then per microbatch i: the next forward
    (if any is left), I(i), and a W, except that the first warm_up_per_hop * r W's are held back;
    those fill the cool-down at the end (the later a rank's first backward, the fewer it holds).
    """
    order = {}
    for rank in range(ranks):
        warm = min(microbatches, warm_up_per_hop * (ranks - 1 - rank))
        held = warm_up_per_hop * rank
        actions: list[Action] = [("F", rank, i) for i in range(warm)]
        next_w = 0
        for i in range(microbatches):
            if warm + i < microbatches:
                actions.append(("F", rank, warm + i))
            actions.append(("I", rank, i))
            if i >= held:  # after the held-back ones, one W per I keeps memory at 1F1B's level
                actions.append(("W", rank, next_w))
                next_w += 1
        actions += [("W", rank, j) for j in range(next_w, microbatches)]
        order[rank] = actions
    return order


def zb_h1(ranks: int, microbatches: int) -> dict[int, list[Action]]:
    """ZB-H1 of Qi et al., "Zero Bubble Pipeline Parallelism" (ICLR 2024), §3.1, Figure 3 (top).

    1F1B's warm-up (p - r forwards before rank r's first backward) and its peak activation memory,
    with B split into I and W, and rank r deferring r of its W's to the cool-down, where 1F1B
    idles. With T_comm = 0 the bubble is (p-1)(T_F + T_B - T_W), against 1F1B's (p-1)(T_F+T_B+T_W).
    """
    return _handcrafted(ranks, microbatches, warm_up_per_hop=1)


def zb_h2(ranks: int, microbatches: int) -> dict[int, list[Action]]:
    """ZB-H2 of Qi et al. (ICLR 2024), §3.1, Figure 3 (bottom): twice 1F1B's warm-up forwards
    (2(p-1-r) before the steady phase, so up to 2p-1 microbatches' activations are live), and rank
    r deferring 2r W's to the tail. The flush becomes a parallelogram: measured per rank from its
    first action (`Flush.steady_bubble`), the bubble is (p-1)(T_F + T_B + 2T_comm - 2T_W), zero
    when T_F + T_B + 2T_comm = 2T_W. Needs microbatches >= 2p for that closed form."""
    return _handcrafted(ranks, microbatches, warm_up_per_hop=2)
