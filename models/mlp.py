"""A tiny multilayer perceptron for fast equivalence tests of the algorithms.

No batch norm and no dropout, so a forward pass is a pure function of parameters and input: the
model-parallel result can be compared with plain backprop to float64 round-off. Smooth
activations (tanh by default) avoid ties at ReLU kinks that could make tiny differences grow.

Blocks: [flatten + Linear + act, (Linear + act) x (len(hidden) - 1), Linear to the classes].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from typing import Literal

from mpbench.blocks import BlockModel
from mpbench.data.base import DataInfo
from mpbench.settings import Settings
from models.heads import ShapedHeads

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


@dataclass(frozen=True)
class MLPSettings(Settings):
    """A multilayer perceptron."""

    hidden: tuple[int, ...] = (64, 64)
    """Width of each hidden layer; [] gives a linear classifier."""
    activation: Literal["tanh", "relu", "gelu", "sigmoid"] = "tanh"
    """The hidden layers' activation (smooth ones keep float64 comparisons away from kinks)."""

    def validate(self):
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"mlp hidden must be a list of positive integers, got {list(self.hidden)}")


class Dense(nn.Module):
    """[flatten] -> Linear -> [activation]."""

    def __init__(self, n_in: int, n_out: int, activation: str | None, flatten: bool):
        super().__init__()
        self.flatten = flatten
        self.linear = nn.Linear(n_in, n_out)
        self.act = ACTIVATIONS[activation]() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            x = torch.flatten(x, 1)
        return self.act(self.linear(x))


def build(settings: MLPSettings, data: DataInfo) -> BlockModel:
    """One block per Linear layer; the first flattens the input sample."""
    if data.task != "classification":
        raise ValueError(f"model mlp needs a classification dataset; {data.name} is a {data.task} dataset")
    if not data.num_classes:
        raise ValueError(f"model mlp needs the class count of dataset {data.name}; it has none")
    widths = [math.prod(data.input_shape), *settings.hidden, data.num_classes]
    last = len(widths) - 2
    blocks = [Dense(widths[i], widths[i + 1], None if i == last else settings.activation, flatten=i == 0)
              for i in range(last + 1)]
    return BlockModel(blocks, task="classification", heads=ShapedHeads())
