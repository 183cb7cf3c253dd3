"""`local_critic`, `critic_training`, `dgl`: layer groups that learn from local heads, no backprop
across workers. Local Critic Training (Lee & Lee 2019, arXiv 1805.01128; Lee, Hsieh & Lee 2022) and
two of its baselines, each a setting of `critic_target` (spec local_critic.md §12).

The model's blocks are cut into N layer groups f_1..f_N on N workers. Groups 1..N-1 each carry a
local critic c_i that approximates the network's output from h_i; group i learns from its critic
alone, so no error gradient crosses a boundary (spec local_critic.md §1-2):

    group i < N:   theta_i <- step( d mean_b l_i[b] / d theta_i ),  l_i[b] = CE(c_i(h_i)[b], y[b]),
                   backpropagated through c_i and f_i only (the input h_{i-1} is detached)
    critic i:      phi_i   <- Adam( d mean_b |l_i[b] - stopgrad(l_{i+1}[b])| / d phi_i )   (Eq. 7, cascade)
    group N:       theta_N <- step( d mean_b l_N[b] / d theta_N ),  l_N = CE(h_N, y)

The critic receives no CE gradient and the group no matching-loss gradient. All gradients of an
iteration use the parameters at its start (the paper's synchronous semantics, §2.3). Per boundary
and iteration the messages are the activation h_i forward and the B per-sample losses l_{i+1}
backward (§3); every worker reads the labels itself, since batches are a pure function of the step.

Choices where the spec is silent (also in the README):
- Per-sample loss of a language model: the mean CE over the sequence's tokens, so the backward
  message stays B floats.
- The critic follows the boundary's shape: a feature map (C, H, W) gets the paper's conv3x3(128) -
  ReLU - FC (`models.lc_vgg.make_critic`); a sequence (T, d) a LayerNorm and a linear map to the
  vocabulary; a vector a linear map to the classes.
- Critics are built on every worker in group order from the same RNG state, so the distributed and
  the emulated runtime start from identical critics.
- A tensor tied across groups (GPT's embedding and output projection) is updated with the sum
  of the two groups' gradients (the critic-driven lookup part and the true-loss projection part),
  exchanged between the two workers every iteration, so the copies stay identical.
- Weight decay is the paper's (the optimizer's own, 5e-4 * theta under SGD); the released code's
  decay scaled by sum(delta_i) (§8) is not offered.

The baselines change one thing: `critic_training` regresses every critic onto l_N (the last group
sends its B losses to every critic, so update locking returns); `dgl` trains each auxiliary
classifier jointly with its group on CE, with the group's optimizer, and sends nothing backward.

`runtime=emulated` runs §4's single-process loop: every group's forward on detached inputs, every
gradient, then every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mpbench.algorithm import Algorithm, StepLoss, Worker
from mpbench.balance import check_balance, check_split, stage_sizes
from mpbench.channels import RemoteChannel
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import make_optimizer, set_lr
from mpbench.staged_eval import evaluate_stages, model_dtype, recv_activation, send_activation
from models.blocks import BlockModel, EvalTotals, block_output_shapes
from models.lc_vgg import CRITIC_WIDTH, count_flop_lc_rule, count_parameters_lc_rule, init_weights
from models.lc_vgg import make_critic as conv_critic

CRITIC_LOSSES = ("l1", "mse")
CRITIC_TARGETS = ("next", "last", "none")
RUNTIMES = ("distributed", "emulated")


@dataclass(frozen=True)
class LocalCriticSettings:
    groups: int | None = None  # N layer groups (N-1 critics); null: gpus
    balance: Any = "uniform"  # uniform | [blocks per group]: where the critics sit
    critic_loss: str = "l1"  # l1 (the paper's Eq. 7) | mse (the authors' PyTorch code)
    critic_lr: float = 1e-4  # Adam, constant, no weight decay (paper §8)
    critic_every: int = 1  # critics step every k-th iteration, groups every iteration (Table 3)
    critic_target: str = "next"  # next: l_{i+1} (cascade) | last: l_N (critic training) | none: CE (DGL)
    critic_convs: Any = 1  # conv3x3(128) layers per critic on a feature map: one for all, or a list (Table 2)
    runtime: str = "distributed"  # distributed | emulated (one process, gpus=1, same updates)

    def __post_init__(self):
        convs = self.critic_convs if isinstance(self.critic_convs, tuple) else (self.critic_convs,)
        if not convs or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in convs):
            raise ValueError(f"critic_convs must be a positive integer or a list of them, got {self.critic_convs!r}")
        if self.critic_target not in CRITIC_TARGETS:
            raise ValueError(f"critic_target must be one of {', '.join(CRITIC_TARGETS)}; got {self.critic_target!r}")
        if self.critic_loss not in CRITIC_LOSSES:
            raise ValueError(f"critic_loss must be one of {', '.join(CRITIC_LOSSES)}; got {self.critic_loss!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {self.runtime!r}")
        if self.groups is not None and (isinstance(self.groups, bool) or self.groups < 1):
            raise ValueError(f"groups must be a positive integer or null, got {self.groups!r}")
        if not self.critic_lr > 0:
            raise ValueError(f"critic_lr must be positive, got {self.critic_lr}")
        if isinstance(self.critic_every, bool) or self.critic_every < 1:
            raise ValueError(f"critic_every must be a positive integer, got {self.critic_every!r}")
        if self.balance == "profile":
            raise ValueError("balance must be uniform or a list of blocks per group (profile is not offered)")
        check_balance(self.balance)


@dataclass(frozen=True)
class CriticTrainingSettings(LocalCriticSettings):
    """Critic training (Czarnecki et al. 2017, as LC-ICLR compares it): every critic regresses the
    final output's per-sample loss l_N, not the next critic's (spec §12, [inferred] loss)."""

    critic_target: str = "last"


@dataclass(frozen=True)
class DGLSettings(LocalCriticSettings):
    """Decoupled Greedy Learning (Belilovsky et al. 2020): each group and its auxiliary classifier
    are trained jointly on CE, with the group's optimizer; no message goes backward."""

    critic_target: str = "none"


