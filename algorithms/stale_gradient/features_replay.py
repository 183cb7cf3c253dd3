"""`features_replay`: Training Neural Networks Using Features Replay (Huo, Gu, Huang; NeurIPS 2018,
arXiv 1807.04511).

DDG's schedule and delays (ddg.py) with semantics R: each module keeps only the input of each
batch it still owes a backward, and for that backward recomputes its forward at the current
weights, with the random state of the original forward (the same dropout masks), leaving the
BatchNorm statistics as the original forward set them (docs/algorithms/stale_gradient.md §2).
Memory: inputs instead of activation graphs, at the price of one more forward per module.
The released code doubles the bottom module's learning rate (not in the paper); we do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from algorithms.stale_gradient.family import StaleGradientSettings
from algorithms.stale_gradient.worker_loop import DecoupledBackprop
from mpbench.registry import register_algorithm


@dataclass(frozen=True)
class FeaturesReplaySettings(StaleGradientSettings):
    semantics: Literal["S", "H", "R"] = "R"
    """R: recompute each delayed batch from its stored input at the current weights (the paper's rule)."""


register_algorithm("features_replay", FeaturesReplaySettings)(DecoupledBackprop)
