"""`data_parallel`: synchronous data parallelism with DistributedDataParallel (Horovod analogue).

Every worker holds the whole model. The global batch of B samples is split into N equal shards;
each worker backpropagates the mean loss of its shard and DDP averages the gradients (bucketed
all-reduce, overlapped with the backward), so every worker applies the gradient of the global
mean loss and the trajectory equals `backprop` on the same global batches. `optimizer.clip_norm`
clips that averaged gradient to one global norm, the same on every replica.

Time breakdown: DDP's all-reduce runs inside the backward, so compute and communication cannot be
told apart; the report draws the iteration unsplit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.nn.parallel import DistributedDataParallel

from algorithms.backprop import Backprop
from mpbench.algorithm import BuildContext
from mpbench.blocks import BlockModel, EvalTotals
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.registry import register_algorithm
from mpbench.settings import Settings, check_range


@dataclass(frozen=True)
class DataParallelSettings(Settings):
    bucket_cap_mb: float = 25.0
    """DDP's gradient bucket size: larger buckets, fewer all-reduces."""

    def validate(self):
        check_range("bucket_cap_mb", self.bucket_cap_mb, 0, low_open=True)


@register_algorithm("data_parallel", DataParallelSettings)
class DataParallel(Backprop):
    separable_compute = False

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        if run.batch_size % run.gpus:
            raise ConfigError(f"batch_size={run.batch_size} must be divisible by gpus={run.gpus} "
                              f"for algorithm=data_parallel (equal shards keep it equal to backprop)")

    def __init__(self, context: BuildContext[DataParallelSettings]):
        super().__init__(context)
        device = self.worker.device
        self.replica = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None,
                                               bucket_cap_mb=self.settings.bucket_cap_mb)
        self.replica.register_comm_hook(None, self.worker.transport.counting_allreduce_hook())

    def forward(self, inputs):
        return self.replica(inputs)  # DDP all-reduces (averages) the gradients during the backward

    def batch_rows(self, batch_size: int) -> slice:
        shard = batch_size // self.worker.world_size
        return slice(self.worker.rank * shard, (self.worker.rank + 1) * shard)

    def evaluate(self, batches) -> EvalTotals:
        # Replicas are identical: each evaluates every N-th batch and the trainer sums the totals.
        return self.model.evaluate(batches[self.worker.rank::self.worker.world_size])
