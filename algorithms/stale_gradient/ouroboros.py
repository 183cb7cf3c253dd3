"""`ouroboros`: Ouroboros: On Accelerating Training of Transformer-Based Language Models (Yang,
Huo, Zhang, Huang, Zhang, Chen; NeurIPS 2019, arXiv 1909.13341).

DDG's update rule (ddg.py) on a ring: K modules on K-1 workers, module k on worker k for
k = 2..K-1 and modules 1 and K together on worker 1 (placement.py, `Ring`;
docs/algorithms/stale_gradient.md §3). A language model's input embedding is its output
projection (the tied V), so worker 1 holds V once, with one optimizer state, and updates it per
iteration with the sum of its two parts, each of its own age:

    g_V^t = (output-projection part of batch t, at w^t) + (input-lookup part of batch t-K+1, at w^{t-K+1})

No label or V transfer crosses the ring. Per iteration worker 1 runs F1(t), B1(t-K+1), FK(t),
BK(t) (worker_loop.py): module 1's delayed backward fills the time the middle modules take.
`gpus=1` is K=2 on one worker. Ouroboros reports no tables (NOT FOUND in the spec); clipping and
warm-up are our choices (§7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from algorithms.stale_gradient.family import StaleGradientSettings
from algorithms.stale_gradient.worker_loop import DecoupledBackprop
from mpbench.registry import register_algorithm


@dataclass(frozen=True)
class OuroborosSettings(StaleGradientSettings):
    placement: Literal["linear", "ring"] = "ring"
    """ring: K modules on K-1 workers, modules 1 and K on worker 1, which holds the tied embedding once."""


register_algorithm("ouroboros", OuroborosSettings)(DecoupledBackprop)
