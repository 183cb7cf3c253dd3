"""`diloco`: Distributed Low-Communication training (Douillard, Feng, Rusu, Chhaparia, Donchev,
Kuncoro, Ranzato, Szlam, Shen; "DiLoCo: Distributed Low-Communication Training of Language Models",
arXiv 2311.08455, 2023; Algorithm 1), with HyPar's partitions x replicas (docs/algorithms/diloco.md).

gpus = partitions x replicas, as in `hypar`: each replica is a pipeline of `partitions` workers
over its shard B/R of the global batch. Unlike hypar, replicas do not average gradients every
step. Each trains on its own for H inner steps with the run's optimizer (DiLoCo: AdamW); then the
replicas average their parameters and one outer step moves the synchronised model theta:

    Delta(t)  = theta(t-1) - (1/R) sum_r theta_r(t)        (the outer gradient, Alg. 1 line 12)
    theta(t)  = OuterOpt(theta(t-1), Delta(t))             (SGD, Nesterov momentum; line 14)
    theta_r   = theta(t)  for every replica r              (line 4 of the next round)

so a worker all-reduces its parameters once per H steps instead of its gradients every step:
the communication volume per step falls by H (`sync_bytes_per_step` in the run's facts). Each
replica keeps its inner optimizer state across rounds (the paper's choice).

Our reading, where the paper is silent (docs/algorithms/diloco.md §3):
- evaluation and the recorded weights are theta, the synchronised model; between two
  synchronisations the replicas' own weights are work in progress;
- floating buffers (BatchNorm statistics) are averaged at each synchronisation, without momentum;
- the H-step round counts the algorithm's own steps from the start of the run, so a resumed run
  synchronises at the same steps (the count is in the checkpoint);
- `runtime=emulated` runs the R replicas in one process (gpus=1, R = algorithm.replicas), each as
  backprop: a pipeline's flushed micro-batches change only the summation order.

Degenerate settings: H = 1, outer SGD with lr 1 and no momentum gives theta(t) = the replicas'
average after one step; with an inner optimizer linear in the gradient (SGD, with or without
momentum, no clipping) that is data_parallel's step, up to rounding (tests/test_diloco.py).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Literal

import torch

from algorithms.pipeline import HyPar, HyParSettings
from mpbench.algorithm import Algorithm, BuildContext, StepLoss
from mpbench.blocks import BlockModel, EvalTotals
from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import Optimizers
from mpbench.parallel.evaluation import evaluate_parts
from mpbench.parallel.split import owned_state
from mpbench.registry import register_algorithm
from mpbench.settings import check_range


@dataclass(frozen=True)
class DiLoCoSettings(HyParSettings):
    partitions: int = 1
    """Workers per replica's pipeline; gpus / partitions replicas (1: every worker a whole replica)."""
    inner_steps: int = 10
    """H, the inner steps each replica takes alone between two synchronisations."""
    outer_lr: float = 0.7
    """The outer optimizer's learning rate (DiLoCo: 0.7)."""
    outer_momentum: float = 0.9
    """The outer optimizer's momentum (DiLoCo: 0.9); 0 for plain SGD."""
    outer_nesterov: bool = True
    """Nesterov momentum in the outer step (DiLoCo); needs outer_momentum > 0."""
    replicas: int | None = None
    """R for runtime=emulated; null: gpus / partitions (distributed)."""
    runtime: Literal["distributed", "emulated"] = "distributed"
    """distributed: the workers; emulated: the R replicas in one process (gpus=1)."""

    def validate(self):
        super().validate()
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be a positive integer, got {self.inner_steps!r}")
        check_range("outer_lr", self.outer_lr, 0, low_open=True)
        check_range("outer_momentum", self.outer_momentum, 0, 1, high_open=True)
        if self.outer_nesterov and self.outer_momentum == 0:
            raise ValueError("outer_nesterov=true needs outer_momentum > 0; set outer_nesterov=false for plain SGD")
        if self.replicas is not None and self.replicas < 1:
            raise ValueError(f"replicas must be a positive integer or null, got {self.replicas!r}")


