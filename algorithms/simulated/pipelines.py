"""pipeline and hypar: torch's own schedules, run as torch runs them.

The action list of every rank comes from the torch schedule class itself (its `pipeline_order`,
built for stand-in stages that carry only their indices), so every schedule torch ships,
interleaved and zero-bubble ones included, is simulated in torch's order and none is re-written
here. Each rank runs its actions in that order: F(s, i) waits for F(s-1, i) (plus the message),
a backward of stage s for the input gradient of stage s+1, W for its own I; torch's None slots
are not waits of their own, the dependencies are. After the schedule, hypar's replicas average
their gradients (one flat all-reduce per pipeline position, as algorithms/pipeline.py does), and
every worker steps its optimizer. Tied tensors' small part exchange is not modelled.

diloco runs hypar's pipelines without the per-step gradient average; every H = inner_steps steps
its workers all-reduce their parameters instead. The simulator measures a steady iteration, so
that all-reduce is charged 1/H of its time in every iteration (its cost amortised over the
round; the round's one long step is not drawn).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from torch.distributed.pipelining.schedules import (
    OVERLAP_F_B,
    REDUCE_GRAD,
    RESHARD,
    UNSHARD,
    PipelineScheduleSingle,
    _Action,
    _ComputationType,
    get_schedule_class,
)

from algorithms.pipeline import SCHEDULES
from mpbench.parallel.balance import stage_sizes
from mpbench.simulate.plan import Programs, Setup, message, plan_for


CODES = {"forward": "F", "backward": "B", "backward_input": "I", "backward_weight": "W"}
NOT_COMPUTE = {REDUCE_GRAD, UNSHARD, RESHARD}  # FSDP's: nothing to do for a pipeline without sharding
KINDS = {_ComputationType.FORWARD: "forward", _ComputationType.FULL_BACKWARD: "backward",
         _ComputationType.BACKWARD_INPUT: "backward_input", _ComputationType.BACKWARD_WEIGHT: "backward_weight"}
Action = tuple[str, int, int]  # (F | B | I | W, stage, microbatch)
KIND_NAMES = {code: kind for kind, code in CODES.items()}  # "F" -> "forward", ... (the engine's kinds)


def as_actions(order: dict[int, Iterable]) -> dict[int, list[Action]]:
    """Each rank's actions as (kind, stage, microbatch); torch `_Action`s are converted."""
    def one(a) -> Action:
        if not hasattr(a, "computation_type"):  # written by hand already
            kind, stage, microbatch = a
            return kind, stage, microbatch
        if a.computation_type not in KINDS:
            raise ValueError(f"torch action {a} has no cost model")
        return CODES[KINDS[a.computation_type]], a.stage_index, a.microbatch_index
    return {rank: [one(a) for a in actions] for rank, actions in order.items()}


def add_schedule(programs: Programs, actions: dict[int, list[Action]], rank_of: Sequence[int],
                 f: Sequence[float], b: Sequence[float], w: Sequence[float], hop: Callable[[int, int], float], *,
                 prefix: tuple = (),
                 worker: Callable[[int], int] = lambda rank: rank, iteration: int = 0,
                 kept: Sequence[int] | None = None) -> None:
    """Add one flush of a pipeline schedule: each rank's `actions` as tasks on `worker(rank)`,
    keyed `prefix + (kind, stage, microbatch)`, stage s on rank `rank_of[s]`.

        F(s, i)  needs F(s-1, i), plus hop(s-1, s)
        I(s, i)  (input gradient) needs the input gradient of stage s+1, plus hop(s+1, s); the
                 last stage's needs its own F(s, i) (the loss)
        B(s, i)  a full backward: I and W in one action (b + w), also producing the input gradient
        W(s, i)  (weight gradient) needs I(s, i)

    `f[s]`, `b[s]`, `w[s]`: stage s's forward, input-gradient and weight-gradient seconds;
    `kept[s]`: the bytes a forward keeps until its backward (B, or W after I) frees them. Each
    rank runs its actions in the given order, so a rank waiting for a message runs nothing
    meanwhile (the model of Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, §3).
    """
    last = len(rank_of) - 1
    seconds = {"F": f, "I": b, "W": w, "B": [b[s] + w[s] for s in range(len(rank_of))]}
    for rank, acts in actions.items():
        for kind, s, i in acts:
            if rank_of[s] != rank:
                raise ValueError(f"action {kind}{s}.{i} is on rank {rank}, but stage {s} is on rank {rank_of[s]}")
            memory = kept[s] if kept else 0
            if kind == "F":
                needs = [((*prefix, "F", s - 1, i), hop(s - 1, s))] if s > 0 else []
            elif kind == "W":
                needs, memory = [((*prefix, "I", s, i), 0.0)], -memory
            else:  # B or I; "G" marks the input gradient of (s, i), whichever of the two makes it
                needs = ([((*prefix, "F", s, i), 0.0)] if s == last else
                         [((*prefix, "G", s + 1, i), hop(s + 1, s))])
                memory = -memory if kind == "B" else 0
            key = programs.add((*prefix, kind, s, i), worker(rank), KIND_NAMES[kind], seconds[kind][s], needs,
                               iteration, memory, label=f"{kind}{s}.{i}")
            if kind != "F" and kind != "W":
                programs.add((*prefix, "G", s, i), worker(rank), "mark", 0.0, [(key, 0.0)], iteration)


