"""Where the K modules of the stale-gradient family live (docs/algorithms/stale_gradient.md §3).

- linear (DDG, Features Replay): module k on worker k, K workers;
- ring (Ouroboros, Yang et al. 2019, Fig. 2): K modules on K-1 workers; the first and the last
  module share worker 1, so a model whose input embedding is its output projection (GPT's tied
  V) holds that tensor once, and its two gradient parts are added on one worker.

Modules are numbered from 0 here. `balance=profile` cuts the blocks so that the slowest worker is
as fast as it can be; on the ring the first and last modules' costs add up on their worker.
"""

from __future__ import annotations

import itertools

from mpbench.blocks import partition
from mpbench.parallel.balance import split_minimising_max


class Linear:
    name = "linear"

    @staticmethod
    def module_count(gpus: int) -> int:
        return gpus

    @staticmethod
    def workers(num_modules: int) -> int:
        return num_modules

    @staticmethod
    def owner(k: int, num_modules: int) -> int:
        return k

    split = staticmethod(split_minimising_max)


class Ring:
    name = "ring"

    @staticmethod
    def module_count(gpus: int) -> int:
        return gpus + 1

    @staticmethod
    def workers(num_modules: int) -> int:
        return num_modules - 1

    @staticmethod
    def owner(k: int, num_modules: int) -> int:
        return 0 if k in (0, num_modules - 1) else k

    @staticmethod
    def split(costs: list[float], parts: int) -> list[int]:
        """Like `split_minimising_max`, but parts 1 and `parts` share one worker, so their costs
        add; every other part has a worker of its own. Tries every size of the first and last
        part and splits the middle optimally. With two parts both sit on one worker and any split
        costs the same: the even one is returned."""
        n = len(costs)
        partition(n, parts)  # the same errors as any other split
        if parts <= 2:
            return [len(r) for r in partition(n, parts)]
        best, best_sizes = float("inf"), None
        for first in range(1, n - parts + 2):
            for last in range(1, n - first - (parts - 2) + 1):
                middle = costs[first:n - last]
                sizes = split_minimising_max(middle, parts - 2)
                bounds = [0, *itertools.accumulate(sizes)]
                slowest = max(sum(costs[:first]) + sum(costs[n - last:]),
                              *(sum(middle[a:b]) for a, b in zip(bounds, bounds[1:])))
                if slowest < best:
                    best, best_sizes = slowest, [first, *sizes, last]
        return best_sizes


PLACEMENTS = {"linear": Linear, "ring": Ring}


def module_count(placement: str, modules: int | None, gpus: int) -> int:
    """K: `modules` if set, else one module per worker (linear) or one more (ring)."""
    return modules if modules is not None else PLACEMENTS[placement].module_count(gpus)
