"""Checks and layers shared by the model families."""

from __future__ import annotations

import torch
from torch import nn

from mpbench.data.base import DataInfo


def require_images(model_name: str, data: DataInfo) -> None:
    """Image classifiers need (C, H, W) samples and a class count; say so in one line otherwise."""
    if data.task != "classification":
        raise ValueError(f"model {model_name} needs a classification dataset; {data.name} is a {data.task} dataset")
    if len(data.input_shape) != 3 or not data.num_classes:
        raise ValueError(f"model {model_name} needs images (C, H, W) and a class count; {data.name} has "
                         f"input shape {data.input_shape} and {data.num_classes} classes")


class Classifier(nn.Module):
    """Flatten the last feature map and apply one fully connected layer (no pooling): the last
    block of lc_vgg and dgl_cnn."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))
