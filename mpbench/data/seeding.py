"""Random generators that are pure functions of (seed, stream, index).

Batch `step` must be the same for every algorithm and worker count, so no dataset keeps a
running random state: each draw gets a fresh `torch.Generator` whose seed is derived from the
run seed, what the draw is for (the stream) and the step or epoch it belongs to (the index).

Why not `seed * 1_000_003 + step`: that formula collides (seed 0, step 1_000_003 is seed 1,
step 0) and gives the shuffle of epoch e and the augmentation of step e the same seed.
NumPy's SeedSequence hashes the three integers together, so distinct triples give unrelated
64-bit seeds, and the result depends on nothing but the triple (no process or platform state).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    """What a random draw is for; part of its seed so that different draws never share one."""

    TEXT_WINDOWS = 1  # window start offsets of a language-model training batch (index: step)
    IMAGE_ORDER = 2  # the sample permutation of one image epoch (index: epoch)
    IMAGE_AUGMENT = 3  # crop offsets and flips of one image training batch (index: step)
    EVAL_ORDER = 4  # the fixed order of an image test set (seed 0 always: every run sees one set)


def derive_seed(seed: int, stream: Stream, index: int) -> int:
    """The 64-bit generator seed for draw `index` of `stream` in a run seeded with `seed`."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative integers, got seed={seed}, index={index}")
    low, high = np.random.SeedSequence([seed, int(stream), index]).generate_state(2, dtype=np.uint32)
    return int(low) | (int(high) << 32)


def generator_for(seed: int, stream: Stream, index: int) -> torch.Generator:
    """A CPU torch.Generator seeded with `derive_seed(seed, stream, index)`."""
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, stream, index))
    return generator
