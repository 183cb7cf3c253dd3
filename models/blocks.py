"""What every model in mpbench is: an ordered list of blocks, and where an algorithm may cut it.

A model-parallel algorithm needs three facts about a network and nothing else: the blocks in
forward order (so that it can cut between any two of them), which parameters are shared between
blocks (a tied embedding must be kept identical on every worker that holds a copy), and how the
last block's output is scored against the target. `BlockModel` carries exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass

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


class BlockModel(nn.Module):
    """A network as `blocks[0] -> blocks[1] -> ... -> blocks[-1]`, plus its loss.

    `task` is "lm" (output B x T x V logits, target B x T token ids) or "classification"
    (output B x C logits, target B class ids). The loss is the mean cross-entropy over all
    predicted items, so that splitting a batch into equal shards and averaging the shard losses
    gives the same value and gradient.
    """

    def __init__(self, blocks: list[nn.Module], task: str, ties: tuple[TiedParameter, ...] = ()):
        super().__init__()
        if task not in ("lm", "classification"):
            raise ValueError(f"task must be 'lm' or 'classification', got {task!r}")
        self.blocks = nn.ModuleList(blocks)
        self.task = task
        self.ties = ties

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every predicted item (token or sample)."""
        return F.cross_entropy(output.reshape(-1, output.size(-1)), target.reshape(-1))

    @torch.no_grad()
    def evaluate(self, batches) -> EvalTotals:
        """Totals over `batches` of (input, target) in eval mode; training mode is restored."""
        was_training = self.training
        self.eval()
        totals = EvalTotals()
        for inputs, targets in batches:
            totals += self.eval_totals(self(inputs), targets)
        self.train(was_training)
        return totals

    @torch.no_grad()
    def eval_totals(self, output: torch.Tensor, target: torch.Tensor) -> EvalTotals:
        logits = output.reshape(-1, output.size(-1))
        labels = target.reshape(-1)
        loss_sum = F.cross_entropy(logits, labels, reduction="sum").item()
        correct = (logits.argmax(dim=-1) == labels).sum().item()
        return EvalTotals(loss_sum, labels.numel(), int(correct))


@torch.no_grad()
def block_output_shapes(model: BlockModel, example: torch.Tensor) -> list[tuple[torch.Size, torch.dtype]]:
    """Shape and dtype of every block's output for the batch `example` (a forward without grad,
    in eval mode: no dropout draws, no BatchNorm statistics), e.g. to size messages and heads."""
    was_training = model.training
    model.eval()
    shapes, x = [], example
    for block in model.blocks:
        x = block(x)
        shapes.append((x.shape, x.dtype))
    model.train(was_training)
    return shapes


def require_images(model_name: str, data) -> None:
    """Image classifiers need (C, H, W) samples and a class count; say so in one line otherwise."""
    if data.task != "classification":
        raise ValueError(f"model {model_name} needs a classification dataset; {data.name} is a {data.task} dataset")
    if len(data.input_shape) != 3 or not data.num_classes:
        raise ValueError(f"model {model_name} needs images (C, H, W) and a class count; {data.name} has "
                         f"input shape {data.input_shape} and {data.num_classes} classes")


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
