"""Tensors tied across the parts of a split model, kept identical on every worker holding a copy.

A model may use one tensor in several blocks (GPT's token embedding is also its output
projection; `BlockModel.ties` declares it). Cut into parts (pipeline stages, stale-gradient
modules, local-learning groups), each part that uses the tensor computes a part of its gradient.
The tensor's update takes the sum of the parts. When the parts sit on different workers, each of
those workers keeps a copy; every worker sends its part to the others the moment autograd has it
(so a peer waits as little as possible) and adds all parts in one fixed order, descending part
index, so that the copies take bit-identical steps. On one worker the parts are summed the same way.

Placements keep a tied tensor's uses one part per worker, or all parts on one worker (so does
Ouroboros' ring); a worker holding several parts of a tensor that others also hold is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from mpbench.blocks import BlockModel
from mpbench.parallel.channels import Channel


@dataclass
class TiedTensor:
    """One tied tensor as seen from one worker."""

    name: str
    tensor: nn.Parameter  # this worker's copy
    parts: tuple[int, ...]  # every part using it, on any worker
    parts_here: tuple[int, ...]
    outgoing: list[Channel] = field(default_factory=list)  # to each other worker with a copy
    incoming: dict[int, Channel] = field(default_factory=dict)  # a remote part -> where it arrives

    def send(self, grad: torch.Tensor) -> None:
        """Give this worker's part to every other worker holding a copy."""
        for channel in self.outgoing:
            channel.put(grad)


def sum_in_part_order(parts: dict[int, torch.Tensor]) -> torch.Tensor:
    """The parts added in descending part index, into a new tensor (never an alias of a part
    that may still be in flight): the same bits on every worker that adds the same parts."""
    order = sorted(parts, reverse=True)
    total = parts[order[0]].clone()
    for part in order[1:]:
        total += parts[part]
    return total


class TieExchange:
    """The tied tensors of `model` that span several parts, for the worker `me`.

    `part_of_block[b]` is the part holding block b, `owner(part)` the worker holding a part, and
    `connect(src, dst, tag, shape, dtype)` makes the channel between two workers
    (`channels.channel_between`). Tensors used by one part only are that part's own parameters.
    """

    def __init__(self, model: BlockModel, part_of_block: dict[int, int], owner: Callable[[int], int], me: int,
                 connect: Callable[..., Channel | None], first_tag: int):
        self.tensors: list[TiedTensor] = []
        for index, tie in enumerate(model.ties):
            parts = tuple(sorted({part_of_block[b] for b, _ in tie.uses}))
            here = tuple(p for p in parts if owner(p) == me)
            if len(parts) < 2 or not here:
                continue
            block, name = next((b, n) for b, n in tie.uses if owner(part_of_block[b]) == me)
            entry = TiedTensor(tie.name, model.blocks[block].get_parameter(name), parts, here)
            peers = sorted({owner(p) for p in parts} - {me})
            if peers and len(here) > 1:
                raise ValueError(f"tied tensor {tie.name}: worker {me} holds parts {list(here)} of it while "
                                 f"workers {peers} hold others; a placement must keep its uses one part per "
                                 f"worker or all on one worker")
            tag, shape = first_tag + index, entry.tensor.shape
            for peer in peers:
                entry.outgoing.append(connect(me, peer, tag, shape, entry.tensor.dtype))
                channel = connect(peer, me, tag, shape, entry.tensor.dtype)
                entry.incoming.update({p: channel for p in parts if owner(p) == peer})
            self.tensors.append(entry)

    def __iter__(self):
        return iter(self.tensors)

    def is_tied(self, tensor: torch.Tensor) -> bool:
        return any(t.tensor is tensor for t in self.tensors)

    @staticmethod
    def total(tied: TiedTensor, parts_here: dict[int, torch.Tensor],
              arriving: Iterable[int] | None = None) -> torch.Tensor | None:
        """`tied`'s gradient: the parts computed here plus those of the `arriving` remote parts
        (default: every remote part), summed in part order; None if there is no part at all."""
        parts = dict(parts_here)
        for part in (tied.incoming if arriving is None else arriving):
            parts[part] = tied.incoming[part].take()
        return sum_in_part_order(parts) if parts else None
