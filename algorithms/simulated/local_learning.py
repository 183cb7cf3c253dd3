"""local_critic, critic_training, dgl, dni (one group per worker), and sub_model_backprop.

Per iteration each worker runs the two phases of algorithms/local_learning/engine.py: phase 1
receives h_{i-1}, runs its group forward, its local module (a critic's or auxiliary classifier's
loss, or a synthetic gradient) and the group's backward; phase 2 takes its module's target (the
next group's per-sample loss for LC, N's for critic training, the next group's input gradient
for DNI) and the module's weight gradient, every `*_every`-th batch. The pipelined variant takes
the target of batch t - d (Lee & Lee 2019, §3.3; docs/algorithms/local_learning.md §7). How a
head's backward splits between the phases: PHASE_1_BACKWARD. Messages: h_i (activations), B per-sample losses, DNI's gradients.
"""

from __future__ import annotations

import torch

from algorithms.local_learning.dni import synthetic_gradient_objective
from algorithms.local_learning.local_critic import per_sample_loss
from mpbench.blocks import block_output_shapes
from mpbench.parallel.balance import stage_sizes
from mpbench.simulate.plan import Programs, Setup, message, plan_for


# The share of a local module's backward (to its input and its weights, half each) taken in phase
# 1: LC's critic gives the group its error (the input half) and learns in phase 2; DGL's classifier
# learns whole with its group; DNI's synthesizer only predicts in phase 1 (its output is used
# detached) and regresses its target in phase 2 (the weights half: its input is detached too).
PHASE_1_BACKWARD = {"local_critic": 0.5, "critic_training": 0.5, "dgl": 1.0, "dni": 0.0}


def _split(setup: Setup, groups: int) -> list[int]:
    sizes = stage_sizes(setup.settings.balance, len(setup.model.blocks), groups)
    return [sum(sizes[:i + 1]) - 1 for i in range(groups)]  # each group's last block


def _heads(setup: Setup, algorithm: str, ends: list[int]) -> list:
    """Each boundary's local module, built as the algorithm builds it, and its profiled cost
    (timed once per kind and boundary: a 64-worker sweep point reuses the 32-worker ones)."""
    s, model = setup.settings, setup.model
    shapes = block_output_shapes(model, setup.costs.inputs)
    classes = shapes[-1][0][-1]
    dtype = next(model.parameters()).dtype
    if algorithm == "dni":
        def head(i: int, e: int):
            key = ("synthesizer", e, s.conditioned, s.synthesizer_width)
            return key, lambda: model.heads.synthesizer(shapes[e][0], classes, s.conditioned, s.synthesizer_width)

        def call(module, h, labels):
            return synthetic_gradient_objective(module(h, labels), torch.zeros_like(h))
    else:
        convs, blocks = getattr(s, "critic_convs", 1), getattr(s, "critic_blocks", 0)

        def head(i: int, e: int):
            c = convs[i] if isinstance(convs, tuple) else convs
            return ("critic", e, c, blocks), lambda: model.heads.critic(shapes[e][0], classes, c, blocks)

        def call(module, h, labels):
            return per_sample_loss(module(h), labels).mean()
    costs = []
    for i, e in enumerate(ends[:-1]):
        key, make = head(i, e)
        costs.append(setup.costs.head(key, lambda make=make: make().to(dtype=dtype), e, call))
    return costs


@plan_for("local_critic", "critic_training", "dgl", "dni",
          warm_up=lambda setup: (setup.settings.delay if getattr(setup.settings, "pipelined", False) else 0) + 2)
