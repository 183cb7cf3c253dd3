"""`pipedream_2bw`: PipeDream-2BW, double-buffered weight updates (Narayanan, Phanishayee, Shi, Chen,
Zaharia; "Memory-Efficient Pipeline-Parallel DNN Training", ICML 2021, arXiv 2006.09503, §3.1).

The model is cut into d stages that run a 1F1B pipeline of micro-batches without ever flushing it.
A batch is m micro-batches whose gradients are accumulated; each stage updates its weights once
per batch. Since the pipeline is never drained, the micro-batches of batch t enter it before the
update of batch t-1 is made, so they run their forward and backward with the version before:

    w(t+1) = w(t) - lr(t) * grad f_{x(t)}( w(t-1) )        (2BW, §3.1; w(-1) = w(0))

a constant delay of one update for every stage, whatever its depth (DDG's delay grows with the
distance to the loss; docs/algorithms/stale_gradient.md §1 and §12). Each stage holds two weight
versions: w(t), being updated, and w(t-1), in use by the micro-batches in flight (the "2BW"). With
one stage nothing is in flight across an update: batch t runs at w(t), which is backprop with
gradient accumulation over m micro-batches.

Our reading, where the paper is silent (docs/algorithms/stale_gradient.md §12):
- the micro-batches' gradients are averaged (each micro-batch loss weighted by its share of the
  batch), so m only changes the summation order, never the step;
- the first batch runs at w(0), like the second: no version precedes it, and the first update is
  made with its gradient (no skipped step);
- buffers (BatchNorm statistics) are not versioned: every forward updates the live ones.

This file runs the rule in one process (`runtime=emulated`): per step, m forwards and backwards at
the stashed version, then one optimizer step on the live weights. The workers' pipeline (each
stage on its own worker) is not built yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.func import functional_call

from mpbench.algorithm import Algorithm, BuildContext, StepLoss
from mpbench.blocks import BlockModel, EvalTotals
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import Optimizers
from mpbench.registry import register_algorithm
from mpbench.settings import Settings


@dataclass(frozen=True)
class PipeDream2BWSettings(Settings):
    stages: int = 2
    """d, the pipeline stages: 1 is backprop with gradient accumulation, more give every update a delay of one."""
    microbatches: int | None = None
    """m, micro-batches per batch, whose gradients are accumulated; null: stages (2BW needs m >= d to fill the pipeline)."""
    runtime: Literal["emulated"] = "emulated"
    """emulated: the updates of the d-stage pipeline in one process (gpus=1). The workers' pipeline is not built yet."""

    def validate(self) -> None:
        if self.stages < 1:
            raise ValueError(f"stages must be a positive integer, got {self.stages!r}")
        if self.microbatches is not None and self.microbatches < 1:
            raise ValueError(f"microbatches must be a positive integer or null, got {self.microbatches!r}")

    def micro(self) -> int:
        return self.microbatches if self.microbatches is not None else self.stages


def version_delay(stages: int) -> int:
    """Updates between the weight version a batch runs at and the one its gradient is applied to:
    1 in a pipeline of two or more stages, 0 on one stage (2BW §3.1)."""
    return 1 if stages > 1 else 0


@register_algorithm("pipedream_2bw", PipeDream2BWSettings)
class PipeDream2BW(Algorithm[PipeDream2BWSettings]):
    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s = run.algorithm_settings
        if run.gpus != 1:
            raise ConfigError(f"pipedream_2bw: runtime=emulated runs in one process; set gpus=1 and choose the "
                              f"pipeline with algorithm.stages (got gpus={run.gpus}; the workers' pipeline is not built yet)")
        if s.stages > len(model.blocks):
            raise ConfigError(f"pipedream_2bw: stages={s.stages} but the model has {len(model.blocks)} blocks; "
                              f"at most one stage per block")
        if run.batch_size % s.micro():
            raise ConfigError(f"pipedream_2bw: microbatches={s.micro()} must divide batch_size={run.batch_size}")

    @classmethod
    def checkpoint_gap(cls, settings) -> None:
        return None  # the live weights, the stashed version and the optimizer are the whole state

    def __init__(self, context: BuildContext[PipeDream2BWSettings]):
        super().__init__(context)
        self.owned_blocks = list(range(len(self.model.blocks)))
        self.params = dict(self.model.named_parameters())  # a tied tensor once
        self.optimizers = Optimizers(context.optimizer, {"model": list(self.params.values())},
                                     clip_groups=[list(self.params.values())])
        self.delay = version_delay(self.settings.stages)
        self.stash: dict[str, torch.Tensor] | None = None  # w(t-1): the version the batch in flight runs at

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)

    def _version_in_flight(self) -> dict[str, torch.Tensor]:
        """The weights batch t runs at: w(t-1) in a pipeline (w(0) for the first batch), else w(t)."""
        live = {n: p.detach().clone() for n, p in self.params.items()}
        if self.delay == 0:
            return live
        used, self.stash = (self.stash if self.stash is not None else live), live
        return used

    def train_step(self, inputs, targets, lr) -> StepLoss:
        self.optimizers.zero_grad()
        version = {n: t.requires_grad_(self.params[n].requires_grad) for n, t in self._version_in_flight().items()}
        total, rows = 0.0, len(targets)
        grads: dict[str, torch.Tensor] = {}  # accumulated; a parameter no micro-batch reached takes no step
        with self.worker.clock.computing():
            for x, y in zip(inputs.chunk(self.settings.micro()), targets.chunk(self.settings.micro())):
                loss = self.model.loss(functional_call(self.model, version, (x,)), y) * (len(y) / rows)
                for name, g in zip(version, torch.autograd.grad(loss, list(version.values()), allow_unused=True)):
                    if g is not None:
                        grads[name] = grads[name] + g if name in grads else g
                total += loss.item()
        for name, p in self.params.items():
            p.grad = grads.get(name)
        self.optimizers.step(lr)
        return StepLoss(total, rows)

    def evaluate(self, batches) -> EvalTotals:
        return self.model.evaluate(batches)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizers": self.optimizers.state_dict(), "stash": self.stash}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizers.load_state_dict(state["optimizers"])
        device = self.worker.device
        self.stash = None if state["stash"] is None else {n: t.to(device) for n, t in state["stash"].items()}

    def facts(self) -> dict:
        return {"stages": self.settings.stages, "microbatches": self.settings.micro(), "version_delay": self.delay,
                "weight_versions": 2 if self.delay else 1}
