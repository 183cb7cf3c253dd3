"""What every model in mpbench is: an ordered list of blocks, and where an algorithm may cut it.

A model-parallel algorithm needs four facts about a network and nothing else: the blocks in
forward order (so that it can cut between any two of them), which parameters are shared between
blocks (a tied embedding must be kept identical on every worker that holds a copy), how the last
block's output is scored against the target, and, for the local-learning family, how to build a
small head on a block's output (`LocalHeads`). `BlockModel` carries exactly these. It is the
contract between the core and the model zoo in `models/`, and what a user's own model becomes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TiedParameter:
    """One tensor used by several blocks, e.g. GPT's token embedding reused as output projection.

    `uses` lists (block index, parameter name inside that block). In the single-process model all
    uses are the same `nn.Parameter`; an algorithm that places those blocks on different workers
    must keep one copy per worker and sum the gradient contributions.
    """

    name: str
    uses: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class EvalTotals:
    """Sums over evaluated items, so that totals from several batches or workers simply add."""

    loss_sum: float = 0.0
    items: int = 0  # tokens for a language model, samples for a classifier
    correct: int = 0

    def __add__(self, other: EvalTotals) -> EvalTotals:
        return EvalTotals(self.loss_sum + other.loss_sum, self.items + other.items,
                          self.correct + other.correct)


class LocalHeads(Protocol):
    """How a model builds small heads on a block's output, for the local-learning family."""

    holds_blocks: bool  # whether `critic(..., blocks > 0)` can put the model's own kind of block in a head

    def critic(self, shape: torch.Size, outputs: int, convs: int = 1, blocks: int = 0) -> nn.Module:
        """A classifier of a boundary tensor of `shape` (batch first) into `outputs` logits."""

    def synthesizer(self, shape: torch.Size, classes: int, conditioned: bool, width: int) -> nn.Module:
        """A module predicting a tensor of `shape` from one of that shape (and the labels)."""


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """Put `modules` in eval mode (no dropout, BatchNorm's running statistics) for the block,
    and give each its own mode back afterwards."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class BlockModel(nn.Module):
    """A network as `blocks[0] -> blocks[1] -> ... -> blocks[-1]`, plus its loss.

    `task` is "lm" (output B x T x V logits, target B x T token ids) or "classification"
    (output B x C logits, target B class ids). The loss is the mean cross-entropy over all
    predicted items, so that splitting a batch into equal shards and averaging the shard losses
    gives the same value and gradient. `heads` builds local heads (None: the model offers none).
    """

    def __init__(self, blocks: list[nn.Module], task: str, ties: tuple[TiedParameter, ...] = (),
                 heads: LocalHeads | None = None):
        super().__init__()
        if task not in ("lm", "classification"):
            raise ValueError(f"task must be 'lm' or 'classification', got {task!r}")
        self.blocks = nn.ModuleList(blocks)
        self.task = task
        self.ties = ties
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every predicted item (token or sample)."""
        return F.cross_entropy(output.reshape(-1, output.size(-1)), target.reshape(-1))

    @torch.no_grad()
    def evaluate(self, batches) -> EvalTotals:
        """Totals over `batches` of (input, target) in eval mode."""
        totals = EvalTotals()
        with eval_mode(self):
            for inputs, targets in batches:
                totals += self.eval_totals(self(inputs), targets)
        return totals

    @torch.no_grad()
    def eval_totals(self, output: torch.Tensor, target: torch.Tensor) -> EvalTotals:
        logits = output.reshape(-1, output.size(-1))
        labels = target.reshape(-1)
        loss_sum = F.cross_entropy(logits, labels, reduction="sum").item()
        correct = (logits.argmax(dim=-1) == labels).sum().item()
        return EvalTotals(loss_sum, labels.numel(), int(correct))

    def describe(self) -> dict:
        """Summary for run records: unique parameter count (a tied tensor once), blocks, per-block
        counts (a tied tensor in each block that uses it, so they may sum to more), ties."""
        return {
            "task": self.task,
            "blocks": len(self.blocks),
            "parameters": sum(p.numel() for p in self.parameters()),  # parameters() deduplicates
            "block_parameters": [sum(p.numel() for p in block.parameters()) for block in self.blocks],
            "tied": [tie.name for tie in self.ties],
        }


@torch.no_grad()
def block_output_shapes(model: BlockModel, example: torch.Tensor) -> list[tuple[torch.Size, torch.dtype]]:
    """Shape and dtype of every block's output for the batch `example` (a forward without grad,
    in eval mode: no dropout draws, no BatchNorm statistics), e.g. to size messages and heads."""
    shapes, x = [], example
    with eval_mode(model):
        for block in model.blocks:
            x = block(x)
            shapes.append((x.shape, x.dtype))
    return shapes


def partition(num_blocks: int, parts: int, sizes: list[int] | None = None) -> list[range]:
    """Split block indices 0..num_blocks-1 into `parts` consecutive, non-empty ranges.

    Without `sizes` the split is as even as block counts allow (earlier parts get the extra
    block). With `sizes`, part i gets sizes[i] blocks; they must be positive and sum to
    num_blocks.
    """
    if parts < 1:
        raise ValueError(f"the number of parts must be at least 1, got {parts}")
    if parts > num_blocks:
        raise ValueError(
            f"cannot split a model of {num_blocks} blocks into {parts} parts: "
            f"at most {num_blocks} parts (one block each)")
    if sizes is None:
        base, extra = divmod(num_blocks, parts)
        sizes = [base + (1 if i < extra else 0) for i in range(parts)]
    if len(sizes) != parts or any(s < 1 for s in sizes) or sum(sizes) != num_blocks:
        raise ValueError(
            f"block counts {sizes} must be {parts} positive numbers summing to {num_blocks}")
    ranges, start = [], 0
    for size in sizes:
        ranges.append(range(start, start + size))
        start += size
    return ranges