def local_learning(setup: Setup) -> Programs:
    s, programs, algorithm = setup.settings, Programs(), setup.algorithm
    N = s.groups or setup.workers
    ends = _split(setup, N)
    costs = setup.costs.blocks(setup.batch_size)
    starts = [0] + [e + 1 for e in ends[:-1]]
    group = [costs[a:e + 1] for a, e in zip(starts, ends)]
    heads = _heads(setup, algorithm, ends) if N > 1 else []
    delay = s.delay if getattr(s, "pipelined", False) else 0
    every = getattr(s, "critic_every", getattr(s, "synthesizer_every", 1))
    loss_bytes = setup.batch_size * setup.element_bytes  # B per-sample losses
    source = {i: (None if algorithm == "dgl" else i + 1 if algorithm != "critic_training" else N - 1)
              for i in range(N - 1)}  # the group whose message is module i's target

    def message_bytes(i: int) -> int:  # what group i sends to the modules that regress it
        return group[i - 1][-1].output_bytes if algorithm == "dni" else loss_bytes

    for i in range(N):
        programs.hold(i, sum(c.parameter_bytes for c in group[i]), setup.state_copies,
                      sum(c.check_s for c in group[i]))
        if i < N - 1:
            programs.hold(i, heads[i].parameter_bytes, 2, heads[i].check_s)
    for t in range(setup.iterations):
        for i in range(N):
            fwd = sum(c.forward_s for c in group[i])
            bwd = sum(c.backward_s for c in group[i])
            needs = [(("F", t, i - 1), message(setup.link, group[i - 1][-1].output_bytes, False))] if i else []
            group_kept = sum(c.kept_bytes for c in group[i])
            programs.add(("F", t, i), i, "forward", fwd, needs, t, group_kept, label=f"F{i}")
            if i < N - 1:
                head = heads[i]
                local = head.forward_s + PHASE_1_BACKWARD[algorithm] * head.backward_s
                kept = head.kept_bytes if source[i] is not None else 0
                programs.add(("L", t, i), i, "local", local, iteration=t, memory=kept, label=f"C{i}")
            programs.add(("B", t, i), i, "backward", bwd, iteration=t, memory=-group_kept, label=f"B{i}")
            # phase 2: module i regresses the message of its source group, for batch t - delay
            if i < N - 1 and source[i] is not None and t >= delay:
                j = source[i]
                producer = ("B", t - delay, j) if algorithm == "dni" else (
                    ("L", t - delay, j) if j < N - 1 else ("F", t - delay, j))
                due = (t - delay) % every == 0
                seconds = (1 - PHASE_1_BACKWARD[algorithm]) * heads[i].backward_s if due else 0.0
                programs.add(("T", t, i), i, "local", seconds,
                             [(producer, message(setup.link, message_bytes(j), False))], t,
                             -heads[i].kept_bytes, label=f"T{i}")
            step = sum(c.optimizer_s for c in group[i]) + (heads[i].optimizer_s if i < N - 1 else 0.0)
            programs.add(("O", t, i), i, "optimizer", step, iteration=t, label="opt")
    return programs


@plan_for("sub_model_backprop")
def sub_model_backprop(setup: Setup) -> Programs:
    s, programs = setup.settings, Programs()
    ends = _split(setup, s.num_groups)
    end = ends[s.sub_model - 1]
    costs = setup.costs.blocks(setup.batch_size)[:end + 1]
    head = _heads(setup, "local_critic", ends)[s.sub_model - 1]
    programs.hold(0, sum(c.parameter_bytes for c in costs) + head.parameter_bytes, setup.state_copies,
                  sum(c.check_s for c in costs) + head.check_s)
    for t in range(setup.iterations):
        for i, c in enumerate(costs):
            programs.add(("F", t, i), 0, "forward", c.forward_s, iteration=t, memory=c.kept_bytes, label=f"F{i}")
        programs.add(("L", t), 0, "local", head.forward_s + head.backward_s, iteration=t, label="critic")
        for i in reversed(range(len(costs))):
            programs.add(("B", t, i), 0, "backward", costs[i].backward_s, iteration=t, memory=-costs[i].kept_bytes,
                         label=f"B{i}")
        programs.add(("O", t), 0, "optimizer", sum(c.optimizer_s for c in costs) + head.optimizer_s, iteration=t,
                     label="opt")
    return programs
