"""What the members of the stale-gradient family share: their settings, their checks, the cut into
K modules and the facts they record. Two engines run the family's update rule (§1):
`worker_loop.DecoupledBackprop`, the workers (and, with every module on one worker, the emulation
of H and R), and `gradient_fifo.GradientFifo`, the one-process emulation of S (§5).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal

import torch

from algorithms.stale_gradient.delayed_module import delay_of_module
from algorithms.stale_gradient.placement import PLACEMENTS, module_count
from mpbench.algorithm import Algorithm, BuildContext
from mpbench.blocks import BlockModel
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.parallel.balance import agreed_split, check_split
from mpbench.optim import make_optimizer
from mpbench.parallel.split import check_runtime
from mpbench.settings import Settings


@dataclass(frozen=True)
class StaleGradientSettings(Settings):
    placement: Literal["linear", "ring"] = "linear"
    """linear: module k on worker k; ring: K modules on K-1 workers, modules 1 and K on worker 1 (Ouroboros)."""
    semantics: Literal["S", "H", "R"] = "S"
    """What a delayed backward differentiates: S stashed weights (the exact stale gradient), H the stored graph at the current weights, R replay from the stored input."""
    modules: int | None = None
    """K, the number of modules; null: gpus (linear) or gpus + 1 (ring)."""
    balance: Literal["uniform", "profile"] | tuple[int, ...] = "uniform"
    """Blocks per module: uniform, profile (worker 0 times the blocks; the slowest worker minimised) or a list."""
    runtime: Literal["distributed", "emulated"] = "distributed"
    """distributed: the workers; emulated: the same updates in one process (gpus=1, K from modules)."""

    def validate(self):
        if self.modules is not None and self.modules < 1:
            raise ValueError(f"modules must be a positive integer or null, got {self.modules!r}")

    def optimizer_rule(self) -> Callable[[list, OptimizerSpec], torch.optim.Optimizer]:
        """What each module's optimizer is: the run's (`optimizer`), unless a member has its own rule."""
        return make_optimizer


class StaleGradientFamily(Algorithm[StaleGradientSettings]):
    """The checks and the split common to both engines."""

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s, name = run.algorithm_settings, run.algorithm
        K = module_count(s.placement, s.modules, run.gpus)
        placement = PLACEMENTS[s.placement]
        why = "K-1 workers for K modules (ring)" if s.placement == "ring" else "one worker per module"
        check_runtime(name, s.runtime, run.gpus, placement.workers(K),
                      f"algorithm.modules={K} with placement={s.placement}", why)
        if s.placement == "ring" and K < 2:
            raise ConfigError(f"{name}: placement=ring needs at least 2 modules, got modules={K}")
        check_split(name, s.balance, len(model.blocks), K, f"modules K={K}")

    @classmethod
    def checkpoint_gap(cls, settings: StaleGradientSettings) -> str | None:
        if settings.semantics == "H":
            return "semantics H keeps graphs whose activations came from weights it no longer holds"
        return None

    def __init__(self, context: BuildContext[StaleGradientSettings]):
        super().__init__(context)
        s = self.settings
        self.placement = PLACEMENTS[s.placement]
        self.K = module_count(s.placement, s.modules, self.worker.world_size)
        # balance=profile: costs on a quarter of a batch (they scale with rows), cut for the placement
        rows = context.example_inputs[:max(1, len(context.example_inputs) // 4)]
        self.split, self.profile = agreed_split(s.balance, self.model, rows, self.K, self.placement.split)

    def facts(self) -> dict:
        s = self.settings
        facts = {"placement": s.placement, "semantics": s.semantics, "runtime": s.runtime,
                 "modules": self.K, "blocks_per_module": list(self.split.sizes),
                 "delay_of_module": [delay_of_module(k, self.K) for k in range(self.K)]}
        if self.profile is not None:
            facts["profiled_block_seconds"] = self.profile
        return facts
