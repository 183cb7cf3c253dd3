"""Learning-rate schedules and optimizer parameter groups."""

from __future__ import annotations

import pytest
import torch

from mpbench.config import OptimizerSpec
from mpbench.optim import lr_at, make_optimizer


def test_warmup_then_cosine_reaches_the_floor():
    spec = OptimizerSpec(lr=1.0, schedule="cosine", warmup_steps=4, min_lr_ratio=0.1)
    lrs = [lr_at(s, 20, spec) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def test_step_decay_and_constant():
    step = OptimizerSpec(name="sgd", lr=0.1, schedule="step", milestones=(10, 20), decay_factor=0.1)
    assert [lr_at(s, 30, step) for s in (0, 9, 10, 19, 20)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert lr_at(17, 30, OptimizerSpec(lr=0.3)) == 0.3


def test_weight_decay_only_on_matrices():
    layer = torch.nn.Linear(3, 2)
    optimizer = make_optimizer(layer.parameters(), OptimizerSpec(name="adamw", weight_decay=0.1))
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(layer.weight)] == 0.1 and decay[id(layer.bias)] == 0.0
