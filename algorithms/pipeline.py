"""`pipeline` and `hypar`: synchronous pipeline parallelism on PyTorch's own pipeline runtime.

`pipeline` cuts the model's blocks into S consecutive stages spread over the workers and runs one
of the schedules of `torch.distributed.pipelining`: GPipe (Huang et al. 2019), 1F1B
(PipeDream-Flush, Narayanan et al. 2021), interleaved 1F1B (Narayanan et al. 2021), looped BFS,
and the zero-bubble schedules (Qi et al. 2024: interleaved ZB, ZB-V; DualPipe-V). Each step splits
the batch into m micro-batches, accumulates their gradients and flushes: the update is the exact
minibatch gradient (spec hybrid_and_pipeline.md §1.3: grad L = sum_j grad(L_j / m)), so the
trajectory equals `backprop`.

`hypar` is HyPar-Flow's hybrid (Awan et al. 2020; reconstruction of spec §2.2): gpus = partitions
x replicas on a (dp, pp) DeviceMesh, rank = replica * partitions + partition. Each replica is a
pipeline over its shard B/R of the global batch; after the schedule, each partition's gradients are
averaged over the R replicas holding it (one flattened all-reduce over the mesh's dp dimension),
so every replica steps with the gradient of the global-batch mean loss. partitions=1 is data
parallelism, replicas=1 is `pipeline`.

Choices:
- Gradient scaling: each micro-batch loss is divided by m inside the loss function and the
  schedules run with scale_grads=False, so a tensor held by two stages of one worker (the tied
  embedding under a V-shaped schedule) is not divided twice.
- Tied parameters (GPT's embedding = output projection, declared by the model): the first and
  last stage each hold a copy (one shared tensor when one worker holds both); after the schedule
  the two gradient contributions are summed over the 2-rank group {first, last} of each replica,
  so the copies take identical steps and stay bit-identical (spec §1.3).
- Cuts fall between blocks, so a residual block is never split and only its output crosses a
  boundary. A cut through a skip connection would carry two tensors (main path and shortcut),
  deliver the shortcut to every consumer and sum their gradients (spec §2.3); the models here never
  need one.
- BatchNorm normalises each micro-batch (and replica) with its own statistics: a deliberate
  deviation from sequential training. Equivalence is tested on BN-free models.
- Measured bubble per worker = 1 - compute / step time, where compute is the time inside the
  stages' forward, backward and weight-gradient calls plus the loss, and step time is the
  schedule's step with the gradient reductions. It is reported next to the analytic value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining.schedules import PipelineScheduleSingle, get_schedule_class

from mpbench.algorithm import Algorithm, StepLoss, Worker
from mpbench.balance import agreed_split, check_balance, check_split
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import make_optimizer, set_lr
from mpbench.staged_eval import evaluate_stages
from models.blocks import BlockModel, EvalTotals

# name -> (torch schedule name, stage placement, stages per worker it needs: None = 2 or more)
SCHEDULES = {
    "gpipe": ("GPipe", "loop", 1),
    "1f1b": ("1F1B", "loop", 1),
    "interleaved_1f1b": ("Interleaved1F1B", "loop", None),
    "looped_bfs": ("LoopedBFS", "loop", None),
    "interleaved_zero_bubble": ("InterleavedZeroBubble", "loop", None),
    "zbv_zero_bubble": ("ZBVZeroBubble", "v", 2),
    "dualpipev": ("DualPipeV", "v", 2),
}


@dataclass(frozen=True)
class PipelineSettings:
    schedule: str = "1f1b"
    microbatches: int | None = None  # per replica and step; None: 4 x stages (GPipe's advice)
    stages_per_worker: int = 1  # model chunks per worker for the interleaved and V schedules
    balance: Any = "uniform"  # uniform | profile | [blocks per stage]

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.microbatches is not None and self.microbatches < 1:
            raise ValueError(f"microbatches must be a positive integer or null, got {self.microbatches}")
        if self.stages_per_worker < 1:
            raise ValueError(f"stages_per_worker must be at least 1, got {self.stages_per_worker}")
        check_balance(self.balance)


@dataclass(frozen=True)
class HyParSettings(PipelineSettings):
    schedule: str = "gpipe"  # HyPar-Flow's schedule is not published; GPipe-style is the reading of §2.2
    partitions: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {self.partitions}")


def analytic_bubble(schedule: str, stages_per_rank: int, ranks: int, m: int) -> float | None:
    """Idle fraction of a step with equal stage costs and free communication (spec §1.2).

    GPipe and 1F1B: (p-1)/(m+p-1); interleaved 1F1B with v chunks: (p-1)/(v*m+p-1); ZB-V: 0 with
    equal F, B and W costs. None where the spec gives no closed form (looped BFS, interleaved
    zero-bubble, DualPipe-V): only the measured value is reported then.
    """
    p = ranks
    if schedule in ("gpipe", "1f1b"):
        return (p - 1) / (m + p - 1)
    if schedule == "interleaved_1f1b":
        return (p - 1) / (stages_per_rank * m + p - 1)
    if schedule == "zbv_zero_bubble":
        return 0.0
    return None


class ComputeClock:
    """Seconds of compute and bytes sent by this worker's stages, accumulated across steps."""

    def __init__(self):
        self.seconds = 0.0
        self.bytes_sent = 0

    def timed(self, fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
        return run


class TimedStage(PipelineStage):
    """A PipelineStage that records its compute time and the bytes of the activations and
    gradients it sends, so bubbles and traffic are measured, not assumed."""

    def __init__(self, *args, clock: ComputeClock, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.forward_one_chunk = clock.timed(self.forward_one_chunk)
        self.backward_one_chunk = clock.timed(self.backward_one_chunk)
        self.backward_weight_one_chunk = clock.timed(self.backward_weight_one_chunk)

    def _count(self, ops):
        self.clock.bytes_sent += sum(op.tensor.numel() * op.tensor.element_size() for op in ops)
        return ops

    def get_fwd_send_ops(self, fwd_chunk_id):
        return self._count(super().get_fwd_send_ops(fwd_chunk_id))

    def get_bwd_send_ops(self, bwd_chunk_id):
        return self._count(super().get_bwd_send_ops(bwd_chunk_id))


class Pipeline(Algorithm):
    Settings = PipelineSettings

    @classmethod
    def partitions(cls, run: RunSpec) -> int:
        return run.gpus

    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        s = run.algorithm_settings
        name = run.algorithm
        if run.optimizer.clip_norm is not None:
            raise ConfigError(f"{name}: optimizer.clip_norm is not supported (a global norm over stages on "
                              f"different workers is not implemented); set optimizer.clip_norm=null")
        partitions = cls.partitions(run)
        if run.gpus % partitions:
            raise ConfigError(f"{name}: partitions={partitions} must divide gpus={run.gpus}")
        replicas = run.gpus // partitions
        if run.batch_size % replicas:
            raise ConfigError(f"{name}: batch_size={run.batch_size} must be divisible by the "
                              f"{replicas} replicas (gpus / partitions)")
        needed = SCHEDULES[s.schedule][2]
        if needed == 1 and s.stages_per_worker != 1:
            raise ConfigError(f"{name}: schedule={s.schedule} runs one stage per worker; "
                              f"got stages_per_worker={s.stages_per_worker}")
        if needed is None and s.stages_per_worker < 2:
            raise ConfigError(f"{name}: schedule={s.schedule} interleaves several stages per worker; "
                              f"set stages_per_worker=2 or more, or use schedule=1f1b")
        if needed == 2 and s.stages_per_worker != 2:
            raise ConfigError(f"{name}: schedule={s.schedule} needs stages_per_worker=2 (a V of two "
                              f"stages per worker), got {s.stages_per_worker}")
        stages = partitions * s.stages_per_worker
        check_split(name, s.balance, num_blocks, stages,
                    f"stages = partitions {partitions} x stages_per_worker {s.stages_per_worker}")
        m = s.microbatches or 4 * stages
        per_replica = run.batch_size // replicas
        if per_replica % m:
            raise ConfigError(f"{name}: microbatches={m} must divide the per-replica batch "
                              f"{per_replica} (batch_size {run.batch_size} / {replicas} replicas)")
        if s.schedule in ("1f1b", "dualpipev") and m < stages:
            raise ConfigError(f"{name}: schedule={s.schedule} needs microbatches >= stages ({stages}), got {m}")
        rounds = max(1, m // partitions)
        if s.schedule in ("interleaved_1f1b", "interleaved_zero_bubble") and m % rounds:
            raise ConfigError(f"{name}: schedule={s.schedule} needs microbatches to be a multiple of "
                              f"microbatches // partitions ({rounds}), got {m}")

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec, settings,
                 example_inputs: torch.Tensor):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        self.model = model
        self.settings = settings
        self.num_ranks = getattr(settings, "partitions", worker.world_size)  # P: workers per pipeline
        self.replicas = worker.world_size // self.num_ranks  # R
        self.replica, self.position = divmod(worker.rank, self.num_ranks)
        v = settings.stages_per_worker
        self.num_stages = self.num_ranks * v
        self.placement = SCHEDULES[settings.schedule][1]
        mesh = init_device_mesh(worker.device.type, (self.replicas, self.num_ranks), mesh_dim_names=("dp", "pp"))
        self.pp_group, self.dp_group = mesh.get_group("pp"), mesh.get_group("dp")

        self.m = settings.microbatches or 4 * self.num_stages
        microbatch = example_inputs[:len(example_inputs) // (self.replicas * self.m)]
        # balance=profile: block seconds measured by worker 0 on one micro-batch; None otherwise
        self.sizes, self.profile = agreed_split(settings.balance, model, microbatch, self.num_stages)
        starts = [sum(self.sizes[:s]) for s in range(self.num_stages)]
        self.stage_blocks = [range(starts[s], starts[s] + self.sizes[s]) for s in range(self.num_stages)]
        owned = [s for s in range(self.num_stages) if self._rank_in_pipeline(s) == self.position]
        self.stage_modules = {s: nn.Sequential(*(model.blocks[i] for i in self.stage_blocks[s])) for s in owned}

        self.clock = ComputeClock()
        stages = [TimedStage(self.stage_modules[s], s, self.num_stages, worker.device, group=self.pp_group,
                             clock=self.clock) for s in owned]
        schedule_cls = get_schedule_class(SCHEDULES[settings.schedule][0])
        loss_fn = self.clock.timed(lambda output, target: model.loss(output, target) / self.m)
        single = issubclass(schedule_cls, PipelineScheduleSingle)
        self.schedule = schedule_cls(stages[0] if single else stages, n_microbatches=self.m,
                                     loss_fn=loss_fn, scale_grads=False)
        self.params = list({id(p): p for mod in self.stage_modules.values() for p in mod.parameters()}.values())
        self.optimizer = make_optimizer(self.params, optimizer)
        self.tie_groups = self._tie_groups(model)
        self.step_seconds: list[float] = []
        self.compute_seconds: list[float] = []

    def _rank_in_pipeline(self, stage: int) -> int:
        """Which worker of a pipeline holds `stage`: round-robin, or a V for the V schedules."""
        p = self.num_ranks
        if self.placement == "v":
            return stage if stage < p else 2 * p - 1 - stage
        return stage % p

    def _global_rank(self, stage: int, replica: int | None = None) -> int:
        replica = self.replica if replica is None else replica
        return replica * self.num_ranks + self._rank_in_pipeline(stage)

    def _tie_groups(self, model: BlockModel) -> list[tuple[Any, nn.Parameter]]:
        """For each tied tensor whose uses sit on different workers of a replica, a process group
        of those workers and this worker's copy. Every rank creates every group (new_group's rule)."""
        stage_of_block = {b: s for s, blocks in enumerate(self.stage_blocks) for b in blocks}
        groups = []
        for tie in model.ties:
            for replica in range(self.replicas):
                ranks = sorted({self._global_rank(stage_of_block[b], replica) for b, _ in tie.uses})
                if len(ranks) < 2:
                    continue  # one worker holds every use: the tensor is shared in memory already
                group = dist.new_group(ranks)
                if self.worker.rank in ranks:
                    block, name = next((b, n) for b, n in tie.uses
                                       if self._global_rank(stage_of_block[b], replica) == self.worker.rank)
                    groups.append((group, model.blocks[block].get_parameter(name)))
        return groups

    def batch_rows(self, batch_size: int) -> slice | None:
        if not ({0, self.num_stages - 1} & set(self.stage_modules)):
            return None  # a middle stage gets its input from the previous stage
        shard = batch_size // self.replicas
        return slice(self.replica * shard, (self.replica + 1) * shard)

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        started, computed = time.perf_counter(), self.clock.seconds
        first, last = 0 in self.stage_modules, self.num_stages - 1 in self.stage_modules
        losses: list[torch.Tensor] = []
        args = (inputs,) if first else ()
        kwargs = {"target": targets, "losses": losses} if last else {}
        self.schedule.step(*args, return_outputs=False, **kwargs)
        for group, tensor in self.tie_groups:  # sum the two halves of a tied gradient
            self.worker.transport.all_reduce(tensor.grad, group=group)
        self._average_over_replicas()
        self.optimizer.step()
        self.step_seconds.append(time.perf_counter() - started)
        self.compute_seconds.append(self.clock.seconds - computed)
        if not last:
            return None
        return StepLoss(sum(loss.item() for loss in losses), len(targets))  # losses are already / m

    def _average_over_replicas(self) -> None:
        if self.replicas == 1:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce instead of one per tensor
        self.worker.transport.all_reduce(flat, group=self.dp_group)
        flat /= self.replicas
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def evaluate(self, batches) -> EvalTotals:
        # Each replica evaluates every R-th batch; the trainer sums the totals of all workers.
        return evaluate_stages(self.model, self.stage_modules, self._global_rank, self.num_stages,
                               batches[self.replica::self.replicas], self.worker.transport)

    def model_state(self) -> dict[str, torch.Tensor]:
        return {f"blocks.{i}.{name}": value
                for s in self.stage_modules for i in self.stage_blocks[s]
                for name, value in self.model.blocks[i].state_dict().items()}

    @classmethod
    def checkpoint_gap(cls, settings) -> None:
        return None  # every step ends in a flush: nothing is in flight between steps

    def training_state(self) -> dict:
        return {"stages": {str(s): m.state_dict() for s, m in self.stage_modules.items()},
                "optimizer": self.optimizer.state_dict()}

    def load_training_state(self, state: dict) -> None:
        for s, module in self.stage_modules.items():
            module.load_state_dict(state["stages"][str(s)])
        self.optimizer.load_state_dict(state["optimizer"])

    def summary(self) -> dict:
        steady_steps = slice(1, None) if len(self.step_seconds) > 2 else slice(None)
        step, compute = sum(self.step_seconds[steady_steps]), sum(self.compute_seconds[steady_steps])
        facts = {
            "schedule": self.settings.schedule, "partitions": self.num_ranks, "replicas": self.replicas,
            "stages": self.num_stages, "stages_per_worker": self.settings.stages_per_worker,
            "microbatches": self.m, "blocks_per_stage": self.sizes,
            "stages_here": sorted(self.stage_modules),
            "analytic_bubble": analytic_bubble(self.settings.schedule, self.settings.stages_per_worker,
                                               self.num_ranks, self.m),
            "measured_bubble": 1 - compute / step if step > 0 else None,
            "step_s_per_iter": step / len(self.step_seconds[steady_steps]) if step > 0 else None,
            "compute_s_per_iter": compute / len(self.step_seconds[steady_steps]) if step > 0 else None,
            "pipeline_bytes_sent": self.clock.bytes_sent,
        }
        if self.profile is not None:
            facts["profiled_block_seconds"] = self.profile
        return facts


class HyPar(Pipeline):
    Settings = HyParSettings

    @classmethod
    def partitions(cls, run: RunSpec) -> int:
        return run.algorithm_settings.partitions
