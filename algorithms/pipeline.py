"""`pipeline` and `hypar`: synchronous pipeline parallelism on PyTorch's own pipeline runtime.

`pipeline` cuts the model's blocks into S consecutive stages spread over the workers and runs one
of the schedules of `torch.distributed.pipelining` (docs/algorithms/pipeline.md §1): GPipe (Huang
et al. 2019), 1F1B (PipeDream-Flush, Narayanan et al. 2021), interleaved 1F1B, looped BFS, and the
zero-bubble schedules (Qi et al. 2024: interleaved ZB, ZB-V; DualPipe-V). Each step splits the
batch into m micro-batches, accumulates their gradients and flushes: the update is the exact
minibatch gradient, grad L = sum_j grad(L_j / m) (§3), so the trajectory equals `backprop`.

`hypar` is HyPar-Flow's hybrid (Awan et al. 2020; our reading, §5): gpus = partitions x replicas
on a (dp, pp) DeviceMesh, rank = replica * partitions + partition. Each replica is a pipeline over
its shard B/R of the global batch; after the schedule, each partition's gradients are averaged
over the R replicas holding it (one flattened all-reduce over the mesh's dp dimension), so every
replica steps with the gradient of the global-batch mean loss. partitions=1 is data parallelism,
replicas=1 is `pipeline`.

Choices (§3-§8):
- Gradient scaling: each micro-batch loss is divided by m inside the loss function and the
  schedules run with scale_grads=False, so a tensor held by two stages of one worker (the tied
  embedding under a V-shaped schedule) is not divided twice.
- A tied tensor (GPT's embedding = output projection) has a copy on the first and on the last
  stage's worker; after the schedule the two parts of its gradient are exchanged and summed in one
  order (mpbench/parallel/ties.py), so the copies take identical steps.
- `optimizer.clip_norm`: one global norm over the whole model, a tied tensor counted once: the
  squared norms of every stage's gradients are summed over the workers of the pipeline.
- Cuts fall between blocks, so a residual block is never split; BatchNorm normalises each
  micro-batch (and replica) with its own statistics, a deliberate deviation from sequential
  training (equivalence is tested on BN-free models).
- Measured bubble per worker = 1 - compute / step time (mpbench/parallel/clock.py), compute being
  the time inside the stages' forward, backward and weight-gradient calls plus the loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining.schedules import PipelineScheduleSingle, get_schedule_class

from mpbench.algorithm import Algorithm, BuildContext, StepLoss
from mpbench.blocks import BlockModel, EvalTotals, eval_mode
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import Optimizers
from mpbench.parallel.balance import agreed_split, check_split
from mpbench.parallel.channels import channel_between
from mpbench.parallel.clock import IterationClock
from mpbench.parallel.evaluation import evaluate_parts
from mpbench.parallel.ties import TieExchange
from mpbench.registry import register_algorithm
from mpbench.settings import Settings

TIE_TAG = 1  # message stream of the tied tensors' gradient parts


@dataclass(frozen=True)
class ScheduleInfo:
    """What the pipeline needs to know of a torch schedule."""

    torch_name: str  # for get_schedule_class
    placement: Literal["loop", "v"]  # stages round-robin over the workers, or a V (0..p-1, then back)
    stages_per_worker: Literal["one", "two or more", "two"]
    # The idle fraction with equal stage costs and free communication (§2), as a function of the
    # workers p, micro-batches m and stages per worker v; None where no closed form is known.
    analytic_bubble: Callable[[int, int, int], float] | None


SCHEDULES = {
    "gpipe": ScheduleInfo("GPipe", "loop", "one", lambda p, m, v: (p - 1) / (m + p - 1)),
    "1f1b": ScheduleInfo("1F1B", "loop", "one", lambda p, m, v: (p - 1) / (m + p - 1)),
    "interleaved_1f1b": ScheduleInfo("Interleaved1F1B", "loop", "two or more",
                                     lambda p, m, v: (p - 1) / (v * m + p - 1)),
    "looped_bfs": ScheduleInfo("LoopedBFS", "loop", "two or more", None),
    "interleaved_zero_bubble": ScheduleInfo("InterleavedZeroBubble", "loop", "two or more", None),
    "zbv_zero_bubble": ScheduleInfo("ZBVZeroBubble", "v", "two", lambda p, m, v: 0.0),
    "dualpipev": ScheduleInfo("DualPipeV", "v", "two", None),
}
ScheduleName = Literal["gpipe", "1f1b", "interleaved_1f1b", "looped_bfs", "interleaved_zero_bubble",
                       "zbv_zero_bubble", "dualpipev"]


@dataclass(frozen=True)
class PipelineSettings(Settings):
    schedule: ScheduleName = "1f1b"
    """The torch.distributed.pipelining schedule."""
    microbatches: int | None = None
    """Micro-batches per replica and step; null: 4 x stages (GPipe's advice)."""
    stages_per_worker: int = 1
    """Model chunks per worker: 2 or more for the interleaved and looped schedules, exactly 2 for the V ones."""
    balance: Literal["uniform", "profile"] | tuple[int, ...] = "uniform"
    """Blocks per stage: uniform, profile (measured block costs, the slowest stage minimised) or a list."""

    def validate(self):
        if self.microbatches is not None and self.microbatches < 1:
            raise ValueError(f"microbatches must be a positive integer or null, got {self.microbatches}")
        if self.stages_per_worker < 1:
            raise ValueError(f"stages_per_worker must be at least 1, got {self.stages_per_worker}")


@dataclass(frozen=True)
class HyParSettings(PipelineSettings):
    schedule: ScheduleName = "gpipe"
    """The schedule inside each replica (HyPar-Flow's is not published; GPipe-style is our reading)."""
    partitions: int = 2
    """Workers per pipeline; gpus / partitions replicas."""

    def validate(self):
        super().validate()
        if self.partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {self.partitions}")


class TimedStage(PipelineStage):
    """A PipelineStage that marks its computation on the worker's clock and counts the bytes of
    the activations and gradients it sends, so bubbles and traffic are measured, not assumed.
    (The wrapped methods are PipelineStage's; tests/test_equivalence_pipeline.py guards them.)"""

    def __init__(self, *args, clock: IterationClock, **kwargs):
        super().__init__(*args, **kwargs)
        self.bytes_sent = 0
        for name in ("forward_one_chunk", "backward_one_chunk", "backward_weight_one_chunk"):
            setattr(self, name, computing(clock, getattr(self, name)))

    def _count(self, ops):
        self.bytes_sent += sum(op.tensor.numel() * op.tensor.element_size() for op in ops)
        return ops

    def get_fwd_send_ops(self, fwd_chunk_id):
        return self._count(super().get_fwd_send_ops(fwd_chunk_id))

    def get_bwd_send_ops(self, bwd_chunk_id):
        return self._count(super().get_bwd_send_ops(bwd_chunk_id))


def stage_examples(model: BlockModel, split, microbatch: torch.Tensor) -> list[torch.Tensor]:
    """Each stage's input on one microbatch, then the last stage's output: the metadata a
    PipelineStage takes up front (static mode). Without it torch infers the metadata on the
    first step by running each stage's forward in train mode, on uninitialised tensors after the
    first stage: BatchNorm's running statistics take in the garbage (NaN on resnet20 in float32,
    at random) and count one batch too many. Here one forward in eval mode, without gradients,
    changes no statistics and draws no dropout."""
    examples, x = [microbatch], microbatch
    with eval_mode(model), torch.no_grad():
        for stage in range(len(split.blocks)):
            x = split.module(model, stage)(x)
            examples.append(x.detach().requires_grad_(x.is_floating_point()))
    return examples


def computing(clock: IterationClock, fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with clock.computing():
            return fn(*args, **kwargs)
    return run


@register_algorithm("pipeline", PipelineSettings)
class Pipeline(Algorithm):
    @classmethod
    def partitions(cls, settings: PipelineSettings, gpus: int) -> int:
        """P, the workers of one pipeline: all of them (hypar: its `partitions`)."""
        return gpus

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s, name = run.algorithm_settings, run.algorithm
        partitions = cls.partitions(s, run.gpus)
        if run.gpus % partitions:
            raise ConfigError(f"{name}: partitions={partitions} must divide gpus={run.gpus}")
        replicas = run.gpus // partitions
        if run.batch_size % replicas:
            raise ConfigError(f"{name}: batch_size={run.batch_size} must be divisible by the "
                              f"{replicas} replicas (gpus / partitions)")
        needs = SCHEDULES[s.schedule].stages_per_worker
        if needs == "one" and s.stages_per_worker != 1:
            raise ConfigError(f"{name}: schedule={s.schedule} runs one stage per worker; "
                              f"got stages_per_worker={s.stages_per_worker}")
        if needs == "two or more" and s.stages_per_worker < 2:
            raise ConfigError(f"{name}: schedule={s.schedule} interleaves several stages per worker; "
                              f"set stages_per_worker=2 or more, or use schedule=1f1b")
        if needs == "two" and s.stages_per_worker != 2:
            raise ConfigError(f"{name}: schedule={s.schedule} needs stages_per_worker=2 (a V of two "
                              f"stages per worker), got {s.stages_per_worker}")
        stages = partitions * s.stages_per_worker
        check_split(name, s.balance, len(model.blocks), stages,
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

    @classmethod
    def checkpoint_gap(cls, settings) -> None:
        return None  # every step ends in a flush: nothing is in flight between steps

    def __init__(self, context: BuildContext[PipelineSettings]):
        super().__init__(context)
        model, worker, settings = self.model, self.worker, self.settings
        self.num_ranks = self.partitions(settings, worker.world_size)  # P: workers per pipeline
        self.replicas = worker.world_size // self.num_ranks  # R
        self.replica, self.position = divmod(worker.rank, self.num_ranks)
        self.num_stages = self.num_ranks * settings.stages_per_worker
        mesh = init_device_mesh(worker.device.type, (self.replicas, self.num_ranks), mesh_dim_names=("dp", "pp"))
        self.pp_group, self.dp_group = mesh.get_group("pp"), mesh.get_group("dp")

        self.m = settings.microbatches or 4 * self.num_stages
        microbatch = context.example_inputs[:len(context.example_inputs) // (self.replicas * self.m)]
        # balance=profile: block seconds measured by worker 0 on one micro-batch; None otherwise
        self.split, self.profile = agreed_split(settings.balance, model, microbatch, self.num_stages)
        owned = [s for s in range(self.num_stages) if self._rank_in_pipeline(s) == self.position]
        self.stage_modules = {s: self.split.module(model, s) for s in owned}
        self.owned_blocks = [b for s in owned for b in self.split.blocks[s]]

        examples = stage_examples(model, self.split, microbatch)
        stages = [TimedStage(self.stage_modules[s], s, self.num_stages, worker.device, group=self.pp_group,
                             input_args=examples[s], output_args=examples[s + 1], clock=worker.clock)
                  for s in owned]
        self.stages = stages
        schedule_cls = get_schedule_class(SCHEDULES[settings.schedule].torch_name)
        loss_fn = computing(worker.clock, lambda output, target: model.loss(output, target) / self.m)
        single = issubclass(schedule_cls, PipelineScheduleSingle)
        self.schedule = schedule_cls(stages[0] if single else stages, n_microbatches=self.m,
                                     loss_fn=loss_fn, scale_grads=False)

        # A tied tensor's parts: one per worker of this replica (a part is a worker's stages).
        rank_of_block = {b: self._global_rank(s) for s, blocks in enumerate(self.split.blocks) for b in blocks}
        connect = functools.partial(channel_between, transport=worker.transport, device=worker.device)
        self.ties = TieExchange(model, rank_of_block, lambda rank: rank, worker.rank,
                                lambda src, dst, tag, shape, dtype: connect(src, dst, worker.rank, tag, shape, dtype),
                                TIE_TAG)
        params = list({id(p): p for mod in self.stage_modules.values() for p in mod.parameters()}.values())
        # One global norm over the pipeline's workers: a tied tensor counted where its first part is.
        copies = [t.tensor for t in self.ties if worker.rank != t.parts[0]]
        self.optimizers = Optimizers(context.optimizer, {"stages": params}, combine_norms=self._norm_over_the_pipeline,
                                     copies=copies)

    def _rank_in_pipeline(self, stage: int) -> int:
        """Which worker of a pipeline holds `stage`: round-robin, or a V for the V schedules."""
        p = self.num_ranks
        if SCHEDULES[self.settings.schedule].placement == "v":
            return stage if stage < p else 2 * p - 1 - stage
        return stage % p

    def _global_rank(self, stage: int) -> int:
        return self.replica * self.num_ranks + self._rank_in_pipeline(stage)

    def _norm_over_the_pipeline(self, norm: torch.Tensor) -> torch.Tensor:
        """The L2 norm over every stage of this replica from each worker's own (replicas agree)."""
        squared = (norm.double() ** 2).reshape(1)
        return self.worker.transport.all_reduce(squared, group=self.pp_group).sqrt().reshape(()).to(norm.dtype)

    def batch_rows(self, batch_size: int) -> slice | None:
        if not ({0, self.num_stages - 1} & set(self.stage_modules)):
            return None  # a middle stage gets its input from the previous stage
        shard = batch_size // self.replicas
        return slice(self.replica * shard, (self.replica + 1) * shard)

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        self.optimizers.zero_grad()
        first, last = 0 in self.stage_modules, self.num_stages - 1 in self.stage_modules
        losses: list[torch.Tensor] = []
        args = (inputs,) if first else ()
        kwargs = {"target": targets, "losses": losses} if last else {}
        self.schedule.step(*args, return_outputs=False, **kwargs)
        for tied in self.ties:  # sum the parts of a tied gradient
            tied.send(tied.tensor.grad)
            tied.tensor.grad = self.ties.total(tied, {self.worker.rank: tied.tensor.grad})
        self._average_over_replicas()
        self.optimizers.step(lr)
        if not last:
            return None
        return StepLoss(sum(loss.item() for loss in losses), len(targets))  # losses are already / m

    def _average_over_replicas(self) -> None:
        if self.replicas == 1:
            return
        grads = [p.grad for p in self.optimizers.params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce instead of one per tensor
        self.worker.transport.all_reduce(flat, group=self.dp_group)
        flat /= self.replicas
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def evaluate(self, batches) -> EvalTotals:
        # Each replica evaluates every R-th batch; the trainer sums the totals of all workers.
        return evaluate_parts(self.model, self.stage_modules, self._global_rank, self.num_stages,
                              batches[self.replica::self.replicas], self.worker.transport)

    def state_dict(self) -> dict:
        return {"stages": {str(s): m.state_dict() for s, m in self.stage_modules.items()},
                "optimizer": self.optimizers.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for s, module in self.stage_modules.items():
            module.load_state_dict(state["stages"][str(s)])
        self.optimizers.load_state_dict(state["optimizer"])

    def facts(self) -> dict:
        split = self.worker.clock.summary()
        busy = split["compute_s"] / split["iteration_s"] if split["iteration_s"] and split["compute_s"] else None
        bubble = SCHEDULES[self.settings.schedule].analytic_bubble
        facts = {
            "schedule": self.settings.schedule, "partitions": self.num_ranks, "replicas": self.replicas,
            "stages": self.num_stages, "stages_per_worker": self.settings.stages_per_worker,
            "microbatches": self.m, "blocks_per_stage": list(self.split.sizes),
            "stages_here": sorted(self.stage_modules),
            "analytic_bubble": None if bubble is None else bubble(self.num_ranks, self.m,
                                                                  self.settings.stages_per_worker),
            "measured_bubble": None if busy is None else 1 - busy,
            "pipeline_bytes_sent": sum(stage.bytes_sent for stage in self.stages),
        }
        if self.profile is not None:
            facts["profiled_block_seconds"] = self.profile
        return facts


@register_algorithm("hypar", HyParSettings)
class HyPar(Pipeline):
    @classmethod
    def partitions(cls, settings: HyParSettings, gpus: int) -> int:
        return settings.partitions
