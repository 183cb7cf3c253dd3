"""`dni`: Decoupled Neural Interfaces using Synthetic Gradients (Jaderberg, Czarnecki, Osindero,
Vinyals, Graves, Silver, Kavukcuoglu; ICML 2017, arXiv 1608.05343); docs/algorithms/local_learning.md §4.

Group i < N backpropagates a synthetic gradient of its output through itself alone; its module
M_i learns to predict the gradient the next group computes at its input (bootstrapped: that
group's own backward starts from its synthetic gradient; the last group's from the true loss):

    group i < N:  theta_i <- step( ghat_i . d h_i / d theta_i ),  ghat_i = M_i(h_i [, y])
    module i:     M_i     <- Adam( d mean_b ||ghat_i[b] - delta_i[b]||^2 / d M_i ),
                  delta_i = d (ghat_{i+1} . h_{i+1}) / d h_i   (d L / d h_i from the last group)
    group N:      theta_N <- step( d L / d theta_N )

The backward message is delta_i, a B x |h_i| tensor. M_i is "one conv plus output" with h_i's
shape, its output layer zero at the start (models/heads.py); `conditioned=true` (cDNI) also reads
the one-hot labels. Its loss sums the squared error over h_i's elements and averages over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from algorithms.local_learning.engine import Learned, LocalLearning, PipelinedSettings
from mpbench.registry import register_algorithm
from mpbench.settings import check_range


@dataclass(frozen=True)
class DNISettings(PipelinedSettings):
    synthesizer_lr: float = 1e-4
    """The synthetic-gradient modules' Adam learning rate: constant, no weight decay."""
    synthesizer_every: int = 1
    """Modules step every k-th iteration, groups every iteration."""
    synthesizer_width: int = 128
    """Filters (or units) of a module's hidden layer."""
    conditioned: bool = False
    """cDNI: the module also reads the one-hot labels."""

    def validate(self):
        super().validate()
        check_range("synthesizer_lr", self.synthesizer_lr, 0, low_open=True)
        for key in ("synthesizer_every", "synthesizer_width"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)!r}")


def synthetic_gradient_objective(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_b ||ghat_i[b] - delta_i[b]||^2, the squared error summed over h_i's elements."""
    return (predicted - target.detach()).pow(2).sum() / len(predicted)


class SyntheticGradients(LocalLearning):
    local_name = "synthesizers"
    local_schedule = ("synthesizer_lr", "synthesizer_every")
    needs_input_gradient = True  # a group's message is the gradient at its input

    def make_local_modules(self) -> list[nn.Module]:
        s = self.settings
        return [self.model.heads.synthesizer(shape, self.classes, s.conditioned, s.synthesizer_width)
                for shape, _ in self.outputs[:-1]]

    def target_source(self, i: int) -> int:
        return i + 1

    def message_shape(self, i: int) -> tuple[torch.Size, torch.dtype]:
        return self.outputs[i]  # dL/dh_i: B x |h_i|

    def learn(self, i, x, h, labels) -> Learned:
        x_leaf = x if i > 0 else None
        if i == self.N - 1:
            loss = self.model.loss(h, labels)
            grads, input_grad = self.group_backward(i, loss, None, x_leaf)
            learned = Learned(grads, loss=loss.item())
        else:
            weights = self.local_weights(i)
            predicted = functional_call(self.local_modules[i], weights, (h.detach(), labels))
            grads, input_grad = self.group_backward(i, h, predicted.detach(), x_leaf)
            learned = Learned(grads, prediction=(predicted, weights))
        if i > 0:  # delta_{i-1}, module i-1's target
            self.send_message(i, input_grad)
        return learned

    def local_objective(self, prediction, target) -> torch.Tensor:
        return synthetic_gradient_objective(prediction, target)


register_algorithm("dni", DNISettings)(SyntheticGradients)
