"""Optimizers and learning-rate schedules, shared by every algorithm.

The schedule is a pure function of the global step, so algorithms that keep one optimizer per
module (and apply gradients of different ages) still follow one schedule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from mpbench.config import OptimizerSpec


def make_optimizer(params: Iterable[nn.Parameter], spec: OptimizerSpec) -> torch.optim.Optimizer:
    """An optimizer over `params`; weight decay only on tensors of dim >= 2 (weights, kernels)."""
    params = [p for p in params if p.requires_grad]
    decayed = [p for p in params if p.dim() >= 2]
    plain = [p for p in params if p.dim() < 2]  # biases, norm gains: decaying them hurts and is uncommon
    groups = [{"params": decayed, "weight_decay": spec.weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)
    optimizer_cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    return optimizer_cls(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)


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


def clip_gradients(group: list[nn.Parameter], spec: OptimizerSpec) -> None:
    """Scale the gradients of `group` so that their joint L2 norm is at most `spec.clip_norm`.

    One group is one norm: all parameters for `backprop` and `data_parallel` (the usual global
    clip); one group per module for the stale-gradient family, whose modules apply gradients of
    different batches in the same step.
    """
    if spec.clip_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for p in group if p.grad is not None], spec.clip_norm)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
