"""The trainer's own work per step, measured by running the trainer: the simulator's per-step overhead.

Every worker's step is its algorithm's iteration plus what mpbench/trainer.py does around it:
fetch the worker's rows of the global batch (image augmentation is drawn for the whole batch),
move them to the device, the learning rate of the step, the worker's clock, starting and
finishing the loss reduction, the step's record. That is timed here on the real `Trainer`, on
one worker, with a stand-in algorithm that fetches the whole batch, computes nothing and holds
no weights: the median step period of `STEPS` steps, median over `ROUNDS` rounds (the profile
checks the machine's load around it, as it does every timing).

What it leaves to others: the finiteness check of the weights a worker holds, which grows with
them, is profiled per block (mpbench/simulate/costs.py `check_s`) and added per worker by the
simulation; the loss reduction's transfer is the simulation's all-reduce; on one worker the
reduction is not started, so its CPU cost on several workers (a gloo call) is not counted.
"""

from __future__ import annotations

import statistics

import torch

from mpbench.algorithm import Algorithm, BuildContext, StepLoss, Worker
from mpbench.blocks import EvalTotals
from mpbench.trainer import Trainer
from mpbench.transport import Transport

ROUNDS, STEPS = 5, 20
HOW = (f"the trainer's own work per step (batch fetch, learning rate, loss bookkeeping): the median step of "
       f"mpbench.trainer.Trainer over {ROUNDS} rounds of {STEPS} steps with a stand-in algorithm that computes "
       f"nothing, on every worker")


class _Idle(Algorithm):
    """Fetches the whole batch as a worker holding data does, computes nothing, holds no weights."""

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)

    def train_step(self, inputs, targets, lr: float) -> StepLoss:
        return StepLoss(0.0, len(targets))

    def evaluate(self, batches) -> EvalTotals:
        return EvalTotals(0.0, 1, 0)

    def model_state(self) -> dict[str, torch.Tensor]:
        return {}


def trainer_step_s(data, spec, device: torch.device, dtype: torch.dtype,
                   rounds: int = ROUNDS, steps: int = STEPS) -> float:
    """Seconds of the trainer's own work per step on `device` (the first step of a round, which
    pays for first touches, is left out)."""
    worker = Worker(0, 1, device, dtype, Transport(0, 1, spec.timeout_s))
    algorithm = _Idle(BuildContext(None, worker, spec.optimizer, None, None))
    medians = []
    for _ in range(rounds):
        trainer = Trainer(algorithm, data, worker, optimizer=spec.optimizer, steps=steps, batch_size=spec.batch_size,
                          eval_every=steps, eval_batches=1)
        medians.append(statistics.median(trainer.run().step_times_s[1:]))
    return statistics.median(medians)
