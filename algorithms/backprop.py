"""`backprop`: ordinary end-to-end backpropagation on one worker, the reference for every method.

Each iteration: forward the whole batch through all blocks, backpropagate the mean loss, take
one optimizer step (with `optimizer.clip_norm`, after clipping the gradient of all parameters to
one global norm). Every other algorithm is measured against this one: speed-ups divide its time
per iteration, and the exact methods must reproduce its parameters.

`Backprop` is also the base of the other algorithms that train one module end to end on each
worker: `data_parallel` (the module wrapped in DDP) and `sub_model_backprop` (a sub-model).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from mpbench.algorithm import Algorithm, BuildContext, NoSettings, StepLoss
from mpbench.blocks import BlockModel, EvalTotals
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import Optimizers
from mpbench.registry import register_algorithm


@register_algorithm("backprop", NoSettings)
class Backprop(Algorithm):
    separable_compute = True  # forward and backward are pure computation (DDP's are not)

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        if run.gpus != 1:
            raise ConfigError(f"algorithm=backprop runs on one worker, got gpus={run.gpus}; "
                              f"use algorithm=data_parallel for {run.gpus} workers")

    @classmethod
    def checkpoint_gap(cls, settings) -> None:
        return None  # the module and its optimizer are the whole state

    def __init__(self, context: BuildContext, net: nn.Module | None = None):
        """Train `net` (default: the whole model) end to end."""
        super().__init__(context)
        self.net = net if net is not None else self.model
        self.owned_blocks = list(range(len(self.model.blocks))) if net is None else []
        parameters = list(self.net.parameters())
        self.optimizers = Optimizers(context.optimizer, {"model": parameters}, clip_groups=[parameters])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def batch_rows(self, batch_size: int) -> slice | None:
        return slice(0, batch_size)

    def train_step(self, inputs, targets, lr) -> StepLoss:
        self.optimizers.zero_grad()
        clock = self.worker.clock.computing() if self.separable_compute else contextlib.nullcontext()
        with clock:
            loss = self.model.loss(self.forward(inputs), targets)
            loss.backward()
        self.optimizers.step(lr)
        return StepLoss(loss.item(), len(targets))

    def evaluate(self, batches) -> EvalTotals:
        return self.model.evaluate(batches)

    def state_dict(self) -> dict:
        return {"model": self.net.state_dict(), "optimizer": self.optimizers.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizers.load_state_dict(state["optimizer"])
