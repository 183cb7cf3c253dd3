"""The per-worker loop of the stale-gradient family (docs/algorithms/stale_gradient.md §4).

A worker holds the modules its placement gives it. Per iteration t:

    forward of its first module (batch t)
    the delayed backwards of its modules that owe one (the errors arrived in iteration t-1)
    forwards of its other modules (batch t)
    the backward of the last module, from the loss, if it is here (batch t: no delay)
    one optimizer step for each module that took a backward, and for each tied tensor

On Ouroboros' ring worker 1 runs F1(t), B1(t-K+1), FK(t), BK(t): the delayed backward fills the
time while modules 2..K-1 run on the other workers. Messages of iteration t are consumed in t+1:
module k+1's backward at t yields the error of exactly the batch module k backpropagates at t+1.
With every module on one worker and local channels, the same loop is the one-process emulation of
H and R (§5).

Optimizers (§7): one per module and one per tied tensor (its parts have different ages), each
stepped only when it has a gradient: no step, not even a zero one, before a module's first
gradient at t = its delay. Every optimizer takes lr(t) of the global step. `optimizer.clip_norm`
takes one norm per module and one per tied tensor, since a global norm would mix gradients of
different batches; with K = 1 that is the global clip of `backprop`.
"""

from __future__ import annotations

import functools

import torch

from algorithms.stale_gradient.delayed_module import DelayedModule, delay_of_module
from algorithms.stale_gradient.family import StaleGradientFamily, StaleGradientSettings
from mpbench.algorithm import Algorithm, BuildContext, StepLoss
from mpbench.blocks import EvalTotals
from mpbench.optim import Optimizers
from mpbench.parallel.channels import Channel, channel_between
from mpbench.parallel.evaluation import evaluate_parts
from mpbench.parallel.ties import TieExchange


