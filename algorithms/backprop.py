"""`backprop`: ordinary end-to-end backpropagation on one worker, the reference for every method.

Each iteration: forward the whole batch through all blocks, backpropagate the mean loss, take
one optimizer step. Every other algorithm is measured against this one: speed-ups divide its time
per iteration, and the exact methods must reproduce its parameters.
"""

from __future__ import annotations

import torch

from mpbench.algorithm import Algorithm, OneModuleAndOptimizer, StepLoss, Worker
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import clip_gradients, make_optimizer, set_lr
from models.blocks import BlockModel, EvalTotals


class Backprop(OneModuleAndOptimizer, Algorithm):
    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        if run.gpus != 1:
            raise ConfigError(f"algorithm=backprop runs on one worker, got gpus={run.gpus}; "
                              f"use algorithm=data_parallel for {run.gpus} workers")

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec, settings, example_inputs):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        self.model = model
        self.optimizer = make_optimizer(model.parameters(), optimizer)
        self.optimizer_spec = optimizer

    def batch_rows(self, batch_size: int) -> slice | None:
        return slice(0, batch_size)

    def train_step(self, inputs, targets, lr) -> StepLoss:
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model.loss(self.model(inputs), targets)
        loss.backward()
        clip_gradients(list(self.model.parameters()), self.optimizer_spec)  # one global norm
        self.optimizer.step()
        return StepLoss(loss.item(), len(targets))

    def model_state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def trained_module_and_optimizer(self):
        return self.model, self.optimizer

    def evaluate(self, batches) -> EvalTotals:
        return self.model.evaluate(batches)
