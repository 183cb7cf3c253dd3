"""The model's blocks cut into consecutive parts, and what a worker holding some of them owns.

Every split-model algorithm cuts the same way: pipeline stages, stale-gradient modules and
local-learning groups are all runs of consecutive blocks (`balance.py` chooses the sizes). A
worker's share of the model is named as in the whole model's state_dict ("blocks.3.attn.qkv.weight"),
so records and equivalence tests compare any placement with `backprop` key by key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from mpbench.blocks import BlockModel, block_output_shapes
from mpbench.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Blocks per part, in forward order; part p holds `blocks[p]`."""

    sizes: tuple[int, ...]

    @property
    def blocks(self) -> list[range]:
        starts = [sum(self.sizes[:p]) for p in range(len(self.sizes))]
        return [range(start, start + size) for start, size in zip(starts, self.sizes)]

    def part_of_block(self) -> dict[int, int]:
        return {b: p for p, blocks in enumerate(self.blocks) for b in blocks}

    def module(self, model: BlockModel, part: int) -> nn.Sequential:
        """Part `part` of `model` as one module (sharing the model's blocks)."""
        return nn.Sequential(*(model.blocks[b] for b in self.blocks[part]))

    def outputs(self, model: BlockModel, example: torch.Tensor) -> list[tuple[torch.Size, torch.dtype]]:
        """Shape and dtype of each part's output for the batch `example`: the messages a boundary carries."""
        shapes = block_output_shapes(model, example)
        return [shapes[blocks[-1]] for blocks in self.blocks]


def owned_state(model: BlockModel, blocks: Iterable[int]) -> dict[str, torch.Tensor]:
    """Parameters and buffers of `blocks`, named as in `model.state_dict()`."""
    return {f"blocks.{b}.{name}": value for b in blocks for name, value in model.blocks[b].state_dict().items()}


def check_runtime(algorithm: str, runtime: str, gpus: int, workers: int, parts: str, why: str) -> None:
    """ConfigError (one line) unless the runtime fits the workers: `emulated` runs every part in
    one process (gpus=1); `distributed` needs exactly `workers` workers for `parts` (e.g.
    "algorithm.modules=3 with placement=linear"), `why` saying the rule."""
    if runtime == "emulated" and gpus != 1:
        raise ConfigError(f"{algorithm}: runtime=emulated runs in one process; set gpus=1 and choose the parts "
                          f"with {parts.split('=')[0]} (got gpus={gpus})")
    if runtime == "distributed" and workers != gpus:
        raise ConfigError(f"{algorithm}: {parts} needs gpus={workers} ({why}), got gpus={gpus}; "
                          f"or use algorithm.runtime=emulated")
