"""The interface every training algorithm implements.

The trainer (`mpbench.trainer`) owns everything common to all methods: the batches, the LR
schedule, evaluation, metrics, checkpoints and records. An algorithm owns two things:

1. placement: which blocks of the model live on this worker, chosen in `__init__` (and named in
   `owned_blocks`, so that `model_state` needs no code of its own);
2. one training iteration on this worker: `train_step`.

An algorithm is one module under `algorithms/` that subclasses `Algorithm` and registers itself
(`mpbench.registry.register_algorithm`), plus one YAML file under `experiments/algorithm/`. The
trainer never branches on an algorithm's name. docs/extending.md walks through one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch

from mpbench.blocks import BlockModel, EvalTotals
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.parallel.clock import IterationClock
from mpbench.parallel.split import owned_state
from mpbench.settings import Settings
from mpbench.transport import Transport


@dataclass(frozen=True)
class NoSettings(Settings):
    """For algorithms without settings of their own."""


@dataclass
class Worker:
    """What an algorithm knows about the worker it runs on. It communicates only through
    `transport` (every wait has the run's timeout, every byte is counted) and marks its
    computation on `clock` (`with worker.clock.computing(): ...`)."""

    rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype
    transport: Transport
    clock: IterationClock = field(default_factory=IterationClock)


S = TypeVar("S")


@dataclass(frozen=True)
class BuildContext(Generic[S]):
    """What an algorithm is built from on one worker."""

    model: BlockModel  # the whole model, identically initialised on every worker
    worker: Worker
    optimizer: OptimizerSpec  # for the model's parameters
    settings: S  # the algorithm's own settings
    example_inputs: torch.Tensor  # one global batch of inputs, for profiling or message shapes


@dataclass(frozen=True)
class StepLoss:
    """This worker's share of the step's loss: the mean over `rows` samples of the global batch.

    The trainer combines shares as sum(mean * rows) / sum(rows), which is the global-batch mean
    whether every worker holds a shard (data parallel) or one worker holds all rows (pipelines).
    """

    mean: float
    rows: int


class Algorithm(ABC, Generic[S]):
    """One training method as seen by one worker."""

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        """Raise ConfigError (one line) if this algorithm cannot run `run` on `model` (built on
        the meta device: its blocks, ties and heads, no weights). Called before any worker starts."""

    @classmethod
    def create(cls, context: BuildContext[S]) -> Algorithm[S]:
        """The object that runs this algorithm on one worker (a family may pick one of several)."""
        return cls(context)

    def __init__(self, context: BuildContext[S]):
        """Keep the blocks this worker owns; every worker receives the whole model, identically
        initialised, so every placement starts from the same weights."""
        self.model = context.model
        self.worker = context.worker
        self.settings = context.settings
        self.owned_blocks: list[int] = []

    @abstractmethod
    def batch_rows(self, batch_size: int) -> slice | None:
        """Rows of each global batch this worker needs (None: no data, e.g. a middle stage)."""

    @abstractmethod
    def train_step(self, inputs: torch.Tensor | None, targets: torch.Tensor | None,
                   lr: float) -> StepLoss | None:
        """One training iteration with learning rate `lr`; the loss share if this worker has one."""

    @abstractmethod
    def evaluate(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> EvalTotals:
        """This worker's contribution to the held-out totals, with the current weights.

        Every worker is called with the same batches; contributions are summed across workers.
        """

    def model_state(self) -> dict[str, torch.Tensor]:
        """The parameters and buffers this worker holds, named as in the whole model's
        state_dict (e.g. "blocks.3.attn.qkv.weight"), plus `extra_state()`: for saving, the
        per-step non-finite check and equivalence tests."""
        return {**owned_state(self.model, self.owned_blocks), **self.extra_state()}

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Trained tensors outside the model's blocks (e.g. local critics, "critics.0.weight")."""
        return {}

    def facts(self) -> dict:
        """Algorithm-specific facts for the run summary (e.g. the split, stashed versions)."""
        return {}

    # Checkpoints (`checkpoint_every`, `resume`), torch's Stateful pair. An algorithm that captures
    # its whole state between two steps overrides all three; the resumed run equals the uninterrupted one.

    @classmethod
    def checkpoint_gap(cls, settings) -> str | None:
        """Why a run with `settings` cannot be checkpointed (one phrase), or None if it can."""
        return "its training state is not captured yet"

    def state_dict(self) -> dict:
        """Everything this worker needs to go on exactly from the end of the last step: weights,
        buffers, optimizer states and what it keeps between steps; tensors and plain data only."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (on a freshly built algorithm)."""
        raise NotImplementedError
