"""Optimizers, their container, and learning-rate schedules, shared by every algorithm.

`Optimizers` holds every optimizer of one worker as one object (after torchtitan's
OptimizersContainer): named parts of the parameters, each with its own optimizer; one learning
rate for all; clipping per clip group; a step only for the parts that have a gradient; one
state_dict. An algorithm with one module makes one part; the stale-gradient family makes one part
per module and per tied tensor, whose gradients have different ages.

The schedule is a pure function of the global step, so algorithms that keep one optimizer per
module (and apply gradients of different ages) still follow one schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from mpbench.config import OptimizerSpec


def weight_decay_groups(params: Iterable[nn.Parameter], spec: OptimizerSpec) -> list[dict]:
    """The trained `params` as optimizer groups: weight decay only on tensors of dim >= 2."""
    params = [p for p in params if p.requires_grad]
    decayed = [p for p in params if p.dim() >= 2]
    plain = [p for p in params if p.dim() < 2]  # biases, norm gains: decaying them hurts and is uncommon
    groups = [{"params": decayed, "weight_decay": spec.weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(params: Iterable[nn.Parameter], spec: OptimizerSpec) -> torch.optim.Optimizer:
    """An optimizer over `params`; weight decay only on tensors of dim >= 2 (weights, kernels)."""
    groups = weight_decay_groups(params, spec)
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)
    optimizer_cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    return optimizer_cls(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)


class Optimizers:
    """The optimizers of one worker.

    `parts` maps a name to the parameters of one optimizer (a parameter in several parts belongs
    to the first). `clip_groups` are the parameter lists that share one gradient norm when
    `spec.clip_norm` is set (default: one per part). `combine_norms`, if given, turns this
    worker's norm of a clip group into the norm over every worker holding a piece of it (a
    pipeline's stages), so that every piece is scaled by the same factor; `copies` are parameters
    scaled with their group but left out of its norm, because another worker counts the same
    gradient (the second copy of a tied tensor). `make` builds each part's optimizer from its
    parameters and `spec` (an algorithm with its own update rule passes its own).
    """

    def __init__(self, spec: OptimizerSpec, parts: dict[str, Iterable[nn.Parameter]],
                 clip_groups: list[list[nn.Parameter]] | None = None,
                 combine_norms: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 copies: Iterable[nn.Parameter] = (),
                 make: Callable[[list[nn.Parameter], OptimizerSpec], torch.optim.Optimizer] = make_optimizer):
        self.spec = spec
        seen: set[int] = set()
        self.parts: dict[str, list[nn.Parameter]] = {}
        for name, params in parts.items():
            own = [p for p in params if p.requires_grad and id(p) not in seen]
            seen.update(map(id, own))
            if own:
                self.parts[name] = own
        self.optimizers = {name: make(params, spec) for name, params in self.parts.items()}
        self.clip_groups = clip_groups if clip_groups is not None else list(self.parts.values())
        self.combine_norms = combine_norms
        self.copies = {id(p) for p in copies}

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for params in self.parts.values() for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def clip(self) -> None:
        """Scale each clip group's gradients so that their joint L2 norm is at most clip_norm
        (torch's clip_grad_norm_, with the norm taken over every worker if `combine_norms`)."""
        if self.spec.clip_norm is None:
            return
        for group in self.clip_groups:
            with_grad = [p for p in group if p.grad is not None]
            counted = [p.grad for p in with_grad if id(p) not in self.copies]
            norm = torch.nn.utils.get_total_norm(counted) if counted else torch.zeros(())
            if self.combine_norms is not None:
                norm = self.combine_norms(norm)
            torch.nn.utils.clip_grads_with_norm_(with_grad, self.spec.clip_norm, norm)

    def step(self, lr: float) -> None:
        """Clip, then step every part that has a gradient at learning rate `lr`; a part without
        one takes no step at all (no zero step: Adam's step count and weight decay stay)."""
        self.clip()
        for name, optimizer in self.optimizers.items():
            if any(p.grad is not None for p in self.parts[name]):
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()

    def state_dict(self) -> dict:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])
            _keep_saved_dtypes(optimizer, state[name])


def _keep_saved_dtypes(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Put back the dtype each state tensor was saved with: torch casts a loaded state tensor to
    its parameter's dtype, and NAdam's float32 `mu_product` of a float64 parameter would then
    continue in float64, a different trajectory from the uninterrupted run's."""
    by_index = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in saved["state"].items():
        live = optimizer.state[by_index[index]]
        for key, value in values.items():
            if torch.is_tensor(value) and torch.is_tensor(live.get(key)) and live[key].dtype != value.dtype:
                live[key] = live[key].to(value.dtype)


def lr_at(step: int, total_steps: int, spec: OptimizerSpec) -> float:
    """Learning rate at 0-based `step`: linear warm-up, then constant, cosine or step decay.

    Warm-up goes from lr/warmup_steps up to lr over the first warmup_steps steps. Cosine decays
    from lr to lr*min_lr_ratio between the end of warm-up and the last step. Step decay multiplies
    lr by decay_factor at each milestone passed.
    """
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return spec.lr
    if spec.schedule == "step":
        passed = sum(1 for m in spec.milestones if step >= m)
        return spec.lr * spec.decay_factor ** passed
    span = max(1, total_steps - 1 - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / span)
    floor = spec.lr * spec.min_lr_ratio
    return floor + (spec.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
