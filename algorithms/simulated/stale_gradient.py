"""ddg, features_replay, ouroboros and async_nesterov (ddg with another optimizer): K modules,
module k's backward d_k = K-1-k iterations late.

Each worker runs, per iteration t, the loop of algorithms/stale_gradient/worker_loop.py: the
forward of its first module (batch t), the delayed backwards it owes (each needs the error module
k+1 sent in iteration t-1), the forwards of its other modules, the last module's backward from
the loss, one optimizer step. Forwards of one batch still pass down the workers within an
iteration; the backwards need nothing of the same iteration, which is where the speed-up comes from
(Huo et al. 2018, Fig. 1). Per semantics (docs/algorithms/stale_gradient.md §5), a delayed
backward costs b + w (S: at stashed weights; H: the stored graph) or f + b + w (R: Features
Replay recomputes the forward from the stored input). Memory: S keeps the batch's activations and
a copy of the module's weights until its backward, H the activations, R only the module's input.
"""

from __future__ import annotations

from algorithms.stale_gradient.delayed_module import delay_of_module
from algorithms.stale_gradient.placement import PLACEMENTS, module_count
from mpbench.parallel.balance import stage_sizes
from mpbench.simulate.plan import Programs, Setup, message, plan_for


def _fill(setup: Setup) -> int:
    s = setup.settings
    return module_count(s.placement, s.modules, setup.workers) + 1


@plan_for("ddg", "features_replay", "ouroboros", "async_nesterov", warm_up=_fill)
def stale_gradient(setup: Setup) -> Programs:
    s, programs = setup.settings, Programs()
    placement = PLACEMENTS[s.placement]
    K = module_count(s.placement, s.modules, setup.workers)
    costs = setup.costs.blocks(setup.batch_size)
    profile_rows = setup.costs.blocks(max(1, setup.batch_size // 4))  # as the family's balance=profile does
    sizes = stage_sizes(s.balance, len(costs), K, profile=lambda: [c.forward_s + c.backward_s for c in profile_rows],
                        split=placement.split)
    first = [sum(sizes[:k]) for k in range(K)]
    parts = [costs[first[k]:first[k] + sizes[k]] for k in range(K)]
    owner = [placement.owner(k, K) for k in range(K)]
    f = [sum(c.forward_s for c in p) for p in parts]
    bw = [sum(c.backward_s for c in p) for p in parts]
    params = [sum(c.parameter_bytes for c in p) for p in parts]
    input_bytes = [0] + [parts[k - 1][-1].output_bytes for k in range(1, K)]
    kept = {"S": [sum(c.kept_bytes for c in p) + params[k] for k, p in enumerate(parts)],
            "H": [sum(c.kept_bytes for c in p) for p in parts],
            "R": input_bytes}[s.semantics]
    last = K - 1

    def hop(k_from: int, k_to: int) -> float:
        return message(setup.link, input_bytes[max(k_from, k_to)], owner[k_from] == owner[k_to])

    for w in range(placement.workers(K)):
        here = [k for k in range(K) if owner[k] == w]
        programs.hold(w, sum(params[k] for k in here), setup.state_copies,
                      sum(c.check_s for k in here for c in parts[k]))
    for t in range(setup.iterations):
        for w in range(placement.workers(K)):
            here = [k for k in range(K) if owner[k] == w]

            def forward(k: int) -> None:
                needs = [(("F", t, k - 1), hop(k - 1, k))] if k > 0 else []
                programs.add(("F", t, k), w, "forward", f[k], needs, t, kept[k], label=f"F{k}")

            def backward(k: int) -> None:
                delayed = k != last
                if delayed:  # the error module k+1 sent in iteration t-1 (or, at t = 0, nothing owed)
                    needs = [(("B", t - 1, k + 1), hop(k + 1, k))]
                else:
                    needs = [(("F", t, k), 0.0)]
                seconds = bw[k] + (f[k] if delayed and s.semantics == "R" else 0.0)
                programs.add(("B", t, k), w, "backward", seconds, needs, t, -kept[k], label=f"B{k}")

            forward(here[0])
            for k in here:
                if k != last and t >= delay_of_module(k, K):
                    backward(k)
            for k in here[1:]:
                forward(k)
            if last in here:
                backward(last)
            programs.add(("O", t, w), w, "optimizer", sum(c.optimizer_s for k in here for c in parts[k]),
                         iteration=t, label="opt")
    return programs
