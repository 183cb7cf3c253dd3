"""CIFAR ResNets, one block per residual unit so that a cut never splits a residual connection.

Two families, chosen by depth:

- **Basic** (He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition", §4.2,
  the CIFAR-10 networks): depth = 6n + 2. A 3x3 conv with 16 filters, then three stages of n
  basic blocks (two 3x3 convs, post-activation: conv-BN-ReLU-conv-BN, add, ReLU) with 16, 32, 64
  filters, the first block of stages 2 and 3 striding by 2; global average pooling and one
  fully connected layer. Shortcuts are the paper's option A: identity, or where the shape changes
  subsample by 2 and zero-pad the new channels. They have no parameters, so the counts match
  the paper (0.27M / 0.85M / 1.7M for ResNet-20 / 56 / 110).
- **Pre-activation bottleneck** (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual
  Networks", §4 and the authors' resnet-1k-layers code): depth = 9n + 2, used for ResNet-164 and
  ResNet-1001. Each unit is BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 with widths
  (16, 16, 64), (32, 32, 128), (64, 64, 256) per stage; where the shape changes the shortcut is a
  1x1 projection conv applied to the pre-activated input (the first unit after the stem conv
  shares that BN-ReLU between both paths, as in the authors' code). The head is BN-ReLU, global
  average pooling, fully connected.

Blocks: [stem, residual unit x 3n, head].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from typing import Literal

from mpbench.blocks import BlockModel
from mpbench.data.base import DataInfo
from mpbench.settings import Settings
from models.common import require_images
from models.heads import ShapedHeads

BOTTLENECK_DEPTHS = (164, 1001)  # the "Identity Mappings" paper's CIFAR networks


@dataclass(frozen=True)
class ResNetSettings(Settings):
    """A CIFAR ResNet."""

    depth: int
    """Weighted layers (convs + the FC layer), as in the papers' names: 6n + 2 (basic) or 9n + 2 (bottleneck)."""
    block: Literal["auto", "basic", "preact_bottleneck"] = "auto"
    """auto: pre-activation bottleneck for depths 164 and 1001, basic blocks otherwise."""

    def validate(self):
        if self.kind == "basic" and (self.depth < 8 or (self.depth - 2) % 6 != 0):
            raise ValueError(f"resnet depth with basic blocks must be 6n + 2 (e.g. 20, 56, 110), "
                             f"or 164 / 1001 for pre-activation bottlenecks; got {self.depth}")
        if self.kind == "preact_bottleneck" and (self.depth < 11 or (self.depth - 2) % 9 != 0):
            raise ValueError(f"resnet depth with pre-activation bottleneck blocks must be 9n + 2 "
                             f"(e.g. 164, 1001); got {self.depth}")

    @property
    def kind(self) -> str:
        """The block type actually used ("basic" or "preact_bottleneck")."""
        if self.block != "auto":
            return self.block
        return "preact_bottleneck" if self.depth in BOTTLENECK_DEPTHS else "basic"

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // (6 if self.kind == "basic" else 9)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)  # BN follows: no bias


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class Stem(nn.Module):
    """The first 3x3 conv; the basic (post-activation) net follows it with BN-ReLU."""

    def __init__(self, c_in: int, c_out: int, post_activation: bool):
        super().__init__()
        self.conv = conv3x3(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out) if post_activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(self.bn(x)) if self.bn is not None else x


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus an option-A shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in  # channels the shortcut fills with zeros

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A: parameter-free. Subsample spatially, zero-pad the new channels evenly on both
        # sides (the widths double, so pad is even).
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (strided), BN-ReLU-conv1x1 (x4 width), plus the shortcut."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = conv1x1(c_in, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, c_out)
        needs_projection = stride != 1 or c_in != c_out
        self.projection = conv1x1(c_in, c_out, stride) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        # An identity shortcut carries the raw input (the clean path of "Identity Mappings");
        # a projection takes the pre-activated one.
        shortcut = self.projection(pre) if self.projection is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class Head(nn.Module):
    """[BN-ReLU for pre-activation nets], global average pool, flatten, fully connected."""

    def __init__(self, channels: int, num_classes: int, pre_activation: bool):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels) if pre_activation else None
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def init_weights(module: nn.Module) -> None:
    """He (Kaiming) normal init for convs, as in both papers; BN starts as the identity."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build(settings: ResNetSettings, data: DataInfo) -> BlockModel:
    """[stem, residual unit x 3n, head] for an image classification dataset (C, H, W)."""
    require_images("resnet", data)
    in_channels, n = data.input_shape[0], settings.blocks_per_stage
    basic = settings.kind == "basic"
    blocks: list[nn.Module] = [Stem(in_channels, 16, post_activation=basic)]
    c = 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            if basic:
                blocks.append(BasicBlock(c, width, stride))
                c = width
            else:
                blocks.append(PreActBottleneck(c, width, stride))
                c = width * PreActBottleneck.expansion
    blocks.append(Head(c, data.num_classes, pre_activation=not basic))
    for block in blocks:
        block.apply(init_weights)
    return BlockModel(blocks, task="classification", heads=ShapedHeads())
