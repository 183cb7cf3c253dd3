"""The small CIFAR CNN of the DNI comparison in Decoupled Greedy Learning, and its local heads.

Belilovsky, Eickenberg, Oyallon, "Decoupled Greedy Learning of CNNs" (ICML 2020, arXiv
1901.08164), the comparison with DNI and cDNI (Jaderberg et al. 2017) whose logs the authors
released (github.com/eugenium/DGL, `dni_comparisons/`). The network there is the DNI paper's
CIFAR-10 CNN, as the authors' scripts build it:

    3 x [conv5x5 with bias, 128 filters, resolution-preserving padding; BatchNorm; ReLU; pool]
    pool: 3x3 max-pooling (stride 3) after the first layer, 3x3 average-pooling after the others,
    so that a 32x32 image shrinks 32 -> 10 -> 3 -> 1; then one linear layer 128 -> classes.

(A summary of the paper elsewhere says "2x2 pooling"; the released code and logs say 3x3 with
stride 3, which is what ends at a 1x1 map and a 128-input classifier.) Weights keep PyTorch's
default initialisation and BatchNorm its default momentum, as the authors' code does.

Blocks: one per conv layer, then the classifier, like lc_vgg; so `dgl` with groups=3 and
balance [1,1,2] is the authors' DGL (the last group is conv 3 and the classifier, their
"auxiliary" of the last layer), and `dni` with groups=4 puts a synthesizer after every conv layer,
as their DNI does.

Heads (`DGLCNNHeads`), the authors' shapes on a feature map, with the model's width:
- auxiliary classifier (dgl; as a critic, local_critic too): conv5x5 - BN - ReLU - conv5x5 - BN -
  ReLU - conv5x5 - global average pooling - linear to the classes. Their last conv's weights
  start at zero (their auxiliary reuses their synthesizer's layout, zero start included);
- synthesizer (dni): conv5x5 - BN - ReLU - conv5x5 - BN - ReLU - conv5x5 back to the feature
  map's channels, its last layer zero at the start (the DNI paper's rule), so the first synthetic
  gradients are zero; cDNI adds a linear map of the one-hot labels to the first conv's output,
  one value per channel, as the authors' synthesizer reads its "context".
On a vector (the classifier's logits) the project's generic heads (models/heads.py) serve.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mpbench.blocks import BlockModel
from mpbench.data.base import DataInfo
from mpbench.settings import Settings
from models.common import Classifier, require_images
from models.heads import ShapedHeads

KERNEL = 5  # every conv, in the network and in its heads
POOL = 3  # pooling window and stride: each layer divides the map's side by 3


@dataclass(frozen=True)
class DGLCNNSettings(Settings):
    """Defaults are the paper's network (3 layers of 128 filters); `width` narrows it for
    reduced-scale runs, its heads with it."""

    width: int = 128
    """Filters of every conv layer (and of the auxiliary classifiers' convs)."""
    layers: int = 3
    """Conv layers; each divides the map's side by 3, so 32x32 images allow at most 3."""

    def validate(self):
        for key in ("width", "layers"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"dgl_cnn {key} must be a positive integer, got {value!r}")


class ConvLayer(nn.Module):
    """conv5x5 (same padding) - BatchNorm - ReLU - 3x3 pooling: max on the image, average after."""

    def __init__(self, c_in: int, c_out: int, max_pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, KERNEL, padding=KERNEL // 2)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = nn.MaxPool2d(POOL) if max_pool else nn.AvgPool2d(POOL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, KERNEL, padding=KERNEL // 2), nn.BatchNorm2d(c_out), nn.ReLU()]


class AuxiliaryClassifier(nn.Module):
    """DGL's auxiliary network on a (C, H, W) map: two conv-BN-ReLU, a conv, global average
    pooling, linear to the classes."""

    def __init__(self, channels: int, width: int, classes: int):
        super().__init__()
        self.features = nn.Sequential(*conv_bn_relu(channels, width), *conv_bn_relu(width, width))
        self.last = nn.Conv2d(width, width, KERNEL, padding=KERNEL // 2)
        nn.init.zeros_(self.last.weight)  # as released: the synthesizer layout's zero start
        self.fc = nn.Linear(width, classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.last(self.features(h))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ConvSynthesizer(nn.Module):
    """DNI's M_i on a (C, H, W) map: predicts dL/dh_i from h_i (cDNI: and the labels)."""

    def __init__(self, channels: int, width: int, classes: int, conditioned: bool):
        super().__init__()
        self.first = nn.Conv2d(channels, width, KERNEL, padding=KERNEL // 2)
        # cDNI: the labels shift each channel of the first conv's output (one value per class and channel).
        self.labels = nn.Linear(classes, width) if conditioned else None
        self.classes = classes
        self.rest = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), *conv_bn_relu(width, width))
        self.out = nn.Conv2d(width, channels, KERNEL, padding=KERNEL // 2)
        nn.init.zeros_(self.out.weight)  # the first synthetic gradients are zero
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.first(h)
        if self.labels is not None:
            x = x + self.labels(F.one_hot(labels, self.classes).to(h.dtype))[:, :, None, None]
        return self.out(self.rest(x))


class DGLCNNHeads(ShapedHeads):
    """The authors' auxiliary classifier and synthesizer on a feature map; the generic heads on
    anything else. The auxiliary classifiers are as wide as the network (`width`)."""

    def __init__(self, width: int):
        super().__init__(critic_width=width)

    def critic(self, shape: torch.Size, outputs: int, convs: int = 1, blocks: int = 0) -> nn.Module:
        if len(shape) != 4:
            return super().critic(shape, outputs, convs, blocks)
        if convs != 1:
            raise ValueError("dgl_cnn's auxiliary classifier has a fixed shape (three convs); critic_convs must be 1")
        return AuxiliaryClassifier(shape[1], self.critic_width, outputs)

    def synthesizer(self, shape: torch.Size, classes: int, conditioned: bool, width: int) -> nn.Module:
        if len(shape) != 4:
            return super().synthesizer(shape, classes, conditioned, width)
        return ConvSynthesizer(shape[1], width, classes, conditioned)


def build(settings: DGLCNNSettings, data: DataInfo) -> BlockModel:
    """[ConvLayer x layers, Classifier] for an image classification dataset (C, H, W)."""
    require_images("dgl_cnn", data)
    channels, h, w = data.input_shape
    side = min(h, w)
    for _ in range(settings.layers):
        side //= POOL
    if side < 1:
        raise ValueError(f"model dgl_cnn: layers={settings.layers} pools {h}x{w} images down to nothing "
                         f"(each layer divides the side by {POOL}); use fewer layers")
    blocks: list[nn.Module] = []
    c_in = channels
    for k in range(settings.layers):
        blocks.append(ConvLayer(c_in, settings.width, max_pool=k == 0))
        c_in = settings.width
        h, w = h // POOL, w // POOL
    blocks.append(Classifier(settings.width * h * w, data.num_classes))
    return BlockModel(blocks, task="classification", heads=DGLCNNHeads(settings.width))
