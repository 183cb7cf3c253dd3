"""The contract between a dataset and the trainer.

Every algorithm and every worker count must see the same global batch at the same step, so
that runs are comparable step by step and equivalence tests can compare parameters. A dataset
therefore produces batch `step` as a pure function of (seed, step); a worker asks only for its
rows of that global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to be built."""

    name: str
    task: str  # "lm" or "classification"
    input_shape: tuple[int, ...]  # one sample: (seq_len,) for text, (C, H, W) for images
    vocab_size: int | None = None  # language models
    num_classes: int | None = None  # classifiers
    unit: str = "sample"  # what one predicted item is: "char", "word" or "sample"
    train_samples: int | None = None  # distinct training samples (images, or text windows); None: unknown


class Dataset(Protocol):
    info: DataInfo

    def train_batch(self, step: int, batch_size: int,
                    rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `rows` of global training batch `step` (all rows when None), as (input, target).

        Deterministic in (seed, step): the same for every algorithm and worker count. Random
        augmentation is drawn for the whole global batch and then sliced, so shards agree.
        """

    def eval_batches(self, batch_size: int, max_batches: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out batches in a fixed order (at most `max_batches`; all when None)."""
