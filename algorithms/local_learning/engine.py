"""What every local-learning method shares: groups on workers, local modules, two phases, one step.

The model's blocks are cut into N layer groups f_1..f_N, one per worker. Groups 1..N-1 carry a
local module m_i on their output h_i that gives the group its learning signal, so no error
gradient crosses a worker: a group's input is detached (docs/algorithms/local_learning.md §1).
A method (local_critic.py, dgl.py, dni.py) is written once, as two phases per group (§6):

    phase 1  receive h_{i-1}; forward f_i; send h_i on; compute the group's learning signal and its
             gradients (`learn`), sending the message another group's local module regresses as
             soon as it exists (`send_message`: the waiting worker starts sooner)
    phase 2  receive this local module's target; its gradient from `local_objective`

A worker runs both phases for its own group. The emulated runtime (`runtime=emulated`, gpus=1)
puts every group on one worker, connected by in-memory channels, and runs phase 1 for every group
in order, then phase 2 for every group: the same code, so the workers equal the emulation by
construction. Every gradient of an iteration is taken at the parameters of its start, then every
optimizer steps (the papers' synchronous semantics).

The pipelined variant (§7, `pipelined=true`) delays phase 2 by d iterations: module i's
prediction of batch t (its graph at a snapshot of the weights) waits for the target of batch t
and is applied at iteration t + d. d = 0 is the synchronous run, bit for bit.

Optimizers (§10): the groups' with the run's optimizer and schedule, one per group and one per
tensor tied across groups (GPT's embedding, whose parts are exchanged like the stale family's);
`optimizer.clip_norm` takes one norm per group and one per tied tensor. Local modules: Adam at
the method's constant rate, stepped every `local_every`-th batch, not clipped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mpbench.algorithm import Algorithm, BuildContext, StepLoss
from mpbench.blocks import BlockModel, EvalTotals
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import Optimizers
from mpbench.parallel.balance import agreed_split, check_split
from mpbench.parallel.channels import Channel, channel_between
from mpbench.parallel.evaluation import evaluate_parts
from mpbench.parallel.split import check_runtime
from mpbench.parallel.ties import TieExchange
from mpbench.settings import Settings

ACTIVATION_TAG, TARGET_TAG, FIRST_TIE_TAG = 1, 2, 3  # message streams between two workers


@dataclass(frozen=True)
class LocalLearningSettings(Settings):
    """What every method of the family shares: the split and the runtime."""

    groups: int | None = None
    """N layer groups (N-1 local modules); null: gpus."""
    balance: Literal["uniform"] | tuple[int, ...] = "uniform"
    """uniform, or a list of blocks per group: where the local modules sit."""
    runtime: Literal["distributed", "emulated"] = "distributed"
    """distributed: one group per worker; emulated: every group in one process (gpus=1), the same updates."""

    def validate(self):
        if self.groups is not None and self.groups < 1:
            raise ValueError(f"groups must be a positive integer or null, got {self.groups!r}")


@dataclass(frozen=True)
class PipelinedSettings(LocalLearningSettings):
    """For the methods whose local modules learn from a message sent backward."""

    pipelined: bool = False
    """The cross-batch variant: a group no longer waits for its module's target, which arrives `delay` iterations late."""
    delay: int = 1
    """d of the pipelined variant; d = 0 reproduces the synchronous run."""

    def validate(self):
        super().validate()
        if self.delay < 0:
            raise ValueError(f"delay must be a non-negative integer, got {self.delay!r}")


@dataclass
class Learned:
    """What phase 1 of one group gives."""

    grads: dict[nn.Parameter, torch.Tensor]  # the group's gradients (and a jointly trained head's)
    prediction: tuple | None = None  # (local module's output with its graph, the weights it used)
    loss: float | None = None  # the true loss, on the last group