def make_local_critic(shape: torch.Size, outputs: int, convs: int = 1) -> nn.Module:
    """A critic for a boundary tensor of `shape` (batch first) predicting `outputs` logits.

    A feature map gets the paper's critic: `convs` conv3x3 layers of CRITIC_WIDTH (128) filters
    with bias and ReLU, then one FC layer; the width of the extra layers is not published, 128 is
    the natural reading (spec §7). Other boundaries ignore `convs`.
    """
    if len(shape) == 4:  # (B, C, H, W)
        if convs == 1:
            return conv_critic(shape[1], (shape[2], shape[3]), outputs)
        layers: list[nn.Module] = []
        for c_in in (shape[1], *([CRITIC_WIDTH] * (convs - 1))):
            layers += [nn.Conv2d(c_in, CRITIC_WIDTH, 3, padding=1, bias=True), nn.ReLU()]
        critic = nn.Sequential(*layers, nn.Flatten(), nn.Linear(CRITIC_WIDTH * shape[2] * shape[3], outputs))
        critic.apply(init_weights)
        return critic
    if len(shape) == 3:  # (B, T, d): a language model's residual stream
        return nn.Sequential(nn.LayerNorm(shape[2]), nn.Linear(shape[2], outputs))
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(shape[1:]).numel()), outputs))


def per_sample_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """l[b]: cross-entropy of sample b (for a sequence, the mean over its tokens); shape (B,)."""
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return losses.reshape(len(targets), -1).mean(dim=1)


