"""Local heads on a block's output: critics, auxiliary classifiers and synthetic-gradient modules.

The local-learning family (docs/algorithms/local_learning.md) attaches a small network to the
output h_i of layer group i. Its shape follows h_i, not the model's type:

- a feature map (B, C, H, W): Local Critic Training's critic, conv3x3 with 128 filters and bias,
  ReLU, then one fully connected layer (Lee & Lee 2019; `make_critic`); `convs` > 1 adds
  conv3x3 128 -> 128 layers (Table 2), the extra layers' width being the natural reading of the paper;
  a model may set another width (`critic_width`, e.g. a reduced-width lc_vgg's);
- a sequence (B, T, d), a language model's residual stream: `blocks` of the model's own kind
  (given by the model as `block`), then LayerNorm and a linear map to the vocabulary;
- a vector (B, ...): a linear map to the classes.

A synthetic-gradient module (Jaderberg et al. 2017) predicts a tensor of h_i's shape: "one conv
plus output", conv3x3(width) - ReLU - conv3x3(C) on a feature map, linear(width) - ReLU -
linear(|h|) otherwise, its output layer zero at the start (so the first synthetic gradients are
zero), optionally conditioned on one-hot labels (cDNI).

Every model family hands a `ShapedHeads` to its `BlockModel`; GPT gives it its Transformer block.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

CRITIC_WIDTH = 128  # the LC paper's critic conv filters


def init_weights(module: nn.Module) -> None:
    """Xavier (Glorot) uniform weights and zero biases, as the LC paper states (TF's default)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def make_critic(in_channels: int, spatial: int | tuple[int, int], num_classes: int,
                width: int = CRITIC_WIDTH) -> nn.Sequential:
    """The LC paper's local critic for a (in_channels, H, W) feature map: conv3x3 (bias) - ReLU - FC.

    `spatial` is H (= W) or (H, W) of the feature map; `width` is the critic conv's filters.
    """
    h, w = (spatial, spatial) if isinstance(spatial, int) else spatial
    critic = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=True),  # stride 1, same padding
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * h * w, num_classes),
    )
    critic.apply(init_weights)
    return critic


class ShapedHeads:
    """`mpbench.blocks.LocalHeads` by the boundary tensor's shape; `block()` (optional) makes a
    freshly initialised block of the model's own kind for a head on a sequence."""

    def __init__(self, block: Callable[[], nn.Module] | None = None, critic_width: int = CRITIC_WIDTH):
        self.block = block
        self.critic_width = critic_width  # a reduced-width model may narrow its critics alike

    @property
    def holds_blocks(self) -> bool:
        return self.block is not None

    def critic(self, shape: torch.Size, outputs: int, convs: int = 1, blocks: int = 0) -> nn.Module:
        if len(shape) == 4:  # (B, C, H, W)
            width = self.critic_width
            if convs == 1:
                return make_critic(shape[1], (shape[2], shape[3]), outputs, width)
            layers: list[nn.Module] = []
            for c_in in (shape[1], *([width] * (convs - 1))):
                layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=True), nn.ReLU()]
            critic = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * shape[2] * shape[3], outputs))
            critic.apply(init_weights)
            return critic
        if len(shape) == 3:  # (B, T, d): a language model's residual stream
            if blocks and self.block is None:
                raise ValueError("this model offers no blocks for a head on its stream")
            head = [self.block() for _ in range(blocks)]
            return nn.Sequential(*head, nn.LayerNorm(shape[2]), nn.Linear(shape[2], outputs))
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(shape[1:]).numel()), outputs))

    def synthesizer(self, shape: torch.Size, classes: int, conditioned: bool, width: int) -> nn.Module:
        return SyntheticGradient(shape, classes, conditioned, width)


class SyntheticGradient(nn.Module):
    """DNI's module M_i: predicts dL/dh_i, a tensor of h_i's shape, from h_i (and the labels)."""

    def __init__(self, shape: torch.Size, classes: int, conditioned: bool, width: int):
        super().__init__()
        self.classes = classes if conditioned else 0
        if len(shape) == 4:
            channels = shape[1]
            self.hidden = nn.Conv2d(channels + self.classes, width, 3, padding=1)
            self.out = nn.Conv2d(width, channels, 3, padding=1)
        else:
            features = shape[-1] if len(shape) == 3 else int(torch.Size(shape[1:]).numel())
            self.hidden = nn.Linear(features + self.classes, width)
            self.out = nn.Linear(width, features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = h if h.dim() in (3, 4) else h.flatten(1)
        if self.classes:
            onehot = F.one_hot(labels, self.classes).to(h.dtype)
            if h.dim() == 4:  # one channel per class, constant over the map
                onehot = onehot[:, :, None, None].expand(-1, -1, *h.shape[2:])
            x = torch.cat([x, onehot], dim=1 if h.dim() == 4 else -1)
        return self.out(F.relu(self.hidden(x))).reshape(h.shape)
