"""Sub-models of a local-critic split: their size and cost (LC's Table 5), their accuracy,
progressive inference and ensembles (Table 6; docs/algorithms/local_learning.md §8-§9).

Sub-model k is groups 1..k and critic k. Its parameters and "FLOP" are counted by the paper's
rule: every trainable parameter once; 2 x the conv and FC weights (biases and BatchNorm
excluded), which is the paper's accounting, not a forward pass's real cost. At each evaluation of
a classifier, the critics' logits are gathered where the last group is, and give:

- `sub_model_accuracy`: each sub-model's held-out accuracy;
- `progressive_inference` at thresholds 0.9 and 0.95: exit at the first sub-model whose max
  softmax exceeds the threshold, else at the main model; accuracy, exits per model, and the mean
  cost counted for the exit model alone (Table 6) and cumulatively (every group and critic
  evaluated up to the exit);
- `ensemble_accuracy`: the sub-models' summed logits, and with the main model's.
"""

from __future__ import annotations

import torch
from torch import nn

from mpbench.blocks import EvalTotals
from mpbench.parallel.evaluation import forward_parts

EXIT_THRESHOLDS = (0.9, 0.95)  # the paper's Table 6


def count_parameters_lc_rule(module: nn.Module) -> int:
    """Table 5's "parameters": every trainable parameter (conv weights and biases, BN gamma and
    beta, FC weight and bias), each counted once. BN running statistics are buffers, not counted."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_flop_lc_rule(module: nn.Module) -> int:
    """Table 5's "FLOP": 2 x the number of conv and FC weights (biases and BN excluded)."""
    return 2 * sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def lc_rule_counts(module: nn.Module) -> dict:
    """Parameters and "FLOP" as LC's Table 5 counts them."""
    return {"parameters": count_parameters_lc_rule(module), "flop_lc_rule": count_flop_lc_rule(module)}


def exit_metrics(logits: list[torch.Tensor], labels: torch.Tensor, exit_cost: list[int],
                 cumulative_cost: list[int], thresholds=EXIT_THRESHOLDS) -> dict:
    """Held-out accuracy of each sub-model, progressive inference and ensembles.

    `logits` are those of sub-models 1..N-1 and, last, of the main model; `exit_cost[k]` and
    `cumulative_cost[k]` are the two costs of exiting at model k.
    """
    correct = [(z.argmax(dim=1) == labels).double() for z in logits]
    facts = {"sub_model_accuracy": [c.mean().item() for c in correct[:-1]], "progressive_inference": {}}
    confidence = torch.stack([z.softmax(dim=1).amax(dim=1) for z in logits[:-1]])  # (N-1, samples)
    for t in thresholds:
        confident = confidence > t
        exits = torch.where(confident.any(dim=0), confident.double().argmax(dim=0), len(logits) - 1)
        hit = torch.stack(correct).gather(0, exits[None]).squeeze(0)
        facts["progressive_inference"][str(t)] = {
            "accuracy": hit.mean().item(),
            "flop_exit_model": torch.tensor(exit_cost, dtype=torch.float64)[exits].mean().item(),
            "flop_cumulative": torch.tensor(cumulative_cost, dtype=torch.float64)[exits].mean().item(),
            "exits_per_model": torch.bincount(exits, minlength=len(logits)).tolist()}
    sub_sum = torch.stack(logits[:-1]).sum(dim=0)
    facts["ensemble_accuracy"] = {
        "sub_models": (sub_sum.argmax(dim=1) == labels).double().mean().item(),
        "sub_models_and_main": ((sub_sum + logits[-1]).argmax(dim=1) == labels).double().mean().item()}
    return facts


class SubModelExits:
    """Mixed in before `LocalLearning` by the methods whose local modules are classifiers
    (`local_critic`, `critic_training`, `dgl`): their counts in the facts, their exits at every
    evaluation of a classifier."""

    def __init__(self, context):
        super().__init__(context)
        model, critics, blocks, N = self.model, self.all_local_modules, self.split.blocks, self.N
        self.sub_models = [lc_rule_counts(nn.ModuleList([*model.blocks[:blocks[k][-1] + 1], critics[k]]))
                           for k in range(N - 1)]
        self.main_model = lc_rule_counts(model)
        group_flop = [count_flop_lc_rule(nn.ModuleList([model.blocks[b] for b in bs])) for bs in blocks]
        critic_flop = [count_flop_lc_rule(c) for c in critics]
        self.exit_cost = [m["flop_lc_rule"] for m in self.sub_models] + [self.main_model["flop_lc_rule"]]
        self.cumulative_cost = [sum(group_flop[:k + 1]) + sum(critic_flop[:k + 1]) for k in range(N - 1)]
        self.cumulative_cost.append(sum(group_flop) + sum(critic_flop))
        self.exit_facts: dict = {}

    def evaluate(self, batches) -> EvalTotals:
        if self.model.task != "classification" or self.N == 1:
            return super().evaluate(batches)
        # One pass gives the main model's totals and every sub-model's logits, on the last group's worker.
        outputs = list(forward_parts(self.groups, self.owner, self.N, batches, self.worker.transport,
                                     heads=self.local_modules, headed=range(self.N - 1)))
        if outputs[0] is None:  # not the last group's worker: the trainer sums the totals
            return EvalTotals()
        logits = [torch.cat([batch[k] for batch in outputs]) for k in range(self.N)]
        labels = torch.cat([y for _, y in batches])
        self.exit_facts = exit_metrics(logits, labels, self.exit_cost, self.cumulative_cost)
        return self.model.eval_totals(logits[-1], labels)

    def facts(self) -> dict:
        return {**super().facts(), "sub_models": self.sub_models, "main_model": self.main_model, **self.exit_facts}
