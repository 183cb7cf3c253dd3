"""The interface every training algorithm implements.

The trainer (`mpbench.trainer`) owns everything common to all methods: the batches, the LR
schedule, evaluation, metrics and records. An algorithm owns two things only:

1. placement: which blocks of the model live on this worker, built in `__init__`;
2. one training iteration on this worker: `train_step`.

Adding an algorithm is one module under `algorithms/` that subclasses `Algorithm`, plus one
YAML file under `experiments/algorithm/`. The trainer never branches on an algorithm's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from mpbench.config import OptimizerSpec, RunSpec
from mpbench.transport import Transport
from models.blocks import BlockModel, EvalTotals


@dataclass(frozen=True)
class NoSettings:
    """For algorithms without settings of their own."""


@dataclass
class Worker:
    """What an algorithm knows about the worker it runs on."""

    rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype
    transport: Transport


@dataclass(frozen=True)
class StepLoss:
    """This worker's share of the step's loss: the mean over `rows` samples of the global batch.

    The trainer combines shares as sum(mean * rows) / sum(rows), which is the global-batch mean
    whether every worker holds a shard (data parallel) or one worker holds all rows (pipelines).
    """

    mean: float
    rows: int


class Algorithm(ABC):
    """One training method as seen by one worker."""

    Settings: ClassVar[type] = NoSettings

    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        """Raise ConfigError (one line) if this algorithm cannot run `run` on a model of
        `num_blocks` blocks, e.g. for its worker count. Called before any worker starts."""

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec, settings,
                 example_inputs: torch.Tensor):
        """Keep the blocks this worker owns; `model` is the whole model, identically
        initialised on every worker, so every placement starts from the same weights.
        `example_inputs` is one global batch of inputs (for profiling or shape inference)."""
        self.worker = worker

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

    @abstractmethod
    def model_state(self) -> dict[str, torch.Tensor]:
        """The parameters and buffers this worker holds, named as in the whole model's
        state_dict (e.g. "blocks.3.attn.qkv.weight"), for saving and for equivalence tests."""

    def summary(self) -> dict:
        """Algorithm-specific facts for the run summary (e.g. stashed versions, split)."""
        return {}

    # Checkpoints (`checkpoint_every`, `resume`). An algorithm that captures its whole state
    # between two steps overrides all three; the resumed run then equals the uninterrupted one.

    @classmethod
    def checkpoint_gap(cls, settings) -> str | None:
        """Why a run with `settings` cannot be checkpointed (one phrase), or None if it can."""
        return "its training state is not captured yet"

    def training_state(self) -> dict:
        """Everything this worker needs to go on exactly from the end of the last step: weights,
        buffers, optimizer states and what it keeps between steps; tensors and plain data only."""
        raise NotImplementedError

    def load_training_state(self, state: dict) -> None:
        """Restore what `training_state` returned (on a freshly built algorithm)."""
        raise NotImplementedError


class OneModuleAndOptimizer:
    """Checkpoints of an algorithm whose whole training state is one module and one optimizer
    (`backprop`, `data_parallel`, `sub_model_backprop`): mix in before `Algorithm` and say which
    in `trained_module_and_optimizer`."""

    def trained_module_and_optimizer(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        raise NotImplementedError

    @classmethod
    def checkpoint_gap(cls, settings) -> None:
        return None

    def training_state(self) -> dict:
        module, optimizer = self.trained_module_and_optimizer()
        return {"model": module.state_dict(), "optimizer": optimizer.state_dict()}

    def load_training_state(self, state: dict) -> None:
        module, optimizer = self.trained_module_and_optimizer()
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
