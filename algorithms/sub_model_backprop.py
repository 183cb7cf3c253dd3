"""`sub_model_backprop`: Table 4's "BP sub k" of Local Critic Training (Lee & Lee 2019).

Sub-model k of a local-critic split, groups 1..k and critic k, built exactly as `local_critic`
builds them (so critic k starts from the same weights), trained end to end by backprop on one
worker with the run's optimizer for every part (`optimizer.clip_norm`: one global norm). Its
held-out accuracy stands beside `local_critic`'s `sub_model_accuracy[k-1]`
(docs/algorithms/local_learning.md §11). For LC3:

    python run.py -m experiment=lc3 algorithm=sub_model_backprop gpus=1 algorithm.sub_model=1,2,3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from algorithms.backprop import Backprop
from algorithms.local_learning.exits import lc_rule_counts
from algorithms.local_learning.local_critic import check_critic_shape, make_critics
from mpbench.algorithm import BuildContext
from mpbench.blocks import BlockModel, EvalTotals, eval_mode
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.parallel.balance import agreed_split, check_split
from mpbench.registry import register_algorithm
from mpbench.settings import Settings


@dataclass(frozen=True)
class SubModelBackpropSettings(Settings):
    sub_model: int = 1
    """k: the sub-model ending at critic k."""
    groups: int | None = None
    """N of the local-critic split; null: the length of balance."""
    balance: Literal["uniform"] | tuple[int, ...] = "uniform"
    """uniform, or a list of blocks per group, as for local_critic."""
    critic_convs: int | tuple[int, ...] = 1
    """As for local_critic."""
    critic_blocks: int = 0
    """As for local_critic."""

    def validate(self):
        if self.sub_model < 1:
            raise ValueError(f"sub_model must be a positive integer, got {self.sub_model!r}")
        if self.groups is not None and self.groups < 1:
            raise ValueError(f"groups must be a positive integer or null, got {self.groups!r}")

    @property
    def num_groups(self) -> int | None:
        return self.groups if self.groups is not None else (
            None if isinstance(self.balance, str) else len(self.balance))


@register_algorithm("sub_model_backprop", SubModelBackpropSettings)
class SubModelBackprop(Backprop):
    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s, name = run.algorithm_settings, run.algorithm
        if run.gpus != 1:
            raise ConfigError(f"{name} trains by backprop on one worker; set gpus=1 (got gpus={run.gpus})")
        N = s.num_groups
        if N is None:
            raise ConfigError(f"{name}: set algorithm.groups (or a balance list) to the local-critic split "
                              f"whose sub-model it trains")
        check_split(name, s.balance, len(model.blocks), N, f"groups N={N}")
        if not s.sub_model <= N - 1:
            raise ConfigError(f"{name}: algorithm.sub_model={s.sub_model} must be in 1..{N - 1}: sub-model k "
                              f"ends at critic k, and N={N} groups have {N - 1}")
        check_critic_shape(run, model, N)

    def __init__(self, context: BuildContext[SubModelBackpropSettings]):
        s, model = context.settings, context.model
        split, _ = agreed_split(s.balance, model, context.example_inputs, s.num_groups)
        outputs = split.outputs(model, context.example_inputs)
        critics = make_critics(model, outputs, outputs[-1][0][-1], s.critic_convs, s.critic_blocks)
        self.end = split.blocks[s.sub_model - 1][-1] + 1  # blocks 0..end-1 are groups 1..k
        self.critic = critics[s.sub_model - 1].to(context.worker.device, context.worker.dtype)
        super().__init__(context, net=nn.Sequential(*model.blocks[:self.end], self.critic))
        self.owned_blocks = list(range(self.end))
        self.split = split

    def evaluate(self, batches) -> EvalTotals:
        totals = EvalTotals()
        with torch.no_grad(), eval_mode(self.net):
            for inputs, targets in batches:
                totals += self.model.eval_totals(self.net(inputs), targets)
        return totals

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {f"critics.{self.settings.sub_model - 1}.{name}": value for name, value in self.critic.state_dict().items()}

    def facts(self) -> dict:
        return {"sub_model": self.settings.sub_model, "groups": self.settings.num_groups,
                "blocks_per_group": list(self.split.sizes), "sub_models": [lc_rule_counts(self.net)]}