class _StageStandIn:
    """What a torch schedule reads of a stage to lay out its actions: indices, nothing else."""

    def __init__(self, index: int, stages: int, ranks: int, rank: int):
        self.stage_index, self.num_stages, self.group_size, self.group_rank = index, stages, ranks, rank
        self.is_first, self.is_last = index == 0, index == stages - 1
        self.stage_index_to_group_rank: dict = {}
        self.has_backward, self.submod = True, None


def rank_of_stage(stage: int, ranks: int, v_shaped: bool) -> int:
    """Round-robin, or a V (stage p-1 and p on the last rank) for the V schedules."""
    return (stage if stage < ranks else 2 * ranks - 1 - stage) if v_shaped else stage % ranks


def single_stage_actions(schedule: str, ranks: int, microbatches: int) -> dict[int, list]:
    """GPipe and 1F1B as `_step_microbatches` runs them (their `pipeline_order` is only a picture,
    and torch 2.13's 1F1B picture of the last rank is off by one microbatch): GPipe all forwards,
    then all backwards; 1F1B min(m, p - rank) forwards, then one backward and one forward in
    turn, then the remaining backwards."""
    order = {}
    for rank in range(ranks):
        F = [_Action(rank, _ComputationType.FORWARD, i) for i in range(microbatches)]
        B = [_Action(rank, _ComputationType.FULL_BACKWARD, i) for i in range(microbatches)]
        if schedule == "gpipe":
            order[rank] = F + B
            continue
        warm = min(microbatches, ranks - rank)
        steady = [a for pair in zip(B, F[warm:]) for a in pair]
        order[rank] = F[:warm] + steady + B[len(F) - warm:]
    return order


def torch_actions(schedule: str, ranks: int, stages_per_rank: int, microbatches: int) -> dict[int, list]:
    """Each rank's compute actions (F, B, I, W; stage and microbatch), in torch's order."""
    cls = get_schedule_class(SCHEDULES[schedule].torch_name)
    if issubclass(cls, PipelineScheduleSingle):
        return single_stage_actions(schedule, ranks, microbatches)
    stages = ranks * stages_per_rank
    v_shaped = SCHEDULES[schedule].placement == "v"
    order = None
    for rank in range(ranks):
        own = [_StageStandIn(s, stages, ranks, rank) for s in range(stages)
               if rank_of_stage(s, ranks, v_shaped) == rank]
        instance = cls(own, n_microbatches=microbatches)
        order = instance.pipeline_order  # every rank's actions; taken from the last rank's instance
    flat = {}
    for rank, actions in order.items():  # an overlapped F and B runs as its two parts, in order
        parts = [sub for a in actions if a is not None
                 for sub in (a.sub_actions if a.computation_type == OVERLAP_F_B else (a,))]
        flat[rank] = [a for a in parts if a.computation_type not in NOT_COMPUTE]
    return flat


@plan_for("pipeline", "hypar", "diloco")
def pipelines(setup: Setup) -> Programs:
    s, programs = setup.settings, Programs()
    P = getattr(s, "partitions", setup.workers)
    R, v = setup.workers // P, s.stages_per_worker
    stages = P * v
    m = s.microbatches or 4 * stages
    v_shaped = SCHEDULES[s.schedule].placement == "v"
    micro = setup.costs.blocks(setup.batch_size // (R * m))
    sizes = stage_sizes(s.balance, len(micro), stages, profile=lambda: [c.forward_s + c.backward_s for c in micro])
    first = [sum(sizes[:k]) for k in range(stages)]
    parts = [micro[first[k]:first[k] + sizes[k]] for k in range(stages)]
    f = [sum(c.forward_s for c in p) for p in parts]
    b = [sum(c.backward_input_s for c in p) for p in parts]
    w = [sum(c.backward_weight_s for c in p) for p in parts]
    kept = [sum(c.kept_bytes for c in p) for p in parts]
    out = [p[-1].output_bytes for p in parts]
    rank_of = [rank_of_stage(k, P, v_shaped) for k in range(stages)]
    params_of_rank = [sum(c.parameter_bytes for k in range(stages) if rank_of[k] == r for c in parts[k])
                      for r in range(P)]
    opt_of_rank = [sum(c.optimizer_s for k in range(stages) if rank_of[k] == r for c in parts[k]) for r in range(P)]
    check_of_rank = [sum(c.check_s for k in range(stages) if rank_of[k] == r for c in parts[k]) for r in range(P)]
    actions = as_actions(torch_actions(s.schedule, P, v, m))
    every = getattr(s, "inner_steps", 1)  # steps per all-reduce of the replicas: diloco's H, else 1
    for replica in range(R):
        for r in range(P):
            programs.hold(replica * P + r, params_of_rank[r], setup.state_copies, check_of_rank[r])

    def hop(k_from, k_to):  # the message from stage k_from to k_to
        return message(setup.link, out[min(k_from, k_to)], rank_of[k_from] == rank_of[k_to])

    for t in range(setup.iterations):
        for replica in range(R):
            def worker(rank, replica=replica):
                return replica * P + rank

            add_schedule(programs, actions, rank_of, f, b, w, hop, prefix=(t, replica), worker=worker,
                         iteration=t, kept=kept)
            for r in range(P):
                done = []
                if R > 1:
                    reduce = programs.add((t, replica, "AR", r), worker(r), "allreduce",
                                          setup.link.all_reduce_s(params_of_rank[r], R) / every, iteration=t,
                                          group=(t, "AR", r), label="AR")
                    done = [(reduce, 0.0)]
                programs.add((t, replica, "O", r), worker(r), "optimizer", opt_of_rank[r],
                             needs=done, iteration=t, label="opt")
    return programs