class DecoupledBackprop(StaleGradientFamily):
    """`ddg`, `features_replay` and `ouroboros` on the workers: the settings choose placement and semantics."""

    @classmethod
    def create(cls, context: BuildContext[StaleGradientSettings]) -> Algorithm:
        if context.settings.runtime == "emulated" and context.settings.semantics == "S":
            from algorithms.stale_gradient.gradient_fifo import GradientFifo
            return GradientFifo(context)  # one ordinary backward per step does it (§5)
        return cls(context)

    def __init__(self, context: BuildContext[StaleGradientSettings]):
        super().__init__(context)
        model, worker, K = self.model, self.worker, self.K
        emulated = self.settings.runtime == "emulated"
        self.owner = (lambda k: 0) if emulated else functools.partial(self.placement.owner, num_modules=K)
        here = [k for k in range(K) if self.owner(k) == worker.rank]
        self.modules = {k: DelayedModule(k, K, self.split.module(model, k), self.settings.semantics, worker.clock)
                        for k in here}
        self.owned_blocks = [b for k in here for b in self.split.blocks[k]]

        remote = any(self.owner(k) != worker.rank for k in range(K))
        shapes = self.split.outputs(model, context.example_inputs) if remote else [(None, None)] * K
        self.activations: dict[int, Channel] = {}  # boundary b: module b -> b+1
        self.errors: dict[int, Channel] = {}  # boundary b: module b+1 -> b
        for b in range(K - 1):
            self.activations[b] = self._channel(b, b + 1, 1 + b, shapes[b])
            self.errors[b] = self._channel(b + 1, b, K + b, shapes[b])
        self.ties = TieExchange(model, self.split.part_of_block(), self.owner, worker.rank,
                                lambda src, dst, tag, shape, dtype: self._channel(src, dst, tag, (shape, dtype),
                                                                                  workers=True), 2 * K)
        # The name each tied tensor has inside each module here that uses it.
        self.tie_names = {k: {i: n for i, t in enumerate(self.ties) for n, p in m.params.items() if p is t.tensor}
                          for k, m in self.modules.items()}
        parts = {f"module{k}": [p for p in m.params.values() if not self.ties.is_tied(p)]
                 for k, m in self.modules.items()}
        parts.update({f"tie:{t.name}": [t.tensor] for t in self.ties})
        # one clip group per part
        self.optimizers = Optimizers(context.optimizer, parts, make=self.settings.optimizer_rule())
        self.iteration = 0
        self.errors_ahead: dict[int, torch.Tensor] = {}  # module -> its next error, taken early (a checkpoint)

    def _channel(self, src: int, dst: int, tag: int, shape_and_dtype, workers: bool = False) -> Channel | None:
        """The channel from module (or, with `workers`, worker) `src` to `dst`, seen from here."""
        owner = (lambda w: w) if workers else self.owner
        return channel_between(owner(src), owner(dst), self.worker.rank, tag, *shape_and_dtype,
                               transport=self.worker.transport, device=self.worker.device)

    def batch_rows(self, batch_size: int) -> slice | None:
        return slice(0, batch_size) if {0, self.K - 1} & set(self.modules) else None

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        self.optimizers.zero_grad()
        here, last = sorted(self.modules), self.K - 1
        tie_parts: list[dict[int, torch.Tensor]] = [{} for _ in self.ties]
        loss = None
        self._forward(here[0], inputs)
        for k in here:
            if k != last and self.modules[k].owes_backward(self.iteration):
                self._backward(k, tie_parts)
        for k in here[1:]:
            self._forward(k, inputs)
        if last in self.modules:
            loss = self._backward(last, tie_parts, targets)
        for tied, parts in zip(self.ties, tie_parts):
            # A remote module sent a part iff it took a backward: iff t >= its delay.
            arriving = [m for m in tied.incoming if self.iteration >= delay_of_module(m, self.K)]
            tied.tensor.grad = self.ties.total(tied, parts, arriving)
        self.optimizers.step(lr)
        self.iteration += 1
        return StepLoss(loss.item(), len(targets)) if loss is not None else None

    def _forward(self, k: int, inputs: torch.Tensor) -> None:
        x = inputs if k == 0 else self.activations[k - 1].take()
        out = self.modules[k].forward(x)
        if k < self.K - 1:
            self.activations[k].put(out.detach())

    def _backward(self, k: int, tie_parts: list[dict], targets=None) -> torch.Tensor | None:
        """Module k's backward (the last one's from the loss); its error goes on to module k-1, its
        gradients to its parameters' .grad, its parts of tied tensors to `tie_parts`. Returns the loss."""
        module, last = self.modules[k], k == self.K - 1
        grad_output = None if last else (self.errors_ahead.pop(k) if k in self.errors_ahead else self.errors[k].take())
        loss_of = (lambda out: self.model.loss(out, targets)) if last else None
        on_gradient = {name: self.ties.tensors[i].send for i, name in self.tie_names[k].items()
                       if self.ties.tensors[i].outgoing}  # a tied tensor's part: sent as soon as autograd has it
        grads, input_grad, loss = module.backward(grad_output, loss_of, on_gradient)
        if k > 0:
            self.errors[k - 1].put(input_grad)
        tied_names = {name: i for i, name in self.tie_names[k].items()}
        for name, grad in grads.items():
            if name in tied_names:
                tie_parts[tied_names[name]][k] = grad
            else:
                module.params[name].grad = grad
        return loss

    def evaluate(self, batches) -> EvalTotals:
        parts = {k: m.net for k, m in self.modules.items()}
        return evaluate_parts(self.model, parts, self.owner, self.K, batches, self.worker.transport)

    def state_dict(self) -> dict:
        """This worker's state between two steps: its modules (weights, kept batches), optimizers,
        and the errors for the next step's delayed backwards. Those errors were sent in this step
        and cross the step boundary, so they are received now (and kept for that backward)."""
        for k, module in self.modules.items():
            if k != self.K - 1 and module.owes_backward(self.iteration) and k not in self.errors_ahead:
                self.errors_ahead[k] = self.errors[k].take()
        return {"iteration": self.iteration, "modules": {str(k): m.state_dict() for k, m in self.modules.items()},
                "optimizers": self.optimizers.state_dict(),
                "errors_ahead": {str(k): e for k, e in self.errors_ahead.items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, module in self.modules.items():
            module.load_state_dict(state["modules"][str(k)], self.worker.device)
        self.optimizers.load_state_dict(state["optimizers"])
        self.errors_ahead = {int(k): e.to(self.worker.device) for k, e in state["errors_ahead"].items()}
        self.iteration = state["iteration"]

    def facts(self) -> dict:
        return {**super().facts(), "modules_here": sorted(self.modules),
                "per_module": [m.facts() for _, m in sorted(self.modules.items())]}
