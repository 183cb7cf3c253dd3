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

This file holds the settings and runs the rule in one process (`runtime=emulated`): per step, m
forwards and backwards at the stashed version, then one optimizer step on the live weights. The
workers (`runtime=distributed`, stage s on worker s, a 1F1B pipeline never flushed) are
double_buffered_pipeline.py; both take one optimizer per stage and per tensor tied across stages,
so that `optimizer.clip_norm` clips what a stage can see alone (one norm per part).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.func import functional_call

from algorithms.stale_gradient.double_buffered_pipeline import (
    DoubleBufferedPipeline,
    cross_stage_ties,
    uniform_split,
)
from mpbench.algorithm import Algorithm, BuildContext, StepLoss
from mpbench.blocks import BlockModel, EvalTotals
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import Optimizers
from mpbench.parallel.split import check_runtime
from mpbench.registry import register_algorithm
from mpbench.settings import Settings


@dataclass(frozen=True)
class PipeDream2BWSettings(Settings):
    stages: int | None = None
    """d, the pipeline stages (1: backprop with gradient accumulation; more: every update one behind); null: gpus."""
    microbatches: int | None = None
    """m, micro-batches per batch (gradients accumulated); null: stages (the workers need m >= d)."""
    runtime: Literal["distributed", "emulated"] = "distributed"
    """distributed: stage s on worker s (gpus = stages); emulated: the same updates in one process (gpus=1)."""

    def validate(self) -> None:
        if self.stages is not None and self.stages < 1:
            raise ValueError(f"stages must be a positive integer, got {self.stages!r}")
        if self.microbatches is not None and self.microbatches < 1:
            raise ValueError(f"microbatches must be a positive integer or null, got {self.microbatches!r}")

    def depth(self, gpus: int) -> int:
        return self.stages if self.stages is not None else gpus

    def micro(self, gpus: int) -> int:
        return self.microbatches if self.microbatches is not None else self.depth(gpus)


def version_delay(stages: int) -> int:
    """Updates between the weight version a batch runs at and the one its gradient is applied to:
    1 in a pipeline of two or more stages, 0 on one stage (2BW §3.1)."""
    return 1 if stages > 1 else 0


@register_algorithm("pipedream_2bw", PipeDream2BWSettings)
class PipeDream2BW(Algorithm[PipeDream2BWSettings]):
    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s = run.algorithm_settings
        d, m = s.depth(run.gpus), s.micro(run.gpus)
        if d > len(model.blocks):
            raise ConfigError(f"pipedream_2bw: stages={d} but the model has {len(model.blocks)} blocks; "
                              f"at most one stage per block")
        check_runtime("pipedream_2bw", s.runtime, run.gpus, d, f"algorithm.stages={d}", "one worker per stage")
        if run.batch_size % m:
            raise ConfigError(f"pipedream_2bw: microbatches={m} must divide batch_size={run.batch_size}")
        if s.runtime == "distributed" and m < d:
            raise ConfigError(f"pipedream_2bw: the workers' pipeline needs microbatches >= stages ({d}) to stay "
                              f"full without a flush, got microbatches={m}")
        split = uniform_split(len(model.blocks), d)
        for name, stages in cross_stage_ties(model, split).items():
            if len(stages) > 2:
                raise ConfigError(f"pipedream_2bw: the tied tensor {name} is used by {len(stages)} stages "
                                  f"{list(stages)}; at most two are supported (choose algorithm.stages)")

    @classmethod
    def create(cls, context: BuildContext[PipeDream2BWSettings]) -> Algorithm:
        return cls(context) if context.settings.runtime == "emulated" else DoubleBufferedPipeline(context)

    @classmethod
    def checkpoint_gap(cls, settings) -> None:
        return None  # the live weights, the stashed version and the optimizer are the whole state

    def __init__(self, context: BuildContext[PipeDream2BWSettings]):
        super().__init__(context)
        self.owned_blocks = list(range(len(self.model.blocks)))
        self.params = dict(self.model.named_parameters())  # a tied tensor once
        self.d, self.m = self.settings.depth(1), self.settings.micro(1)
        split = uniform_split(len(self.model.blocks), self.d)
        tied = [self.model.get_parameter(name) for name in cross_stage_ties(self.model, split)]
        parts = {f"stage{k}": [p for p in split.module(self.model, k).parameters() if all(p is not t for t in tied)]
                 for k in range(self.d)}
        parts.update({f"tie{i}": [t] for i, t in enumerate(tied)})
        self.optimizers = Optimizers(context.optimizer, parts)  # one clip group per part, as the workers
        self.delay = version_delay(self.d)
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
            for x, y in zip(inputs.chunk(self.m), targets.chunk(self.m)):
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
        return {"stages": self.d, "microbatches": self.m, "version_delay": self.delay,
                "weight_versions": 2 if self.delay else 1, "runtime": "emulated"}
