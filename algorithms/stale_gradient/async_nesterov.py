"""`async_nesterov`: the asynchronous pipeline with a Nesterov-corrected optimizer (Ajanthan,
Ramasinghe, Zuo, Avraham, Long; "Nesterov Method for Asynchronous Pipeline Parallel Optimization",
ICML 2025, arXiv 2505.01099; public code PluralisResearch/AsyncPP). docs/algorithms/stale_gradient.md §13.

The pipeline is DDG's (and asynchronous PipeDream's with weight stashing): module k of K applies at
iteration t the gradient of the batch of iteration t-(K-1-k), taken at the weights that batch's
forward used. What changes is each module's optimizer. Nesterov's method evaluates the gradient at
a look-ahead point y = w + d, d = gamma (w(t) - w(t-1)); the paper's delayed form (its eq. 10) is

    w(t+1) = w(t) + d(t) - lr (1 - gamma) grad f( w(t-tau) + d(t-tau) )

whose stale look-ahead point lines up with the drift the delay causes as gamma -> 1. Stored as
the look-ahead point y (so that forwards run at y and the stash keeps y(t-tau)), this is SGD with
Nesterov momentum gamma at learning rate lr (1 - gamma):

    b(t+1) = gamma b(t) + g(t),   y(t+1) = y(t) - lr (1 - gamma) (g(t) + gamma b(t+1)),
    g(t) = grad f(y(t-tau))                                         (optimizer=sgd)

With optimizer=adam or adamw the rule is NAdam (Dozat 2016) with beta1 = gamma on the delayed
gradients, (1 - beta1) being the same weight on the fresh gradient; this is what the authors'
code runs (torch's NAdam, decoupled weight decay for adamw, beta1 = 0.99).

Settings: `momentum` is gamma (the paper: 0.99), replacing optimizer.momentum (sgd) or
optimizer.betas[0] (adam, adamw); null keeps the optimizer's own. `correction=false` keeps gamma
but drops the look-ahead: the run's optimizer with momentum gamma on the same delayed gradients,
i.e. `ddg` (the plain asynchronous pipeline) with that momentum, bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from algorithms.stale_gradient.family import StaleGradientSettings
from algorithms.stale_gradient.worker_loop import DecoupledBackprop
from mpbench.blocks import BlockModel
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import make_optimizer, weight_decay_groups
from mpbench.registry import register_algorithm
from mpbench.settings import check_range


class DampedNesterovSGD(torch.optim.SGD):
    """SGD with Nesterov momentum whose step is scaled by (1 - momentum): eq. 10 of Ajanthan et al.
    in look-ahead coordinates (this module's docstring)."""

    def __init__(self, params, lr: float, momentum: float):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=True)

    @torch.no_grad()
    def step(self, closure=None):
        scheduled = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * (1 - group["momentum"])
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, scheduled):
                group["lr"] = lr


def with_momentum(spec: OptimizerSpec, gamma: float | None) -> OptimizerSpec:
    """`spec` with its momentum (sgd) or first moment decay (adam, adamw) set to gamma."""
    if gamma is None:
        return spec
    if spec.name == "sgd":
        return dataclasses.replace(spec, momentum=gamma)
    return dataclasses.replace(spec, betas=(gamma, *spec.betas[1:]))


def momentum_of(spec: OptimizerSpec) -> float:
    return spec.momentum if spec.name == "sgd" else spec.betas[0]


def nesterov_corrected(params, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """The delay-corrected Nesterov optimizer of one module (eq. 10; NAdam for the Adam family)."""
    groups = weight_decay_groups(params, spec)
    if spec.name == "sgd":
        return DampedNesterovSGD(groups, lr=spec.lr, momentum=spec.momentum)
    return torch.optim.NAdam(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps,
                             decoupled_weight_decay=spec.name == "adamw")


@dataclass(frozen=True)
class AsyncNesterovSettings(StaleGradientSettings):
    """DDG's placement and exact stale gradients (S, the weights each forward used, stashed)."""

    correction: bool = True
    """true: the Nesterov look-ahead of eq. 10; false: the same momentum without it (ddg's update)."""
    momentum: float | None = 0.99
    """gamma, the momentum (sgd) or beta1 (adam, adamw) of every module; null: the optimizer's own."""

    def validate(self):
        super().validate()
        if self.momentum is not None:
            check_range("momentum", self.momentum, 0, 1, high_open=True)

    def optimizer_rule(self):
        def make(params, spec: OptimizerSpec) -> torch.optim.Optimizer:
            spec = with_momentum(spec, self.momentum)
            return nesterov_corrected(params, spec) if self.correction else make_optimizer(params, spec)
        return make


class AsyncNesterov(DecoupledBackprop):
    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        super().check(run, model)
        s = run.algorithm_settings
        gamma = momentum_of(with_momentum(run.optimizer, s.momentum))
        if s.correction and gamma == 0:
            raise ConfigError("async_nesterov: the look-ahead needs momentum > 0; set algorithm.momentum "
                              "(the paper: 0.99) or algorithm.correction=false")

    def facts(self) -> dict:
        s = self.settings
        return {**super().facts(), "correction": s.correction, "momentum": s.momentum}


register_algorithm("async_nesterov", AsyncNesterovSettings)(AsyncNesterov)
