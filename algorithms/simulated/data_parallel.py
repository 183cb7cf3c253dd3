"""backprop and data_parallel: every worker runs the whole model on its shard of the batch.

DDP (Li et al., VLDB 2020, §3.2) puts the gradients in buckets in reverse parameter order, the
first one small (1 MiB, torch's default), the others `bucket_cap_mb`, and all-reduces a bucket as
soon as every gradient in it is ready, on a communication lane beside the rest of the backward.
The optimizer steps when the last bucket is reduced. Buckets here hold whole blocks (a block's
gradients are ready together at the end of its backward). backprop is the same on one worker.
"""

from __future__ import annotations

from mpbench.simulate.plan import Programs, Setup, plan_for

FIRST_BUCKET_BYTES = 1 << 20


def buckets(parameter_bytes: list[int], cap_bytes: float) -> list[list[int]]:
    """Block indices per bucket, in the order DDP reduces them (last block first)."""
    out, current, size, cap = [], [], 0, FIRST_BUCKET_BYTES
    for i in reversed(range(len(parameter_bytes))):
        current.append(i)
        size += parameter_bytes[i]
        if size >= cap:
            out.append(current)
            current, size, cap = [], 0, cap_bytes
    if current:
        out.append(current)
    return out


@plan_for("backprop", "data_parallel")
def data_parallel(setup: Setup) -> Programs:
    programs, N = Programs(), setup.workers
    costs = setup.costs.blocks(setup.batch_size // N)
    cap = getattr(setup.settings, "bucket_cap_mb", 25.0) * 2**20
    groups = buckets([c.parameter_bytes for c in costs], cap) if N > 1 else []
    for w in range(N):
        programs.hold(w, sum(c.parameter_bytes for c in costs), setup.state_copies, sum(c.check_s for c in costs))
    for t in range(setup.iterations):
        for w in range(N):
            for i, c in enumerate(costs):
                programs.add(("F", t, w, i), w, "forward", c.forward_s, iteration=t, memory=c.kept_bytes,
                             label=f"F{i}")
            for i in reversed(range(len(costs))):
                programs.add(("B", t, w, i), w, "backward", costs[i].backward_s, iteration=t,
                             memory=-costs[i].kept_bytes, label=f"B{i}")
            reduced = []
            for j, blocks in enumerate(groups):
                nbytes = sum(costs[i].parameter_bytes for i in blocks)
                reduced.append(programs.add(("AR", t, w, j), w, "allreduce", setup.link.all_reduce_s(nbytes, N),
                                            needs=[(("B", t, w, min(blocks)), 0.0)], iteration=t, lane="comm",
                                            group=("AR", t, j), label=f"AR{j}"))
            programs.add(("O", t, w), w, "optimizer", sum(c.optimizer_s for c in costs),
                         needs=[(k, 0.0) for k in reduced], iteration=t, label="opt")
    return programs
