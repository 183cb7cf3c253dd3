"""The one-process emulation of semantics S: a FIFO of gradient blocks (docs/algorithms/stale_gradient.md §5).

Under S, module k's gradient at iteration t is block k of the ordinary gradient computed at
iteration t-K+k (0-based: t-(K-1-k)), at the weights of that iteration. So one forward and one
backward per step at the current weights, with block k of each gradient applied K-1-k steps later,
takes exactly the workers' updates, at the cost of one backprop step: fast convergence studies
(`runtime=emulated`). A tensor tied across modules is given one leaf per use, so its gradient
splits into per-module parts, each delayed like its module and summed as the workers sum them.
"""

from __future__ import annotations

from collections import deque

import torch
from torch.func import functional_call

from algorithms.stale_gradient.delayed_module import delay_of_module
from algorithms.stale_gradient.family import StaleGradientFamily, StaleGradientSettings
from mpbench.algorithm import BuildContext, StepLoss
from mpbench.blocks import EvalTotals
from mpbench.optim import Optimizers
from mpbench.parallel.ties import sum_in_part_order


class GradientFifo(StaleGradientFamily):
    def __init__(self, context: BuildContext[StaleGradientSettings]):
        super().__init__(context)
        model, K = self.model, self.K
        self.owned_blocks = list(range(len(model.blocks)))
        module_of_block = self.split.part_of_block()
        spanning = [tie for tie in model.ties if len({module_of_block[b] for b, _ in tie.uses}) > 1]
        self.uses = [[(f"blocks.{b}.{n}", module_of_block[b]) for b, n in tie.uses] for tie in spanning]
        self.tied = [model.get_parameter(uses[0][0]) for uses in self.uses]
        self.own = {k: [p for p in self.split.module(model, k).parameters() if all(p is not t for t in self.tied)]
                    for k in range(K)}
        parts = {f"module{k}": params for k, params in self.own.items()}
        parts.update({f"tie:{tie.name}": [t] for tie, t in zip(spanning, self.tied)})
        # one clip group per part, as the workers
        self.optimizers = Optimizers(context.optimizer, parts, make=self.settings.optimizer_rule())
        self.queues: list[deque] = [deque() for _ in range(K)]  # per module: (its block, its tie parts)

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)

    def train_step(self, inputs, targets, lr) -> StepLoss:
        self.optimizers.zero_grad()
        with self.worker.clock.computing():
            leaves = {name: t.detach().requires_grad_() for t, uses in zip(self.tied, self.uses) for name, _ in uses}
            out = functional_call(self.model, leaves, (inputs,), tie_weights=False)
            loss = self.model.loss(out, targets)
            own = [p for k in range(self.K) for p in self.own[k]]
            grads = torch.autograd.grad(loss, own + list(leaves.values()), allow_unused=True)
        by_tensor = dict(zip(map(id, own), grads))
        use_grads = dict(zip(leaves, grads[len(own):]))
        for k in range(self.K):
            block = {p: by_tensor[id(p)] for p in self.own[k]}
            parts = [{name: use_grads[name] for name, m in uses if m == k} for uses in self.uses]
            self.queues[k].append((block, parts))
        due = {k: self.queues[k].popleft() for k in range(self.K) if len(self.queues[k]) > delay_of_module(k, self.K)}
        for block, _ in due.values():
            for p, g in block.items():
                p.grad = g
        for i, tensor in enumerate(self.tied):
            parts = {k: _sum_uses(by_name[i]) for k, (_, by_name) in due.items() if by_name[i]}
            if parts:
                tensor.grad = sum_in_part_order(parts)
        self.optimizers.step(lr)
        return StepLoss(loss.item(), len(targets))

    def evaluate(self, batches) -> EvalTotals:
        return self.model.evaluate(batches)

    def state_dict(self) -> dict:
        """Weights, optimizers and the gradient blocks not yet applied (by position in the
        module's parameter list; a tied tensor's parts by use)."""
        queues = [[{"block": [block[p] for p in self.own[k]], "parts": parts} for block, parts in queue]
                  for k, queue in enumerate(self.queues)]
        return {"model": self.model.state_dict(), "optimizers": self.optimizers.state_dict(), "queues": queues}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizers.load_state_dict(state["optimizers"])
        move = (lambda g: None if g is None else g.to(self.worker.device))
        self.queues = [deque(({p: move(g) for p, g in zip(self.own[k], entry["block"])},
                              [{n: move(g) for n, g in by_name.items()} for by_name in entry["parts"]])
                             for entry in saved) for k, saved in enumerate(state["queues"])]

    def facts(self) -> dict:
        return {**super().facts(), "gradient_blocks_held": [len(q) for q in self.queues]}


def _sum_uses(by_name: dict[str, torch.Tensor]) -> torch.Tensor:
    """A module's part of a tied tensor: the sum over its uses in that module."""
    return sum(by_name.values()) if len(by_name) > 1 else next(iter(by_name.values()))