def critic_objective(kind: str, own: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_b |l_i[b] - l_{i+1}[b]| (l1) or its square (mse); `target` is a constant."""
    gap = own - target.detach()
    return gap.abs().mean() if kind == "l1" else gap.pow(2).mean()


EXIT_THRESHOLDS = (0.9, 0.95)  # the paper's Table 6


def exit_metrics(logits: list[torch.Tensor], labels: torch.Tensor, exit_cost: list[int],
                 cumulative_cost: list[int], thresholds=EXIT_THRESHOLDS) -> dict:
    """Held-out accuracy of each sub-model, progressive inference and ensembles (spec §10).

    `logits` are those of sub-models 1..N-1 and, last, of the main model. Progressive inference
    exits at the first sub-model whose max softmax exceeds the threshold, else at the main model;
    its cost is averaged twice: the exit model's own (the paper's accounting, Table 6) and the
    cumulative cost of every group and critic evaluated up to the exit. Ensembles sum logits.
    """
    correct = [(z.argmax(dim=1) == labels).double() for z in logits]
    facts = {"sub_model_accuracy": [c.mean().item() for c in correct[:-1]], "progressive_inference": {}}
    confidence = torch.stack([z.softmax(dim=1).amax(dim=1) for z in logits[:-1]])  # (N-1, samples)
    for t in thresholds:
        confident = confidence > t
        exits = torch.where(confident.any(dim=0), confident.double().argmax(dim=0), len(logits) - 1)
        hit = torch.stack(correct).gather(0, exits[None]).squeeze(0)
        facts["progressive_inference"][str(t)] = {
            "accuracy": hit.mean().item(),
            "flop_exit_model": torch.tensor(exit_cost, dtype=torch.float64)[exits].mean().item(),
            "flop_cumulative": torch.tensor(cumulative_cost, dtype=torch.float64)[exits].mean().item(),
            "exits_per_model": torch.bincount(exits, minlength=len(logits)).tolist()}
    sub_sum = torch.stack(logits[:-1]).sum(dim=0)
    facts["ensemble_accuracy"] = {
        "sub_models": (sub_sum.argmax(dim=1) == labels).double().mean().item(),
        "sub_models_and_main": ((sub_sum + logits[-1]).argmax(dim=1) == labels).double().mean().item()}
    return facts


class LocalCritic(Algorithm):
    Settings = LocalCriticSettings

    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        s, name = run.algorithm_settings, run.algorithm
        N = s.groups if s.groups is not None else run.gpus
        if s.runtime == "emulated" and run.gpus != 1:
            raise ConfigError(f"{name}: runtime=emulated runs in one process; set gpus=1 and choose N "
                              f"with algorithm.groups (got gpus={run.gpus})")
        if s.runtime == "distributed" and N != run.gpus:
            raise ConfigError(f"{name}: algorithm.groups={N} needs gpus={N} (one group per worker), "
                              f"got gpus={run.gpus}; or use algorithm.runtime=emulated")
        check_split(name, s.balance, num_blocks, N, f"groups N={N}")
        if isinstance(s.critic_convs, tuple) and len(s.critic_convs) != N - 1:
            raise ConfigError(f"{name}: critic_convs={list(s.critic_convs)} needs one entry per critic "
                              f"({N - 1} for N={N} groups)")

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec,
                 settings: LocalCriticSettings, example_inputs: torch.Tensor):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        self.model, self.settings = model, settings
        emulated = settings.runtime == "emulated"
        N = settings.groups if settings.groups is not None else worker.world_size
        self.N = N
        sizes = stage_sizes(settings.balance, len(model.blocks), N)
        starts = [sum(sizes[:i]) for i in range(N)]
        self.blocks_of_group = [range(starts[i], starts[i] + sizes[i]) for i in range(N)]
        self.sizes = sizes
        outputs = block_output_shapes(model, example_inputs)
        self.boundary = [outputs[blocks[-1]] for blocks in self.blocks_of_group]
        classes = outputs[-1][0][-1]
        convs = settings.critic_convs if isinstance(settings.critic_convs, tuple) else (settings.critic_convs,) * (N - 1)
        critics = [make_local_critic(shape, classes, c).to(worker.device, worker.dtype)
                   for (shape, _), c in zip(self.boundary[:-1], convs)]  # all, in order: identical RNG draws
        # Sub-model k: groups 1..k and critic k (spec Table 4-5), counted by the paper's rule.
        self.sub_models = [self._count(nn.ModuleList([*(model.blocks[b] for b in range(self.blocks_of_group[k][-1] + 1)),
                                                      critics[k]])) for k in range(N - 1)]
        self.main_model = self._count(model)
        # Costs for progressive inference: the exit model's own (the paper's accounting) and the
        # cumulative one (groups 1..k and every critic tried on the way).
        group_flop = [count_flop_lc_rule(nn.ModuleList([model.blocks[b] for b in blocks])) for blocks in self.blocks_of_group]
        critic_flop = [count_flop_lc_rule(c) for c in critics]
        self.exit_cost = [m["flop_lc_rule"] for m in self.sub_models] + [self.main_model["flop_lc_rule"]]
        self.cumulative_cost = [sum(group_flop[:k + 1]) + sum(critic_flop[:k + 1]) for k in range(N - 1)]
        self.cumulative_cost.append(sum(group_flop) + sum(critic_flop))
        self.task = model.task
        self.exit_facts: dict = {}
        self.here = list(range(N)) if emulated else [worker.rank]
        self.groups = {i: nn.Sequential(*(model.blocks[b] for b in self.blocks_of_group[i])) for i in self.here}
        self.critics = {i: critics[i] for i in self.here if i < N - 1}
        self.joint = settings.critic_target == "none"  # DGL: auxiliary and group form one model
        owned: set[int] = set()  # a tensor tied across groups held here steps once, with its first group
        self.group_optimizers = {}
        for i, group in self.groups.items():
            params = [p for p in group.parameters() if id(p) not in owned]
            owned.update(map(id, params))
            if self.joint and i in self.critics:
                params += list(self.critics[i].parameters())
            self.group_optimizers[i] = make_optimizer(params, optimizer)
        critic_spec = OptimizerSpec(name="adam", lr=settings.critic_lr)
        self.critic_optimizers = {} if self.joint else {
            i: make_optimizer(c.parameters(), critic_spec) for i, c in self.critics.items()}
        self.iteration = 0
        # A tensor tied across groups (GPT's embedding = output projection) takes the sum of the
        # groups' parts, so its copies on the first and last worker stay identical.
        group_of_block = {b: i for i, blocks in enumerate(self.blocks_of_group) for b in blocks}
        self.ties = []  # (tensor here, the groups using it)
        for tie in model.ties:
            users = sorted({group_of_block[b] for b, _ in tie.uses})
            if len(users) > 1 and set(users) & set(self.here):
                self.ties.append((model.blocks[tie.uses[0][0]].get_parameter(tie.uses[0][1]), users))
        if not emulated:
            self._connect(worker)

    @staticmethod
    def _count(module: nn.Module) -> dict:
        return {"parameters": count_parameters_lc_rule(module), "flop_lc_rule": count_flop_lc_rule(module)}

    def target_source(self, i: int) -> int | None:
        """The group whose per-sample loss critic i regresses: i+1 (LC), N (critic training), none (DGL)."""
        if i == self.N - 1 or self.settings.critic_target == "none":
            return None
        return i + 1 if self.settings.critic_target == "next" else self.N - 1

    def _connect(self, worker: Worker) -> None:
        """Channels: h_{i-1} in and h_i out; l_i out to every critic that regresses it, and the
        critic's target in from its source."""
        i, t, d = worker.rank, worker.transport, worker.device
        batch = self.boundary[0][0][0]
        losses = (torch.Size([batch]), self.worker.dtype)
        self.activation_in = RemoteChannel(t, i - 1, 1, *self.boundary[i - 1], d) if i > 0 else None
        self.activation_out = RemoteChannel(t, i + 1, 1, *self.boundary[i], d) if i < self.N - 1 else None
        source = self.target_source(i)
        self.loss_in = RemoteChannel(t, source, 2, *losses, d) if source is not None else None
        self.loss_out = [RemoteChannel(t, j, 2, *losses, d) for j in range(self.N) if self.target_source(j) == i]
        self.tie_channels = [{j: RemoteChannel(t, j, 3 + n, tensor.shape, tensor.dtype, d) for j in users if j != i}
                             for n, (tensor, users) in enumerate(self.ties)]

    def _exchange_tie_parts(self, grads: dict) -> None:
        """Send this group's part of each tied tensor to the other groups using it; add theirs."""
        for (tensor, _), channels in zip(self.ties, self.tie_channels):
            for channel in channels.values():
                channel.put(grads[tensor])
            total = grads[tensor].clone()
            for channel in channels.values():
                total += channel.take()  # two parts: a + b == b + a, so both copies agree bit for bit
            grads[tensor] = total

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)  # every group needs the labels; the first also the inputs

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        if self.settings.runtime == "emulated":
            grads, loss = self._emulated_gradients(inputs, targets)
        else:
            grads, loss = self._worker_gradients(inputs, targets)
            self._exchange_tie_parts(grads)
        for optimizer in self.group_optimizers.values():
            set_lr(optimizer, lr)  # critics keep their constant learning rate
        critics_step = self.iteration % self.settings.critic_every == 0
        for param, grad in grads.items():
            param.grad = grad
        for optimizer in self.group_optimizers.values():
            optimizer.step()
        if critics_step:
            for optimizer in self.critic_optimizers.values():
                optimizer.step()
        self.iteration += 1  # each .grad stays the gradient of this iteration until the next
        return StepLoss(loss, len(targets)) if loss is not None else None

    def _group_and_critic_gradients(self, i: int, group_loss: torch.Tensor, own: torch.Tensor,
                                    target: torch.Tensor | None) -> dict:
        """Group i's gradient from `group_loss` (mean l_i through its critic; the model's loss for
        i = N) and critic i's from the matching loss of `own` = l_i against `target` = l_{i+1};
        nothing else receives a gradient."""
        theta = list(self.groups[i].parameters())
        if self.joint and i in self.critics:  # DGL: the auxiliary learns from the same CE
            theta += list(self.critics[i].parameters())
        grads = dict(zip(theta, torch.autograd.grad(group_loss, theta, retain_graph=target is not None)))
        if target is not None:
            phi = list(self.critics[i].parameters())
            objective = critic_objective(self.settings.critic_loss, own, target)
            grads.update(zip(phi, torch.autograd.grad(objective, phi)))
        return grads

    def _worker_gradients(self, inputs, targets) -> tuple[dict, float | None]:
        """This worker's group i: forward, send h_i on, send l_i back, wait for l_{i+1}."""
        i = self.worker.rank
        x = inputs if i == 0 else self.activation_in.take()
        h = self.groups[i](x)
        if i == self.N - 1:
            if self.loss_out:
                own = per_sample_loss(h.detach(), targets)
                for channel in self.loss_out:
                    channel.put(own)
            loss = self.model.loss(h, targets)
            return self._group_and_critic_gradients(i, loss, None, None), loss.item()
        self.activation_out.put(h.detach())
        own = per_sample_loss(self.critics[i](h), targets)
        for channel in self.loss_out:
            channel.put(own.detach())
        target = self.loss_in.take() if self.loss_in is not None else None
        return self._group_and_critic_gradients(i, own.mean(), own, target), None

    def _emulated_gradients(self, inputs, targets) -> tuple[dict, float]:
        """Spec §4: every forward at the pre-update parameters, then every gradient."""
        h, outputs = inputs, []
        for i in range(self.N):
            h = self.groups[i](h.detach())
            outputs.append(h)
        losses = [per_sample_loss(self.critics[i](outputs[i]), targets) for i in range(self.N - 1)]
        losses.append(per_sample_loss(outputs[-1].detach(), targets))  # l_N: the last critic's target
        loss = self.model.loss(outputs[-1], targets)
        grads = self._group_and_critic_gradients(self.N - 1, loss, None, None)
        for i in reversed(range(self.N - 1)):
            source = self.target_source(i)
            target = losses[source] if source is not None else None
            for param, grad in self._group_and_critic_gradients(i, losses[i].mean(), losses[i], target).items():
                grads[param] = grad if param not in grads else grads[param] + grad  # a tie: sum the parts
        return grads, loss.item()

    def evaluate(self, batches) -> EvalTotals:
        if self.task == "classification" and self.N > 1:
            # One pass gives the main model's totals and every sub-model's logits.
            outputs = self._exit_logits(batches)
            if outputs is None:  # not the last worker: the trainer sums the totals
                return EvalTotals()
            labels = torch.cat([y for _, y in batches])
            self.exit_facts = exit_metrics(outputs, labels, self.exit_cost, self.cumulative_cost)
            return self.model.eval_totals(outputs[-1], labels)
        if self.settings.runtime == "emulated":
            return self.model.evaluate(batches)
        return evaluate_stages(self.model, self.groups, lambda s: s, self.N, batches, self.worker.transport)

    @torch.no_grad()
    def _exit_logits(self, batches) -> list[torch.Tensor] | None:
        """Logits of sub-models 1..N-1 and of the main model on `batches`, gathered where the last
        group is (None elsewhere). Harness traffic: activations go on as in the evaluation, each
        critic's logits to the last worker."""
        modules = [*self.groups.values(), *self.critics.values()]
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        last, logits = self.N - 1, [[] for _ in range(self.N)]
        transport = self.worker.transport
        for x, _ in batches:
            h = x
            for i in self.here:
                if i > 0 and i - 1 not in self.groups:
                    h = recv_activation(transport, i - 1, model_dtype(self.groups[i]), x.device)
                h = self.groups[i](h)
                if i == last:
                    logits[last].append(h)
                    for j in range(last):  # the critics' logits, in group order
                        if j not in self.critics:
                            logits[j].append(recv_activation(transport, j, h.dtype, x.device))
                    continue
                z = self.critics[i](h)
                if i + 1 not in self.groups:
                    send_activation(transport, h, i + 1)
                if last in self.groups:
                    logits[i].append(z)
                else:
                    send_activation(transport, z, last)
        for m, mode in zip(modules, modes):
            m.train(mode)
        return [torch.cat(z) for z in logits] if last in self.groups else None

    def model_state(self) -> dict[str, torch.Tensor]:
        state = {f"blocks.{b}.{name}": value for i in self.groups for b in self.blocks_of_group[i]
                 for name, value in self.model.blocks[b].state_dict().items()}
        state.update({f"critics.{i}.{name}": value for i, critic in self.critics.items()
                      for name, value in critic.state_dict().items()})
        return state

    def summary(self) -> dict:
        return {"groups": self.N, "blocks_per_group": self.sizes, "groups_here": self.here,
                "critic_loss": self.settings.critic_loss, "critic_every": self.settings.critic_every,
                "critic_target": self.settings.critic_target,
                "runtime": self.settings.runtime,
                "critic_parameters": {str(i): sum(p.numel() for p in c.parameters()) for i, c in self.critics.items()},
                "sub_models": self.sub_models, "main_model": self.main_model, **self.exit_facts}
