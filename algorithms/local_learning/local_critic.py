"""`local_critic` and `critic_training`: layer groups that learn from local critics.

Local Critic Training (Lee & Lee, "Local Critic Training of Deep Neural Networks", IJCNN 2019,
arXiv 1805.01128; Lee, Hsieh & Lee, TNNLS 2022, arXiv 2102.01963); docs/algorithms/local_learning.md §2.
Group i < N learns from its critic c_i; critic i learns to predict the next critic's loss:

    group i < N:  theta_i <- step( d mean_b l_i[b] / d theta_i ),  l_i[b] = CE(c_i(h_i)[b], y[b]),
                  backpropagated through c_i into f_i only (the critic receives none of it)
    critic i:     phi_i   <- Adam( d mean_b |l_i[b] - stopgrad(l_{i+1}[b])| / d phi_i )       (Eq. 7)
    group N:      theta_N <- step( d mean_b l_N[b] / d theta_N ),  l_N = CE(h_N, y)

`critic_training` (§3; Czarnecki et al. 2017 as LC compares it) regresses every critic onto l_N
instead, so the last group sends its B losses to every critic. The backward message is those B
per-sample losses (a language model's: the mean CE over each sequence's tokens). Critics are the
model's local heads (models/heads.py): the paper's conv3x3(128) - ReLU - FC on a feature map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from algorithms.local_learning.engine import Learned, LocalLearning, PipelinedSettings
from algorithms.local_learning.exits import SubModelExits
from mpbench.blocks import BlockModel
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.registry import register_algorithm
from mpbench.settings import check_range


@dataclass(frozen=True)
class LocalCriticSettings(PipelinedSettings):
    critic_loss: Literal["l1", "mse"] = "l1"
    """How a critic regresses its target loss: l1 (the paper's Eq. 7) or mse (the authors' PyTorch code)."""
    critic_lr: float = 1e-4
    """The critics' Adam learning rate: constant, no weight decay (paper §8)."""
    critic_every: int = 1
    """Critics step every k-th iteration, groups every iteration (Table 3)."""
    critic_target: Literal["next", "last"] = "next"
    """next: l_{i+1}, the cascade (local_critic); last: l_N (critic_training)."""
    critic_convs: int | tuple[int, ...] = 1
    """conv3x3(128) layers per critic on a feature map: one number for all, or a list per critic (Table 2)."""
    critic_blocks: int = 0
    """Blocks of the model's own kind before a sequence critic's LayerNorm + linear (1: the optional one-block head)."""

    def validate(self):
        super().validate()
        convs = self.critic_convs if isinstance(self.critic_convs, tuple) else (self.critic_convs,)
        if not convs or any(c < 1 for c in convs):
            raise ValueError(f"critic_convs must be a positive integer or a list of them, got {self.critic_convs!r}")
        check_range("critic_lr", self.critic_lr, 0, low_open=True)
        if self.critic_every < 1:
            raise ValueError(f"critic_every must be a positive integer, got {self.critic_every!r}")
        if self.critic_blocks < 0:
            raise ValueError(f"critic_blocks must be a non-negative integer, got {self.critic_blocks!r}")


@dataclass(frozen=True)
class CriticTrainingSettings(LocalCriticSettings):
    critic_target: Literal["next", "last"] = "last"
    """last: every critic regresses the final output's per-sample loss l_N (critic training)."""


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """l[b]: cross-entropy of sample b (for a sequence, the mean over its tokens); shape (B,)."""
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="none")
    return losses.reshape(len(labels), -1).mean(dim=1)


def critic_objective(kind: str, own: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_b |l_i[b] - l_source[b]| (l1) or its square (mse); the target is a constant."""
    gap = own - target.detach()
    return gap.abs().mean() if kind == "l1" else gap.pow(2).mean()


def check_critic_shape(run: RunSpec, model: BlockModel, groups: int) -> None:
    """ConfigError (one line) unless `critic_convs` has one entry per critic and `critic_blocks`
    meets a model whose heads can hold its blocks (a Transformer's)."""
    s = run.algorithm_settings
    convs = getattr(s, "critic_convs", 1)
    if isinstance(convs, tuple) and len(convs) != groups - 1:
        raise ConfigError(f"{run.algorithm}: critic_convs={list(convs)} needs one entry per critic "
                          f"({groups - 1} for N={groups} groups)")
    blocks = getattr(s, "critic_blocks", 0)
    if blocks and not (model.heads is not None and model.heads.holds_blocks):
        raise ConfigError(f"{run.algorithm}: critic_blocks={blocks} puts Transformer blocks in a critic, which "
                          f"needs model gpt (got {run.model}); use critic_convs for a CNN")


def make_critics(model: BlockModel, outputs: list[tuple[torch.Size, torch.dtype]], classes: int,
                 convs: int | tuple[int, ...] = 1, blocks: int = 0) -> list[nn.Module]:
    """The critics after groups 1..N-1 (`outputs`: each group's output), built in order, so that
    every worker, runtime and `sub_model_backprop` draws the same initial weights."""
    if model.heads is None:
        raise ValueError("this model offers no local heads (BlockModel.heads)")
    per_critic = convs if isinstance(convs, tuple) else (convs,) * (len(outputs) - 1)
    return [model.heads.critic(shape, classes, c, blocks) for (shape, _), c in zip(outputs[:-1], per_critic)]


class LocalCritic(SubModelExits, LocalLearning):
    local_name = "critics"
    local_schedule = ("critic_lr", "critic_every")

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        super().check(run, model)
        check_critic_shape(run, model, cls.groups(run))

    def make_local_modules(self) -> list[nn.Module]:
        return make_critics(self.model, self.outputs, self.classes, self.settings.critic_convs,
                            self.settings.critic_blocks)

    def target_source(self, i: int) -> int | None:
        """The group whose per-sample loss critic i regresses: i+1 (LC) or N (critic training)."""
        if i == self.N - 1:
            return None
        return i + 1 if self.settings.critic_target == "next" else self.N - 1

    def message_shape(self, i: int) -> tuple[torch.Size, torch.dtype]:
        return torch.Size([self.outputs[0][0][0]]), self.worker.dtype  # B per-sample losses

    def learn(self, i, x, h, labels) -> Learned:
        if i == self.N - 1:  # l_N for the critics that regress it (before the backward), the true loss
            if self.sends_message(i):
                self.send_message(i, per_sample_loss(h.detach(), labels))
            loss = self.model.loss(h, labels)
            return Learned(self.group_backward(i, loss)[0], loss=loss.item())
        weights = self.local_weights(i)
        h_in = h.detach().requires_grad_()
        own = per_sample_loss(functional_call(self.local_modules[i], weights, (h_in,)), labels)
        if self.sends_message(i):
            self.send_message(i, own.detach())
        # delta_i = d mean l_i / d h_i, then through f_i alone; the critic's graph stays for phase 2.
        (delta,) = torch.autograd.grad(own.mean(), [h_in], retain_graph=True)
        grads, _ = self.group_backward(i, h, delta)
        return Learned(grads, prediction=(own, weights))

    def local_objective(self, prediction, target) -> torch.Tensor:
        return critic_objective(self.settings.critic_loss, prediction, target)

    def facts(self) -> dict:
        s = self.settings
        return {**super().facts(), "critic_loss": s.critic_loss, "critic_every": s.critic_every,
                "critic_target": s.critic_target}


register_algorithm("local_critic", LocalCriticSettings)(LocalCritic)
register_algorithm("critic_training", CriticTrainingSettings)(LocalCritic)
