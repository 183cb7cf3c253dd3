"""pipedream_2bw on workers: d stages, a 1F1B stream of micro-batches that is never flushed.

Each worker runs, per iteration t, the loop of algorithms/stale_gradient/double_buffered_pipeline.py:
for each micro-batch i of batch t, its forward (after the stage before has sent it), then the
backward of the micro-batch d-1-s places earlier in the stream (after the stage after has sent
its error; the last stage's right after its forward). A stage updates when the last backward of a
batch is done, which for every stage but the last falls in the next iteration, while that
iteration's forwards already run: no bubble between batches (2BW §3.1). Memory: the live weights
with gradients and optimizer state, plus two stashed versions (the in-use copy and the one from
before the last update), and the activations of the micro-batches in flight.
"""

from __future__ import annotations

from mpbench.parallel.balance import stage_sizes
from mpbench.simulate.plan import Programs, Setup, message, plan_for


def _fill(setup: Setup) -> int:
    return 2  # the first iteration fills the pipeline; from the second on, backwards owe nothing to a flush


@plan_for("pipedream_2bw", warm_up=_fill)
def pipedream_2bw(setup: Setup) -> Programs:
    s, programs, d = setup.settings, Programs(), setup.workers
    m = s.microbatches if s.microbatches is not None else d
    micro = setup.costs.blocks(setup.batch_size // m)
    sizes = stage_sizes("uniform", len(micro), d)
    first = [sum(sizes[:k]) for k in range(d)]
    parts = [micro[first[k]:first[k] + sizes[k]] for k in range(d)]
    f = [sum(c.forward_s for c in p) for p in parts]
    b = [sum(c.backward_s for c in p) for p in parts]
    kept = [sum(c.kept_bytes for c in p) for p in parts]
    out = [p[-1].output_bytes for p in parts]
    params = [sum(c.parameter_bytes for c in p) for p in parts]
    for w in range(d):
        # + the two stashed versions (the trainer checks the live weights only)
        programs.hold(w, params[w], setup.state_copies + 2, sum(c.check_s for c in parts[w]))

    def hop(boundary: int) -> float:  # stage boundary -> boundary + 1 (or back)
        return message(setup.link, out[boundary], False)

    for t in range(setup.iterations):
        for w in range(d):
            lag = d - 1 - w
            for i in range(m):
                j = t * m + i  # the micro-batch's place in the stream
                needs = [(("F", j, w - 1), hop(w - 1))] if w > 0 else []
                programs.add(("F", j, w), w, "forward", f[w], needs, t, kept[w], label=f"F{i}")
                k = j - lag
                if k < 0:
                    continue
                needs = [(("B", k, w + 1), hop(w))] if w < d - 1 else [(("F", k, w), 0.0)]
                programs.add(("B", k, w), w, "backward", b[w], needs, t, -kept[w], label=f"B{k % m}")
                if k % m == m - 1:
                    programs.add(("O", k // m, w), w, "optimizer", sum(c.optimizer_s for c in parts[w]),
                                 iteration=t, label="opt")
    return programs
