"""Choosing where to cut: the profile-balanced split minimises the slowest stage."""

from __future__ import annotations

import itertools

import pytest
import torch

from algorithms.stale_gradient.placement import Ring
from models import build_model
from models.mlp import MLPSettings
from mpbench.data.base import DataInfo
from mpbench.parallel.balance import block_costs, split_minimising_max, stage_sizes

ring_split_minimising_max = Ring.split


def brute_force(costs, parts):
    n = len(costs)
    best = None
    for cuts in itertools.combinations(range(1, n), parts - 1):
        bounds = (0, *cuts, n)
        worst = max(sum(costs[a:b]) for a, b in zip(bounds, bounds[1:]))
        if best is None or worst < best:
            best = worst
    return best


@pytest.mark.parametrize("costs,parts", [([1, 1, 1, 10], 2), ([5, 1, 1, 1, 1, 1], 2), ([3, 1, 4, 1, 5, 9, 2, 6], 3),
                                         ([1] * 7, 7), ([2, 2, 2, 2], 1)])
def test_split_is_optimal(costs, parts):
    sizes = split_minimising_max(costs, parts)
    assert len(sizes) == parts and sum(sizes) == len(costs) and min(sizes) >= 1
    bounds = [0, *itertools.accumulate(sizes)]
    assert max(sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])) == brute_force(costs, parts)


def ring_brute_force(costs, parts):
    """Every split into `parts` with the first and last part on one worker: the slowest worker."""
    n = len(costs)
    best = None
    for cuts in itertools.combinations(range(1, n), parts - 1):
        bounds = (0, *cuts, n)
        loads = [sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])]
        worst = max(loads[0] + loads[-1], *loads[1:-1]) if parts > 2 else sum(costs)
        best = worst if best is None else min(best, worst)
    return best


@pytest.mark.parametrize("costs,parts", [([1, 1, 1, 1, 1, 1], 3), ([5, 1, 1, 1, 1, 5], 3), ([3, 1, 4, 1, 5, 9, 2, 6], 4),
                                         ([2, 7, 1, 8, 2, 8], 5), ([1, 2, 3], 2)])
def test_ring_split_counts_the_shared_worker_once(costs, parts):
    sizes = ring_split_minimising_max(costs, parts)
    assert len(sizes) == parts and sum(sizes) == len(costs) and min(sizes) >= 1
    bounds = [0, *itertools.accumulate(sizes)]
    loads = [sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])]
    worst = max(loads[0] + loads[-1], *loads[1:-1]) if parts > 2 else sum(costs)
    assert worst == ring_brute_force(costs, parts)


def test_ring_split_gives_the_shared_worker_fewer_blocks():
    # Six equal blocks on two workers (K=3): the worker with modules 1 and 3 takes three blocks.
    sizes = ring_split_minimising_max([1.0] * 6, 3)
    assert sizes[0] + sizes[2] == 3 and sizes[1] == 3


def test_expensive_last_block_gets_a_stage_of_its_own():
    assert split_minimising_max([1, 1, 1, 10], 2) == [3, 1]


def test_sizes_uniform_explicit_and_errors():
    assert stage_sizes("uniform", 5, 2) == [3, 2]
    assert stage_sizes((1, 4), 5, 2) == [1, 4]
    assert stage_sizes("profile", 4, 2, lambda: [1.0, 1.0, 1.0, 10.0]) == [3, 1]
    with pytest.raises(ValueError, match="at most 3 parts"):
        split_minimising_max([1, 1, 1], 4)


def test_block_costs_times_every_block_and_leaves_no_gradient():
    data = DataInfo("toy", "classification", (1, 8, 8), num_classes=10)
    model = build_model("mlp", MLPSettings(hidden=(256, 8)), data)
    costs = block_costs(model, torch.randn(16, 1, 8, 8))
    assert len(costs) == 3 and all(c > 0 for c in costs)
    assert all(p.grad is None for p in model.parameters())
