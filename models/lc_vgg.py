"""The 11-conv VGG-like network and the local critics of Local Critic Training.

Lee & Lee, "Local Critic Training of Deep Neural Networks" (ICLR 2019 submission, arXiv
1805.01128, IJCNN 2019), Fig. 2a: a "VGG-like CNN with BN and ReLU, identical to Czarnecki et
al. (2017)". The exact layers are a reconstruction (docs/algorithms/local_learning.md §8, from a
commented-out block of the authors' TensorFlow code) that reproduces every count of the paper's
Table 5 under its counting rule (algorithms/local_learning/exits.py):

    conv3x3 widths 64, 64 | 128, 128, 128 | 256, 256, 256 | 512, 512, 512
    each conv without bias, then BN, then ReLU; stride 2 on the first conv of the last three stages
    (32 -> 16 -> 8 -> 4 on CIFAR); flatten 4x4x512 -> one fully connected layer; no pooling.

Blocks: one per conv layer (11), then the FC head: 12 blocks, so that a critic "after conv k"
is attached to the output of block k - 1.

Critic (paper: one conv layer plus an output FC layer; details from the authors' code): conv3x3
with 128 filters and bias, ReLU, flatten, linear to the classes; no pooling, no BN
(`models.heads.make_critic`, which every model's local heads use on a feature map).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mpbench.blocks import BlockModel
from mpbench.data.base import DataInfo
from mpbench.settings import Settings, check_range
from models.common import Classifier, require_images
from models.heads import CRITIC_WIDTH, ShapedHeads, init_weights, make_critic  # noqa: F401 (the paper's critic)

WIDTHS = (64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512)
STRIDES = (1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1)


@dataclass(frozen=True)
class LCVGGSettings(Settings):
    """Defaults are the paper's network; `width_divisor` shrinks it for reduced-scale runs."""

    width_divisor: int = 1
    """Every conv width is divided by this (a divisor of 64)."""
    bn_momentum: float = 0.003
    """BatchNorm momentum: the authors' TF code's decay 0.997."""
    bn_eps: float = 1e-5
    """BatchNorm epsilon, as the authors' TF code."""
    critic_width: int = CRITIC_WIDTH
    """Filters of each local critic's conv layers (the paper's 128); a reduced-scale run narrows
    the critics with the network (width_divisor), keeping their size relative to it."""

    def validate(self):
        d = self.width_divisor
        if d < 1 or 64 % d != 0:
            raise ValueError(f"lc_vgg width_divisor must be a positive divisor of 64 (1, 2, 4, ..., 64); "
                             f"got {d!r}")
        if not 0.0 < self.bn_momentum <= 1.0:
            raise ValueError(f"lc_vgg bn_momentum must be in (0, 1], got {self.bn_momentum!r}")
        check_range("bn_eps", self.bn_eps, 0, low_open=True)
        if not isinstance(self.critic_width, int) or self.critic_width < 1:
            raise ValueError(f"lc_vgg critic_width must be a positive integer (the paper's: {CRITIC_WIDTH}); "
                             f"got {self.critic_width!r}")


class ConvBNReLU(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, s: LCVGGSettings):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=s.bn_eps, momentum=s.bn_momentum)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def feature_shapes(settings: LCVGGSettings, data: DataInfo) -> list[tuple[int, int, int]]:
    """(C, H, W) of the output of each of the 11 conv blocks, e.g. to size a critic after conv k."""
    _, h, w = data.input_shape
    shapes = []
    for width, stride in zip(WIDTHS, STRIDES):
        h, w = (h - 1) // stride + 1, (w - 1) // stride + 1  # 3x3 conv, padding 1
        shapes.append((width // settings.width_divisor, h, w))
    return shapes


def build(settings: LCVGGSettings, data: DataInfo) -> BlockModel:
    """[ConvBNReLU x 11, Classifier] for an image classification dataset (C, H, W)."""
    require_images("lc_vgg", data)
    shapes = feature_shapes(settings, data)
    blocks: list[nn.Module] = []
    c_in = data.input_shape[0]
    for (c_out, _, _), stride in zip(shapes, STRIDES):
        blocks.append(ConvBNReLU(c_in, c_out, stride, settings))
        c_in = c_out
    c, h, w = shapes[-1]
    blocks.append(Classifier(c * h * w, data.num_classes))
    for block in blocks:
        block.apply(init_weights)
    return BlockModel(blocks, task="classification", heads=ShapedHeads(critic_width=settings.critic_width))
