"""Where to cut a model: block counts per stage, uniform, explicit, or balanced by measured cost.

`balance=profile` times each block's forward and backward once on one worker and picks the
contiguous split that minimises the slowest worker (the pipeline's critical path). With one part
per worker that is `split_minimising_max`; a placement that puts several parts on one worker
brings its own rule (Ouroboros' ring: algorithms/stale_gradient/placement.py).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from mpbench.blocks import BlockModel, partition
from mpbench.errors import ConfigError
from mpbench.parallel.split import Split


def check_split(algorithm: str, balance, num_blocks: int, parts: int, context: str) -> None:
    """ConfigError (one line, naming `algorithm` and `context`) if `num_blocks` blocks cannot be
    cut into `parts` parts as `balance` asks."""
    try:
        partition(num_blocks, parts, None if isinstance(balance, str) else list(balance))
    except ValueError as err:
        key = "" if isinstance(balance, str) else f"balance={list(balance)}: "
        raise ConfigError(f"{algorithm}: {key}{err} ({context})") from None


def block_costs(model: BlockModel, sample: torch.Tensor, repeats: int = 3) -> list[float]:
    """Seconds of forward + backward of each block on `sample` (median of `repeats`).

    Each block is timed on its own input, detached, so a block's time does not include the
    blocks after it (the simulator's profiler, mpbench/simulate/costs.py, without a loss or an
    optimizer). Gradients left by the measurement are cleared.
    """
    from mpbench.simulate.costs import Profiler

    profile = Profiler(model, sample, targets=None, make_optimizer=None, repeats=repeats)
    return [c.forward_s + c.backward_s for c in profile.blocks(len(sample))]


def split_minimising_max(costs: list[float], parts: int) -> list[int]:
    """Block counts of the contiguous split of `costs` into `parts` whose costliest part is cheapest.

    Dynamic programming over (blocks used, parts used); ties keep earlier parts smaller.
    """
    n = len(costs)
    partition(n, parts)  # the same errors as any other split (more parts than blocks)
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    best = [[inf] * (parts + 1) for _ in range(n + 1)]  # best[i][k]: first i blocks in k parts
    cut = [[0] * (parts + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for k in range(1, parts + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):  # the last part holds blocks j..i-1
                candidate = max(best[j][k - 1], prefix[i] - prefix[j])
                if candidate < best[i][k]:
                    best[i][k], cut[i][k] = candidate, j
    sizes, i = [], n
    for k in range(parts, 0, -1):
        j = cut[i][k]
        sizes.append(i - j)
        i = j
    return sizes[::-1]


def stage_sizes(balance, num_blocks: int, stages: int, profile=None, split=split_minimising_max) -> list[int]:
    """Blocks per stage for `balance`: "uniform", "profile" (calls `profile()` for the block
    costs and cuts them with `split`) or an explicit list of block counts."""
    if balance == "uniform":
        return [len(r) for r in partition(num_blocks, stages)]
    if balance == "profile":
        return split(profile(), stages)
    return [len(r) for r in partition(num_blocks, stages, list(balance))]


def agreed_split(balance, model: BlockModel, sample: torch.Tensor, parts: int,
                 split=split_minimising_max) -> tuple[Split, list[float] | None]:
    """The split, identical on every worker, and the profiled block seconds (or None).

    With balance=profile, worker 0 times the blocks on `sample` and broadcasts its split, since
    timings differ from worker to worker and every worker must cut the model the same way.
    """
    if balance != "profile":
        return Split(tuple(stage_sizes(balance, len(model.blocks), parts))), None
    distributed = dist.is_initialized() and dist.get_world_size() > 1
    chosen: list = [None, None]
    if not distributed or dist.get_rank() == 0:
        costs = block_costs(model, sample)
        chosen = [split(costs, parts), costs]
    if distributed:
        dist.broadcast_object_list(chosen, src=0)
    return Split(tuple(chosen[0])), chosen[1]