class LocalLearning(Algorithm):
    """The engine; a method subclasses it and defines the four methods under "a method's rule"."""

    local_name = "local_modules"  # the local modules' prefix in model_state ("critics", "synthesizers")
    # The settings that give the local modules' constant Adam learning rate and how often (in
    # batches) they step; None: they have no optimizer of their own (DGL's learn with their group).
    local_schedule: tuple[str, str] | None = None
    needs_input_gradient = False  # a group's input must be a leaf requiring grad (DNI's message)

    @classmethod
    def groups(cls, run: RunSpec) -> int:
        return run.algorithm_settings.groups or run.gpus

    @classmethod
    def check(cls, run: RunSpec, model: BlockModel) -> None:
        s, N = run.algorithm_settings, cls.groups(run)
        check_runtime(run.algorithm, s.runtime, run.gpus, N, f"algorithm.groups={N}", "one group per worker")
        check_split(run.algorithm, s.balance, len(model.blocks), N, f"groups N={N}")
        if N > 1 and model.heads is None:
            raise ConfigError(f"{run.algorithm}: model {run.model} offers no local heads (BlockModel.heads), "
                              f"which groups 1..N-1 need")

    @classmethod
    def checkpoint_gap(cls, settings) -> str | None:
        if getattr(settings, "pipelined", False) and settings.delay > 0:
            return "under a delay the modules' pending targets hold autograd graphs"
        return None

    def __init__(self, context: BuildContext):
        super().__init__(context)
        model, worker, s = self.model, self.worker, self.settings
        self.N = N = s.groups or worker.world_size
        self.delay = s.delay if getattr(s, "pipelined", False) else 0
        self.split, _ = agreed_split(s.balance, model, context.example_inputs, N)
        self.outputs = self.split.outputs(model, context.example_inputs)  # h_i: shape and dtype
        self.classes = self.outputs[-1][0][-1]  # the model's logits: classes or vocabulary
        emulated = s.runtime == "emulated"
        self.owner = (lambda i: 0) if emulated else (lambda i: i)
        self.here = [i for i in range(N) if self.owner(i) == worker.rank]
        self.groups = {i: self.split.module(model, i) for i in self.here}
        self.owned_blocks = [b for i in self.here for b in self.split.blocks[i]]
        # Built on every worker in group order, so every runtime draws the same initial weights.
        self.all_local_modules = [m.to(worker.device, worker.dtype) for m in self.make_local_modules()]
        self.local_modules = {i: self.all_local_modules[i] for i in self.here if i < N - 1}
        self._connect()
        self.ties = TieExchange(model, self.split.part_of_block(), self.owner, worker.rank,
                                lambda src, dst, tag, shape, dtype: self._channel(src, dst, tag, shape, dtype, True),
                                FIRST_TIE_TAG)
        parts = {f"group{i}": [p for p in self.trained_with_group(i) if not self.ties.is_tied(p)] for i in self.here}
        parts.update({f"tie:{t.name}": [t.tensor] for t in self.ties})
        self.optimizers = Optimizers(context.optimizer, parts)  # one clip group per part
        lr_key, every_key = self.local_schedule or (None, None)
        self.local_lr = getattr(s, lr_key) if lr_key else 1.0  # (no local optimizer then: any rate)
        self.local_every = getattr(s, every_key) if every_key else 1
        self.local_optimizers = Optimizers(OptimizerSpec(name="adam", lr=self.local_lr),
                                           {f"local{i}": self.local_parameters(i) for i in self.local_modules})
        self.predictions = {i: deque() for i in self.local_modules if self.target_source(i) is not None}
        self.iteration = 0

    # --- a method's rule -----------------------------------------------------------------------

    def make_local_modules(self) -> list[nn.Module]:
        """The local modules after groups 1..N-1 (`self.outputs` says their inputs)."""
        raise NotImplementedError

    def target_source(self, i: int) -> int | None:
        """The group whose message is local module i's regression target (None: no target)."""
        raise NotImplementedError

    def message_shape(self, i: int) -> tuple[torch.Size, torch.dtype]:
        """Shape and dtype of the message local module i regresses."""
        raise NotImplementedError

    def learn(self, i: int, x: torch.Tensor, h: torch.Tensor, labels: torch.Tensor) -> Learned:
        """Phase 1 of group i after its forward h = f_i(x): its gradients; its message goes out
        through `send_message` as soon as it is known."""
        raise NotImplementedError

    def local_objective(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Phase 2: the loss local module i minimises, from its prediction and its target."""
        raise NotImplementedError

    def trained_with_group(self, i: int) -> list[nn.Parameter]:
        """The parameters group i's optimizer steps (DGL adds its auxiliary classifier)."""
        return list(self.groups[i].parameters())

    def local_parameters(self, i: int) -> list[nn.Parameter]:
        """The parameters the local modules' own optimizer steps (none for DGL)."""
        return list(self.local_modules[i].parameters())

    # --- shared machinery ----------------------------------------------------------------------

    def _channel(self, src: int, dst: int, tag: int, shape, dtype, workers: bool = False) -> Channel | None:
        """The channel from group (or, with `workers`, worker) `src` to `dst`, seen from here."""
        owner = (lambda w: w) if workers else self.owner
        return channel_between(owner(src), owner(dst), self.worker.rank, tag, shape, dtype,
                               transport=self.worker.transport, device=self.worker.device)

    def _connect(self) -> None:
        """h_i from group i to i+1; each local module's target from its source group."""
        self.activations = {b: self._channel(b, b + 1, ACTIVATION_TAG, *self.outputs[b]) for b in range(self.N - 1)}
        self.targets_in: dict[int, Channel] = {}
        self.targets_out: dict[int, list[Channel]] = {i: [] for i in range(self.N)}
        for j in range(self.N - 1):
            source = self.target_source(j)
            channel = None if source is None else self._channel(source, j, TARGET_TAG, *self.message_shape(j))
            if channel is None:
                continue
            if self.owner(j) == self.worker.rank:
                self.targets_in[j] = channel
            if self.owner(source) == self.worker.rank:
                self.targets_out[source].append(channel)

    def sends_message(self, i: int) -> bool:
        return bool(self.targets_out[i])

    def send_message(self, i: int, message: torch.Tensor) -> None:
        """Group i's message to every local module that regresses it."""
        for channel in self.targets_out[i]:
            channel.put(message)

    def local_weights(self, i: int) -> dict[str, torch.Tensor]:
        """Local module i's weights for this batch's prediction: the live ones, or a snapshot when
        its gradient is taken d iterations later (the live ones change in place meanwhile)."""
        weights = dict(self.local_modules[i].named_parameters())
        if self.delay == 0:
            return weights
        return {name: w.detach().clone().requires_grad_() for name, w in weights.items()}

    def group_backward(self, i: int, output: torch.Tensor, grad_output: torch.Tensor | None = None,
                       x: torch.Tensor | None = None) -> tuple[dict, torch.Tensor | None]:
        """Backpropagate `output` (with `grad_output`) through group i alone: its parameters'
        gradients and, if its input `x` is given, the gradient there. A tied tensor's part is
        sent to the other workers holding a copy the moment autograd has it."""
        theta = list(self.groups[i].parameters())
        hooks = [t.tensor.register_hook(t.send) for t in self.ties if t.outgoing]
        try:
            grads = torch.autograd.grad(output, theta + ([x] if x is not None else []), grad_outputs=grad_output)
        finally:
            for hook in hooks:
                hook.remove()
        return dict(zip(theta, grads)), (grads[-1] if x is not None else None)

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)  # every group needs the labels; the first also the inputs

    def train_step(self, inputs, labels, lr) -> StepLoss | None:
        self.optimizers.zero_grad()
        self.local_optimizers.zero_grad()
        clock, last, loss = self.worker.clock, self.N - 1, None
        tie_parts: list[dict[int, torch.Tensor]] = [{} for _ in self.ties]
        for i in self.here:  # phase 1, in group order
            x = inputs if i == 0 else self.activations[i - 1].take()
            if i > 0 and self.needs_input_gradient:
                x = x.requires_grad_()
            with clock.computing():
                h = self.groups[i](x)
                if i < last:
                    self.activations[i].put(h.detach())
                learned = self.learn(i, x, h, labels)
            for param, grad in learned.grads.items():
                tied = next((n for n, t in enumerate(self.ties) if t.tensor is param), None)
                if tied is None:
                    param.grad = grad
                else:
                    tie_parts[tied][i] = grad
            if i in self.predictions:
                self.predictions[i].append(learned.prediction)
            loss = learned.loss if learned.loss is not None else loss
        for i, kept in self.predictions.items():  # phase 2: the targets of batch t - d
            if len(kept) <= self.delay:
                continue
            prediction, weights = kept.popleft()
            target = self.targets_in[i].take()
            if (self.iteration - self.delay) % self.local_every == 0:
                with clock.computing():
                    grads = torch.autograd.grad(self.local_objective(prediction, target), list(weights.values()))
                for param, grad in zip(self.local_modules[i].parameters(), grads):
                    param.grad = grad
        for tied, parts in zip(self.ties, tie_parts):
            tied.tensor.grad = self.ties.total(tied, parts)
        self.optimizers.step(lr)
        self.local_optimizers.step(self.local_lr)  # local modules keep their constant learning rate
        self.iteration += 1
        return StepLoss(loss, len(labels)) if loss is not None else None

    def evaluate(self, batches) -> EvalTotals:
        return evaluate_parts(self.model, self.groups, self.owner, self.N, batches, self.worker.transport)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {f"{self.local_name}.{i}.{name}": value for i, module in self.local_modules.items()
                for name, value in module.state_dict().items()}

    def state_dict(self) -> dict:
        def states(objects: dict) -> dict:
            return {str(i): o.state_dict() for i, o in objects.items()}
        return {"groups": states(self.groups), "local_modules": states(self.local_modules),
                "optimizers": self.optimizers.state_dict(), "local_optimizers": self.local_optimizers.state_dict(),
                "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        for key in ("groups", "local_modules"):
            for i, module in getattr(self, key).items():
                module.load_state_dict(state[key][str(i)])
        self.optimizers.load_state_dict(state["optimizers"])
        self.local_optimizers.load_state_dict(state["local_optimizers"])
        self.iteration = state["iteration"]  # local_every counts from the run's first step

    def facts(self) -> dict:
        pipelined = getattr(self.settings, "pipelined", False)
        return {"groups": self.N, "blocks_per_group": list(self.split.sizes), "groups_here": self.here,
                "runtime": self.settings.runtime, "delay": self.delay,
                "schedule": f"pipelined, delay {self.delay}" if pipelined else "synchronous",
                f"{self.local_name}_parameters": {str(i): sum(p.numel() for p in m.parameters())
                                                  for i, m in self.local_modules.items()}}