class OuterStep:
    """theta, the synchronised model, and its outer optimizer (DiLoCo Alg. 1, lines 12-14).

    `live` are a worker's tensors by state_dict name (a tied tensor under each of its names);
    theta holds each floating tensor once, in name order, which is also the order of the
    parameters averaged over the replicas."""

    def __init__(self, live: dict[str, torch.Tensor], trained: set[int], settings: DiLoCoSettings):
        first_name: dict[int, str] = {}
        self.alias = {}  # every floating name -> the name theta keeps it under
        for name, tensor in live.items():
            if tensor.is_floating_point():
                self.alias[name] = first_name.setdefault(tensor.data_ptr(), name)
        self.theta = {name: live[name].detach().clone() for name in first_name.values()}
        self.trained = {n for n in self.theta if live[n].data_ptr() in trained}
        nesterov = settings.outer_nesterov and settings.outer_momentum > 0
        # (a worker whose blocks have no parameters still takes part: one empty stand-in)
        self.optimizer = torch.optim.SGD([t for n, t in self.theta.items() if n in self.trained] or [torch.zeros(0)],
                                         lr=settings.outer_lr, momentum=settings.outer_momentum, nesterov=nesterov)

    def flat(self, live: dict[str, torch.Tensor]) -> torch.Tensor:
        """`live`'s tensors that theta keeps, as one vector (one all-reduce, not one per tensor)."""
        return torch.cat([live[n].detach().reshape(-1) for n in self.theta])

    def step(self, average: torch.Tensor) -> None:
        """theta <- OuterOpt(theta, theta - average) for parameters; buffers take the average."""
        offset = 0
        for name, theta in self.theta.items():
            mean = average[offset:offset + theta.numel()].view_as(theta)
            offset += theta.numel()
            if name in self.trained:
                theta.grad = theta - mean
            else:
                theta.copy_(mean)
        self.optimizer.step()
        for theta in self.theta.values():
            theta.grad = None

    def load_into(self, live: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, source in self.alias.items():
                live[name].copy_(self.theta[source])

    def named(self) -> dict[str, torch.Tensor]:
        """theta under every name of `live` (a tied tensor under each)."""
        return {name: self.theta[source] for name, source in self.alias.items()}

    def state_dict(self) -> dict:
        return {"theta": self.theta, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for name, theta in self.theta.items():
            theta.copy_(state["theta"][name])
        self.optimizer.load_state_dict(state["optimizer"])


def data_pointers(params) -> set[int]:
    return {p.data_ptr() for p in params}


def _facts(settings: DiLoCoSettings, replicas: int, outer: OuterStep, element_size: int) -> dict:
    payload = sum(t.numel() for t in outer.theta.values()) * element_size
    ring = 2 * (replicas - 1) * payload // replicas  # bytes one worker sends in a ring all-reduce
    return {"replicas": replicas, "inner_steps": settings.inner_steps, "outer_lr": settings.outer_lr,
            "outer_momentum": settings.outer_momentum, "outer_nesterov": settings.outer_nesterov,
            "sync_payload_bytes": payload, "sync_bytes_per_step": ring / settings.inner_steps}


class DiLoCo(HyPar):
    """The workers: hypar's pipelines, with the per-step gradient average replaced by a
    parameter average and an outer step every H steps."""

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s = run.algorithm_settings
        if s.runtime == "emulated":
            DiLoCoEmulation.check(run, model)
            return
        super().check(run, model)
        replicas = run.gpus // s.partitions
        if s.replicas is not None and s.replicas != replicas:
            raise ConfigError(f"diloco: replicas={s.replicas} but gpus={run.gpus} / partitions={s.partitions} "
                              f"gives {replicas}; leave algorithm.replicas=null unless runtime=emulated")

    @classmethod
    def create(cls, context: BuildContext[DiLoCoSettings]) -> Algorithm:
        return DiLoCoEmulation(context) if context.settings.runtime == "emulated" else cls(context)

    def __init__(self, context: BuildContext[DiLoCoSettings]):
        super().__init__(context)
        self.outer = OuterStep(self._live(), data_pointers(self.optimizers.params), self.settings)
        self.steps_taken = 0

    def _live(self) -> dict[str, torch.Tensor]:
        return owned_state(self.model, self.owned_blocks)

    def _average_over_replicas(self) -> None:
        pass  # DiLoCo's replicas exchange no gradients: each steps on its own shard

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        loss = super().train_step(inputs, targets, lr)
        self.steps_taken += 1
        if self.steps_taken % self.settings.inner_steps == 0:
            live = self._live()
            total = self.worker.transport.all_reduce(self.outer.flat(live), group=self.dp_group)
            self.outer.step(total / self.replicas)
            self.outer.load_into(live)
        return loss

    @contextlib.contextmanager
    def _theta_in_place(self):
        live = self._live()
        own = {name: live[name].detach().clone() for name in self.outer.alias}
        self.outer.load_into(live)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, saved in own.items():
                    live[name].copy_(saved)

    def evaluate(self, batches) -> EvalTotals:
        with self._theta_in_place():  # theta, the same model on every replica
            return evaluate_parts(self.model, self.stage_modules, self._global_rank, self.num_stages,
                                  batches[self.replica::self.replicas], self.worker.transport)

    def model_state(self) -> dict[str, torch.Tensor]:
        return {**super().model_state(), **self.outer.named()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "outer": self.outer.state_dict(), "steps_taken": self.steps_taken}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.outer.load_state_dict(state["outer"])
        self.steps_taken = state["steps_taken"]

    def facts(self) -> dict:
        return {**super().facts(), **_facts(self.settings, self.replicas, self.outer, self._element_size())}

    def _element_size(self) -> int:
        return next(iter(self.outer.theta.values())).element_size()


class DiLoCoEmulation(Algorithm[DiLoCoSettings]):
    """The R replicas in one process, each a copy of the model with its own inner optimizer;
    `self.model` is theta."""

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s = run.algorithm_settings
        if run.gpus != 1:
            raise ConfigError(f"diloco: runtime=emulated runs in one process; set gpus=1 and choose the replicas "
                              f"with algorithm.replicas (got gpus={run.gpus})")
        if s.replicas is None:
            raise ConfigError("diloco: runtime=emulated needs algorithm.replicas (R, the replicas to emulate)")
        if run.batch_size % s.replicas:
            raise ConfigError(f"diloco: batch_size={run.batch_size} must be divisible by replicas={s.replicas}")

    @classmethod
    def checkpoint_gap(cls, settings) -> None:
        return None  # replicas, their optimizers, theta, the outer momentum and the step count

    def __init__(self, context: BuildContext[DiLoCoSettings]):
        super().__init__(context)
        self.owned_blocks = list(range(len(self.model.blocks)))
        self.R = self.settings.replicas
        self.replicas = [copy.deepcopy(self.model) for _ in range(self.R)]  # deepcopy keeps ties tied
        self.inner = []
        for replica in self.replicas:
            params = list(replica.parameters())
            self.inner.append(Optimizers(context.optimizer, {"model": params}, clip_groups=[params]))
        self.outer = OuterStep(self._live(self.model), data_pointers(self.model.parameters()), self.settings)
        self.steps_taken = 0

    def _live(self, model: BlockModel) -> dict[str, torch.Tensor]:
        return owned_state(model, self.owned_blocks)

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)

    def train_step(self, inputs, targets, lr) -> StepLoss:
        total = 0.0
        with self.worker.clock.computing():
            for replica, inner, x, y in zip(self.replicas, self.inner, inputs.chunk(self.R), targets.chunk(self.R)):
                inner.zero_grad()
                loss = replica.loss(replica(x), y)
                loss.backward()
                inner.step(lr)
                total += loss.item() * len(y)
            self.steps_taken += 1
            if self.steps_taken % self.settings.inner_steps == 0:
                flats = [self.outer.flat(self._live(replica)) for replica in self.replicas]
                self.outer.step(torch.stack(flats).sum(0) / self.R)  # the order of a sum over workers
                for model in (self.model, *self.replicas):
                    self.outer.load_into(self._live(model))
        return StepLoss(total / len(targets), len(targets))

    def evaluate(self, batches) -> EvalTotals:
        return self.model.evaluate(batches)  # theta

    def state_dict(self) -> dict:
        return {"replicas": [r.state_dict() for r in self.replicas], "inner": [o.state_dict() for o in self.inner],
                "outer": self.outer.state_dict(), "steps_taken": self.steps_taken, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for replica, inner, saved, saved_inner in zip(self.replicas, self.inner, state["replicas"], state["inner"]):
            replica.load_state_dict(saved)
            inner.load_state_dict(saved_inner)
        self.model.load_state_dict(state["model"])
        self.outer.load_state_dict(state["outer"])
        self.steps_taken = state["steps_taken"]

    def facts(self) -> dict:
        element = next(iter(self.outer.theta.values())).element_size()
        return {"runtime": "emulated", **_facts(self.settings, self.R, self.outer, element)}


register_algorithm("diloco", DiLoCoSettings)(DiLoCo)
