"""`data_parallel`: synchronous data parallelism with DistributedDataParallel (Horovod analogue).

Every worker holds the whole model. The global batch of B samples is split into N equal shards;
each worker backpropagates the mean loss of its shard and DDP averages the gradients (bucketed
all-reduce, overlapped with the backward), so every worker applies the gradient of the global
mean loss and the trajectory equals `backprop` on the same global batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from mpbench.algorithm import Algorithm, OneModuleAndOptimizer, StepLoss, Worker
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import clip_gradients, make_optimizer, set_lr
from models.blocks import BlockModel, EvalTotals


@dataclass(frozen=True)
class DataParallelSettings:
    bucket_cap_mb: float = 25.0  # DDP's gradient bucket size: larger buckets, fewer all-reduces

    def __post_init__(self):
        if not self.bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {self.bucket_cap_mb}")


class DataParallel(OneModuleAndOptimizer, Algorithm):
    Settings = DataParallelSettings

    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        if run.batch_size % run.gpus:
            raise ConfigError(f"batch_size={run.batch_size} must be divisible by gpus={run.gpus} "
                              f"for algorithm=data_parallel (equal shards keep it equal to backprop)")

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec,
                 settings: DataParallelSettings, example_inputs):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        self.model = model
        device_ids = [worker.device.index] if worker.device.type == "cuda" else None
        self.replica = DistributedDataParallel(model, device_ids=device_ids,
                                               bucket_cap_mb=settings.bucket_cap_mb)
        self.replica.register_comm_hook(None, worker.transport.counting_allreduce_hook())
        self.optimizer = make_optimizer(model.parameters(), optimizer)
        self.optimizer_spec = optimizer

    def batch_rows(self, batch_size: int) -> slice:
        shard = batch_size // self.worker.world_size
        return slice(self.worker.rank * shard, (self.worker.rank + 1) * shard)

    def train_step(self, inputs, targets, lr) -> StepLoss:
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model.loss(self.replica(inputs), targets)
        loss.backward()  # DDP all-reduces (averages) the gradients during this call
        clip_gradients(list(self.model.parameters()), self.optimizer_spec)  # replicas agree: one global norm
        self.optimizer.step()
        return StepLoss(loss.item(), len(targets))

    def model_state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def trained_module_and_optimizer(self):
        return self.model, self.optimizer

    def evaluate(self, batches) -> EvalTotals:
        # Replicas are identical: each evaluates every N-th batch and the trainer sums the totals.
        return self.model.evaluate(batches[self.worker.rank::self.worker.world_size])
