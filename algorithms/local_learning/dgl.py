"""`dgl`: Decoupled Greedy Learning (Belilovsky, Eickenberg, Oyallon; "Decoupled Greedy Learning of
CNNs", ICML 2020, arXiv 1901.08164); docs/algorithms/local_learning.md §3.

Each group i < N and its auxiliary classifier a_i form one small model, trained on the
cross-entropy of a_i(h_i) with the group's optimizer; the input h_{i-1} is detached. Nothing is
sent backward, so no group ever waits for another's backward:

    (theta_i, a_i) <- step( d mean_b CE(a_i(h_i)[b], y[b]) / d (theta_i, a_i) )
    theta_N        <- step( d mean_b CE(h_N[b], y[b]) / d theta_N )

The auxiliary classifiers are the local critics' heads (same shapes, same initial weights), so
their sub-models are reported as LC's are (exits.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from algorithms.local_learning.engine import Learned, LocalLearning, LocalLearningSettings
from algorithms.local_learning.exits import SubModelExits
from algorithms.local_learning.local_critic import make_critics, per_sample_loss
from mpbench.registry import register_algorithm


@dataclass(frozen=True)
class DGLSettings(LocalLearningSettings):
    """DGL has no settings beyond the split: its auxiliary classifiers learn with their groups."""


class DecoupledGreedy(SubModelExits, LocalLearning):
    local_name = "critics"

    def make_local_modules(self) -> list[nn.Module]:
        return make_critics(self.model, self.outputs, self.classes)

    def target_source(self, i: int) -> None:
        return None  # nothing is regressed: each auxiliary classifier learns with its group

    def trained_with_group(self, i: int) -> list[nn.Parameter]:
        head = list(self.local_modules[i].parameters()) if i in self.local_modules else []
        return [*self.groups[i].parameters(), *head]

    def local_parameters(self, i: int) -> list[nn.Parameter]:
        return []  # stepped by the group's optimizer (trained_with_group)

    def learn(self, i, x, h, labels) -> Learned:
        if i == self.N - 1:
            loss = self.model.loss(h, labels)
            return Learned(self.group_backward(i, loss)[0], loss=loss.item())
        head = self.local_modules[i]
        h_in = h.detach().requires_grad_()
        own = per_sample_loss(head(h_in), labels)
        delta, *head_grads = torch.autograd.grad(own.mean(), [h_in, *head.parameters()])
        grads, _ = self.group_backward(i, h, delta)
        return Learned({**dict(zip(head.parameters(), head_grads)), **grads})


register_algorithm("dgl", DGLSettings)(DecoupledGreedy)
