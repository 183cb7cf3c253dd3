"""`ddg`: Decoupled Parallel Backpropagation with Convergence Guarantee (Huo, Gu, Yang, Huang;
ICML 2018, arXiv 1804.10574).

K modules on K workers, module k on worker k (the linear placement). Module k applies at iteration
t the gradient of the batch of iteration t-K+k, taken at the weights of that iteration (DDG eq. 3,
1-based k; docs/algorithms/stale_gradient.md §1):

    g_k^t = grad_{w_k} f_{x(t-K+k)}(w^{t-K+k}),    w_k^{t+1} = w_k^t - lr(t) * g_k^t

so no module waits for the error of the batch it has just forwarded. The default semantics S
stashes the weights each forward used, which makes this formula exact; `semantics=H` is what the
authors' code computes (§2). The loop is worker_loop.py; the one-process emulation gradient_fifo.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from algorithms.stale_gradient.family import StaleGradientSettings
from algorithms.stale_gradient.worker_loop import DecoupledBackprop
from mpbench.registry import register_algorithm


@dataclass(frozen=True)
class DDGSettings(StaleGradientSettings):
    """DDG: linear placement, exact stale gradients (the family's defaults)."""


register_algorithm("ddg", DDGSettings)(DecoupledBackprop)
