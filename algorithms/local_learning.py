"""Local learning: layer groups that learn from local modules, with no backprop across workers.

One family, five names (spec local_critic.md):

    local_critic      Local Critic Training (Lee & Lee 2019, arXiv 1805.01128; Lee, Hsieh & Lee 2022)
    critic_training   its baseline after Czarnecki et al. 2017: critics regress the final loss
    dgl               Decoupled Greedy Learning (Belilovsky et al. 2020): auxiliary classifiers on CE
    dni               Decoupled Neural Interfaces (Jaderberg et al. 2017): synthetic gradients
    sub_model_backprop  Table 4's comparison: groups 1..k + critic k trained by plain backprop

The model's blocks are cut into N layer groups f_1..f_N on N workers. Groups 1..N-1 each carry a
local module m_i that reads h_i and gives the group its learning signal, so no error gradient
crosses a boundary (spec §1-2, §12):

    LC, group i < N:  theta_i <- step( d mean_b l_i[b] / d theta_i ),  l_i[b] = CE(c_i(h_i)[b], y[b]),
                      backpropagated through c_i and f_i only (the input h_{i-1} is detached)
    LC, critic i:     phi_i   <- Adam( d mean_b |l_i[b] - stopgrad(l_{i+1}[b])| / d phi_i )   (Eq. 7)
    DNI, group i < N: theta_i <- step( ghat_i . d h_i / d theta_i ),  ghat_i = M_i(h_i [, y])
    DNI, module i:    M_i     <- Adam( d mean_b ||ghat_i[b] - delta_i[b]||^2 / d M_i ),  delta_i the
                      next group's input gradient under ghat_{i+1} (the true one from group N)
    group N:          theta_N <- step( d mean_b l_N[b] / d theta_N ),  l_N = CE(h_N, y)

A local module learns only from its regression loss and a group only from its local module. All
gradients of an iteration use the parameters at its start (the paper's synchronous semantics,
§2.3). Per boundary and iteration the messages are the activation h_i forward and, backward, the
module's target: B per-sample losses for LC, the B x |h_i| input gradient for DNI, nothing for
DGL. Every worker reads the labels itself, since batches are a pure function of the step.

`pipelined=true` is the cross-batch variant of §5, labelled with its delay d: a group no longer
waits for its module's target. Module i's gradient for batch t is taken at its weights of
iteration t (phi_i^{t-d}) against the target of batch t, and applied at iteration t + d as its
t-th update; the group's signal at iteration t uses phi_i^{t-d}. Of the spec's two readings we
keep the forward's graph (at a snapshot of the weights) rather than recompute at the current
weights. d = 0 is the synchronous run, bit for bit.

Choices where the spec is silent (also in the README):
- Per-sample loss of a language model: the mean CE over the sequence's tokens, so LC's backward
  message stays B floats.
- An LC critic follows the boundary's shape: a feature map (C, H, W) gets the paper's
  conv3x3(128) - ReLU - FC (`models.lc_vgg.make_critic`); a sequence (T, d) a LayerNorm and a
  linear map to the vocabulary; a vector a linear map to the classes.
- A DNI module is "one conv plus output" with h_i's shape: conv3x3(128) - ReLU - conv3x3(C) on a
  feature map, linear(128) - ReLU - linear(|h|) otherwise; the output layer starts at zero (as
  Jaderberg et al.), optionally conditioned on one-hot labels (cDNI). Its loss is the squared
  error summed over h_i's elements, averaged over the batch.
- Local modules are built on every worker in group order from the same RNG state, so the
  distributed and the emulated runtime start from identical ones.
- A tensor tied across groups (GPT's embedding and output projection) is updated with the sum
  of the two groups' gradients, exchanged between the two workers every iteration, so the copies
  stay identical.
- Weight decay is the paper's (the optimizer's own, 5e-4 * theta under SGD); the released code's
  decay scaled by sum(delta_i) (§8) is not offered.

The LC baselines change one thing: `critic_training` regresses every critic onto l_N (the last
group sends its B losses to every critic, so update locking returns); `dgl` trains each auxiliary
classifier jointly with its group on CE, with the group's optimizer, and sends nothing backward.

`runtime=emulated` runs §4's single-process loop: every group's forward on detached inputs, every
gradient, then every step; under a delay, the modules' gradients wait d iterations in a queue.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mpbench.algorithm import Algorithm, OneModuleAndOptimizer, StepLoss, Worker
from mpbench.balance import check_balance, check_split, stage_sizes
from mpbench.channels import RemoteChannel
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import clip_gradients, make_optimizer, set_lr
from mpbench.staged_eval import evaluate_stages, model_dtype, recv_activation, send_activation
from models.blocks import BlockModel, EvalTotals, block_output_shapes
from models.gpt import TransformerBlock, block_like
from models.lc_vgg import CRITIC_WIDTH, count_flop_lc_rule, count_parameters_lc_rule, init_weights
from models.lc_vgg import make_critic as conv_critic

CRITIC_LOSSES = ("l1", "mse")
CRITIC_TARGETS = ("next", "last", "none")
RUNTIMES = ("distributed", "emulated")


def _check_positive_int(value, key: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ValueError(f"{key} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")


def _check_critic_convs(critic_convs) -> None:
    convs = critic_convs if isinstance(critic_convs, tuple) else (critic_convs,)
    if not convs or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in convs):
        raise ValueError(f"critic_convs must be a positive integer or a list of them, got {critic_convs!r}")


def _check_groups_and_balance(groups, balance) -> None:
    if groups is not None:
        _check_positive_int(groups, "groups")
    if balance == "profile":
        raise ValueError("balance must be uniform or a list of blocks per group (profile is not offered)")
    check_balance(balance)


@dataclass(frozen=True)
class LocalLearningSettings:
    """What every method of the family shares: the split, the schedule and the runtime."""

    groups: int | None = None  # N layer groups (N-1 local modules); null: gpus
    balance: Any = "uniform"  # uniform | [blocks per group]: where the local modules sit
    pipelined: bool = False  # the cross-batch variant (spec §5): targets arrive `delay` iterations late
    delay: int = 1  # d of the pipelined variant; d = 0 reproduces the synchronous run
    runtime: str = "distributed"  # distributed | emulated (one process, gpus=1, same updates)

    def __post_init__(self):
        _check_groups_and_balance(self.groups, self.balance)
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {self.runtime!r}")
        _check_positive_int(self.delay, "delay", allow_zero=True)

    @property
    def delay_in_use(self) -> int:
        return self.delay if self.pipelined else 0


@dataclass(frozen=True)
class LocalCriticSettings(LocalLearningSettings):
    critic_loss: str = "l1"  # l1 (the paper's Eq. 7) | mse (the authors' PyTorch code)
    critic_lr: float = 1e-4  # Adam, constant, no weight decay (paper §8)
    critic_every: int = 1  # critics step every k-th iteration, groups every iteration (Table 3)
    critic_target: str = "next"  # next: l_{i+1} (cascade) | last: l_N (critic training) | none: CE (DGL)
    critic_convs: Any = 1  # conv3x3(128) layers per critic on a feature map: one for all, or a list (Table 2)
    critic_blocks: int = 0  # Transformer blocks before a sequence critic's LayerNorm + linear (1: the optional head)

    def __post_init__(self):
        super().__post_init__()
        _check_critic_convs(self.critic_convs)
        _check_positive_int(self.critic_blocks, "critic_blocks", allow_zero=True)
        if self.critic_target not in CRITIC_TARGETS:
            raise ValueError(f"critic_target must be one of {', '.join(CRITIC_TARGETS)}; got {self.critic_target!r}")
        if self.critic_loss not in CRITIC_LOSSES:
            raise ValueError(f"critic_loss must be one of {', '.join(CRITIC_LOSSES)}; got {self.critic_loss!r}")
        if not self.critic_lr > 0:
            raise ValueError(f"critic_lr must be positive, got {self.critic_lr}")
        _check_positive_int(self.critic_every, "critic_every")
        if self.pipelined and self.critic_target == "none":
            raise ValueError("pipelined: dgl sends nothing backward, so it has no delay to choose; "
                             "drop algorithm.pipelined")

    @property
    def local_lr(self) -> float:
        return self.critic_lr

    @property
    def local_every(self) -> int:
        return self.critic_every


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


@dataclass(frozen=True)
class DNISettings(LocalLearningSettings):
    synthesizer_lr: float = 1e-4  # the synthetic-gradient modules: Adam, constant, no weight decay
    synthesizer_every: int = 1  # modules step every k-th iteration, groups every iteration
    synthesizer_width: int = CRITIC_WIDTH  # filters (or units) of the module's hidden layer
    conditioned: bool = False  # cDNI: the module also reads the one-hot labels

    def __post_init__(self):
        super().__post_init__()
        if not self.synthesizer_lr > 0:
            raise ValueError(f"synthesizer_lr must be positive, got {self.synthesizer_lr}")
        _check_positive_int(self.synthesizer_every, "synthesizer_every")
        _check_positive_int(self.synthesizer_width, "synthesizer_width")

    @property
    def local_lr(self) -> float:
        return self.synthesizer_lr

    @property
    def local_every(self) -> int:
        return self.synthesizer_every


@dataclass(frozen=True)
class SubModelBackpropSettings:
    sub_model: int = 1  # k: groups 1..k and critic k of the local-critic split below
    groups: int | None = None  # N of that split; null: the length of balance
    balance: Any = "uniform"  # uniform | [blocks per group], as for local_critic
    critic_convs: Any = 1  # as for local_critic
    critic_blocks: int = 0  # as for local_critic

    def __post_init__(self):
        _check_positive_int(self.sub_model, "sub_model")
        _check_groups_and_balance(self.groups, self.balance)
        _check_critic_convs(self.critic_convs)
        _check_positive_int(self.critic_blocks, "critic_blocks", allow_zero=True)

    @property
    def num_groups(self) -> int | None:
        return self.groups if self.groups is not None else (
            None if isinstance(self.balance, str) else len(self.balance))


def make_local_critic(shape: torch.Size, outputs: int, convs: int = 1, blocks: int = 0,
                      make_block: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A critic for a boundary tensor of `shape` (batch first) predicting `outputs` logits.

    A feature map gets the paper's critic: `convs` conv3x3 layers of CRITIC_WIDTH (128) filters
    with bias and ReLU, then one FC layer; the width of the extra layers is not published, 128 is
    the natural reading (spec §7). A sequence gets `blocks` Transformer blocks from `make_block`,
    then a LayerNorm and a linear map. A vector gets a linear map.
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
        head = [make_block() for _ in range(blocks)]
        return nn.Sequential(*head, nn.LayerNorm(shape[2]), nn.Linear(shape[2], outputs))
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(shape[1:]).numel()), outputs))


def check_critic_shape(algorithm: str, settings, model: str, N: int) -> None:
    """ConfigError (one line) unless `critic_convs` has one entry per critic and `critic_blocks`
    meets a Transformer's residual stream."""
    if isinstance(settings.critic_convs, tuple) and len(settings.critic_convs) != N - 1:
        raise ConfigError(f"{algorithm}: critic_convs={list(settings.critic_convs)} needs one entry per critic "
                          f"({N - 1} for N={N} groups)")
    if settings.critic_blocks and model != "gpt":
        raise ConfigError(f"{algorithm}: critic_blocks={settings.critic_blocks} puts Transformer blocks in a "
                          f"critic, which needs model gpt (got {model}); use critic_convs for a CNN")


def make_critics(model: BlockModel, boundaries: list[torch.Size], outputs: int, critic_convs,
                 critic_blocks: int) -> list[nn.Module]:
    """The critics after groups 1..N-1, built in order (so every worker draws the same weights).
    A sequence critic's Transformer blocks are shaped like the model's own."""
    convs = critic_convs if isinstance(critic_convs, tuple) else (critic_convs,) * len(boundaries)
    transformer = next((b for b in model.blocks if isinstance(b, TransformerBlock)), None)
    make_block = (lambda: block_like(transformer)) if transformer is not None else None
    return [make_local_critic(shape, outputs, c, critic_blocks, make_block) for shape, c in zip(boundaries, convs)]


class SyntheticGradient(nn.Module):
    """DNI's module M_i: predicts dL/dh_i, a tensor of h_i's shape, from h_i (and the labels).

    "One conv plus output" (spec §12): conv3x3(width) - ReLU - conv3x3(C) on a (C, H, W) feature
    map, linear(width) - ReLU - linear(|h|) on a sequence's positions or a vector. The output layer
    starts at zero, so the first synthetic gradients are zero, as in Jaderberg et al.
    """

    def __init__(self, shape: torch.Size, classes: int, conditioned: bool, width: int):
        super().__init__()
        self.classes = classes if conditioned else 0
        if len(shape) == 4:
            channels = shape[1]
            self.hidden = nn.Conv2d(channels + self.classes, width, 3, padding=1)
            self.out = nn.Conv2d(width, channels, 3, padding=1)
        else:
            features = shape[-1] if len(shape) == 3 else int(torch.Size(shape[1:]).numel())
            self.hidden = nn.Linear(features + self.classes, width)
            self.out = nn.Linear(width, features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = h if h.dim() in (3, 4) else h.flatten(1)
        if self.classes:
            onehot = F.one_hot(labels, self.classes).to(h.dtype)
            if h.dim() == 4:  # one channel per class, constant over the map
                onehot = onehot[:, :, None, None].expand(-1, -1, *h.shape[2:])
            x = torch.cat([x, onehot], dim=1 if h.dim() == 4 else -1)
        return self.out(F.relu(self.hidden(x))).reshape(h.shape)


def per_sample_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """l[b]: cross-entropy of sample b (for a sequence, the mean over its tokens); shape (B,)."""
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return losses.reshape(len(targets), -1).mean(dim=1)


def critic_objective(kind: str, own: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_b |l_i[b] - l_{i+1}[b]| (l1) or its square (mse); `target` is a constant."""
    gap = own - target.detach()
    return gap.abs().mean() if kind == "l1" else gap.pow(2).mean()


def synthetic_gradient_objective(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_b ||ghat_i[b] - delta_i[b]||^2, the squared error summed over h_i's elements."""
    return (predicted - target.detach()).pow(2).sum() / len(predicted)


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


@dataclass(frozen=True)
class GroupSplit:
    """The model's blocks cut into N consecutive layer groups."""

    sizes: list[int]  # blocks per group
    blocks: list[range]  # the blocks of each group
    outputs: list[tuple[torch.Size, torch.dtype]]  # h_i: each group's output shape (batch first) and dtype
    classes: int  # logits of the model's output (classes, or the vocabulary)

    @classmethod
    def of(cls, model: BlockModel, example_inputs: torch.Tensor, groups: int, balance) -> GroupSplit:
        sizes = stage_sizes(balance, len(model.blocks), groups)
        starts = [sum(sizes[:i]) for i in range(groups)]
        blocks = [range(starts[i], starts[i] + sizes[i]) for i in range(groups)]
        shapes = block_output_shapes(model, example_inputs)
        return cls(sizes, blocks, [shapes[b[-1]] for b in blocks], shapes[-1][0][-1])


def lc_rule_counts(module: nn.Module) -> dict:
    """Parameters and "FLOP" as LC's Table 5 counts them (`models.lc_vgg`)."""
    return {"parameters": count_parameters_lc_rule(module), "flop_lc_rule": count_flop_lc_rule(module)}


class LocalLearning(Algorithm):
    """What the family shares: the groups on the workers, their local modules and optimizers, the
    delay line of the modules' targets, tied tensors and the step. A method says how its local
    modules are built, whose message is module i's target, and how one worker (or the emulation)
    computes its gradients."""

    local_name = "local_modules"  # in model_state's names

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

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec,
                 settings: LocalLearningSettings, example_inputs: torch.Tensor):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        self.model, self.settings, self.task = model, settings, model.task
        self.emulated = settings.runtime == "emulated"
        self.N = N = settings.groups if settings.groups is not None else worker.world_size
        self.split = GroupSplit.of(model, example_inputs, N, settings.balance)
        # All of them, in group order on every worker: identical RNG draws everywhere.
        self.every_local_module = [m.to(worker.device, worker.dtype) for m in self.make_local_modules()]
        self.here = list(range(N)) if self.emulated else [worker.rank]
        self.groups = {i: nn.Sequential(*(model.blocks[b] for b in self.split.blocks[i])) for i in self.here}
        self.local_modules = {i: self.every_local_module[i] for i in self.here if i < N - 1}
        owned: set[int] = set()  # a tensor tied across groups held here steps once, with its first group
        self.group_optimizers = {}
        for i, group in self.groups.items():
            params = [p for p in group.parameters() if id(p) not in owned]
            owned.update(map(id, params))
            if self.joint and i in self.local_modules:
                params += list(self.local_modules[i].parameters())
            self.group_optimizers[i] = make_optimizer(params, optimizer)
        local_spec = OptimizerSpec(name="adam", lr=settings.local_lr)
        self.local_optimizers = {} if self.joint else {
            i: make_optimizer(m.parameters(), local_spec) for i, m in self.local_modules.items()}
        self.delay = settings.delay_in_use
        # Emulated: the modules' gradients of the last d batches; distributed: this worker's
        # module predictions (and the weights they used) whose targets have not arrived yet.
        self.delayed: deque = deque()
        self.iteration = 0
        self.step_seconds: list[float] = []  # per iteration: time in train_step ...
        self.wait_seconds: list[float] = []  # ... and of it, blocked on receives
        # A tensor tied across groups (GPT's embedding = output projection) takes the sum of the
        # groups' parts, so its copies on the first and last worker stay identical.
        group_of_block = {b: i for i, blocks in enumerate(self.split.blocks) for b in blocks}
        self.ties = []  # (tensor here, the groups using it)
        for tie in model.ties:
            users = sorted({group_of_block[b] for b, _ in tie.uses})
            if len(users) > 1 and set(users) & set(self.here):
                self.ties.append((model.blocks[tie.uses[0][0]].get_parameter(tie.uses[0][1]), users))
        if not self.emulated:
            self._connect(worker)

    # --- what a method defines ---------------------------------------------------------------

    joint = False  # True: a local module learns with its group, from the group's loss (DGL)

    def make_local_modules(self) -> list[nn.Module]:
        """The local modules after groups 1..N-1 (self.split says their inputs)."""
        raise NotImplementedError

    def target_source(self, i: int) -> int | None:
        """The group whose message is local module i's regression target (None: no target)."""
        raise NotImplementedError

    def target_shape(self, i: int) -> tuple[torch.Size, torch.dtype]:
        """Shape and dtype of local module i's target message."""
        raise NotImplementedError

    def local_objective(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _worker_gradients(self, inputs, targets) -> tuple[dict, dict, float | None]:
        """This worker's group: (its gradients, its local module's gradients of batch t - d, the loss)."""
        raise NotImplementedError

    def _emulated_gradients(self, inputs, targets) -> tuple[dict, dict, float]:
        """Every group and module at once: (groups' gradients, modules' gradients of this batch, the loss)."""
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------------

    def _connect(self, worker: Worker) -> None:
        """Channels: h_{i-1} in and h_i out; this group's message out to every local module that
        regresses it, and this module's target in from its source."""
        i, t, d = worker.rank, worker.transport, worker.device
        N, outputs = self.N, self.split.outputs
        self.activation_in = RemoteChannel(t, i - 1, 1, *outputs[i - 1], d) if i > 0 else None
        self.activation_out = RemoteChannel(t, i + 1, 1, *outputs[i], d) if i < N - 1 else None
        source = self.target_source(i) if i < N - 1 else None
        self.target_in = RemoteChannel(t, source, 2, *self.target_shape(i), d) if source is not None else None
        self.target_out = [RemoteChannel(t, j, 2, *self.target_shape(j), d)
                           for j in range(N - 1) if self.target_source(j) == i]
        self.tie_channels = [{j: RemoteChannel(t, j, 3 + n, tensor.shape, tensor.dtype, d) for j in users if j != i}
                             for n, (tensor, users) in enumerate(self.ties)]

    def _take(self, channel) -> torch.Tensor:
        """Receive from `channel`, counting the time this worker waits."""
        started = time.perf_counter()
        message = channel.take()
        self.wait_seconds[-1] += time.perf_counter() - started
        return message

    def _tie_senders(self) -> list:
        """Hooks that send this group's part of each tied tensor to the other groups using it the
        moment autograd has computed it, so that the other worker need not wait for the rest of
        this group's backward (the head's part comes first in the last group's backward)."""
        if self.emulated:
            return []

        def sender(channels):
            def send(grad):
                for channel in channels.values():
                    channel.put(grad)
            return send
        return [tensor.register_hook(sender(channels)) for (tensor, _), channels in zip(self.ties, self.tie_channels)]

    def _add_tie_parts(self, grads: dict) -> None:
        """Add the other groups' parts of each tied tensor to this group's."""
        for (tensor, _), channels in zip(self.ties, self.tie_channels):
            total = grads[tensor].clone()
            for channel in channels.values():
                total += self._take(channel)  # two parts: a + b == b + a, so both copies agree bit for bit
            grads[tensor] = total

    def _weights(self, i: int) -> dict[str, torch.Tensor]:
        """Local module i's weights for this batch's forward: the live ones, or a snapshot on a
        worker that takes the gradient only after d more steps (the live ones change in place)."""
        weights = dict(self.local_modules[i].named_parameters())
        if self.emulated or self.delay == 0:
            return weights
        return {name: w.detach().clone().requires_grad_() for name, w in weights.items()}

    def _local_gradients(self, i: int, predicted: torch.Tensor, weights: dict, target: torch.Tensor) -> dict:
        """Local module i's gradients from its regression of `target`, through `predicted`'s
        graph at `weights`, keyed by the module's live parameters."""
        grads = torch.autograd.grad(self.local_objective(predicted, target), list(weights.values()))
        return dict(zip(self.local_modules[i].parameters(), grads))

    def _delayed_local_gradients(self, i: int, predicted: torch.Tensor, weights: dict) -> dict:
        """Queue this batch's prediction; return the gradients of the one from d batches ago,
        whose target has arrived by now (none during the first d iterations)."""
        self.delayed.append((predicted, weights))
        if len(self.delayed) <= self.delay:
            return {}
        predicted, weights = self.delayed.popleft()
        return self._local_gradients(i, predicted, weights, self._take(self.target_in))

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)  # every group needs the labels; the first also the inputs

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        started = time.perf_counter()
        self.wait_seconds.append(0.0)
        if self.emulated:
            grads, local_grads, loss = self._emulated_gradients(inputs, targets)
            self.delayed.append(local_grads)
            local_grads = self.delayed.popleft() if len(self.delayed) > self.delay else {}
        else:
            grads, local_grads, loss = self._worker_gradients(inputs, targets)
            self._add_tie_parts(grads)
        for optimizer in self.group_optimizers.values():
            set_lr(optimizer, lr)  # local modules keep their constant learning rate
        for param, grad in grads.items():
            param.grad = grad
        for optimizer in self.group_optimizers.values():
            optimizer.step()
        batch = self.iteration - self.delay  # whose module gradients arrived in this iteration
        if local_grads and batch % self.settings.local_every == 0:
            for param, grad in local_grads.items():
                param.grad = grad
            for optimizer in self.local_optimizers.values():
                optimizer.step()
        self.iteration += 1  # each .grad stays the gradient of its last step
        self.step_seconds.append(time.perf_counter() - started)
        return StepLoss(loss, len(targets)) if loss is not None else None

    def _group_backward(self, i: int, output: torch.Tensor, grad_output: torch.Tensor | None = None,
                        x: torch.Tensor | None = None) -> tuple[dict, torch.Tensor | None]:
        """Backpropagate `output` (with `grad_output`) through group i alone: its parameters'
        gradients and, if the group's input `x` is given, the gradient there."""
        theta = list(self.groups[i].parameters())
        hooks = self._tie_senders()
        try:
            grads = torch.autograd.grad(output, theta + ([x] if x is not None else []), grad_outputs=grad_output)
        finally:
            for hook in hooks:
                hook.remove()
        return dict(zip(theta, grads)), (grads[-1] if x is not None else None)

    def evaluate(self, batches) -> EvalTotals:
        if self.emulated:
            return self.model.evaluate(batches)
        return evaluate_stages(self.model, self.groups, lambda s: s, self.N, batches, self.worker.transport)

    def model_state(self) -> dict[str, torch.Tensor]:
        state = {f"blocks.{b}.{name}": value for i in self.groups for b in self.split.blocks[i]
                 for name, value in self.model.blocks[b].state_dict().items()}
        state.update({f"{self.local_name}.{i}.{name}": value for i, module in self.local_modules.items()
                      for name, value in module.state_dict().items()})
        return state

    @classmethod
    def checkpoint_gap(cls, settings: LocalLearningSettings) -> str | None:
        if settings.delay_in_use > 0:
            return "under a delay the modules' pending targets hold autograd graphs"
        return None

    def training_state(self) -> dict:
        def states(objects: dict) -> dict:
            return {str(i): o.state_dict() for i, o in objects.items()}
        return {"groups": states(self.groups), "local_modules": states(self.local_modules),
                "group_optimizers": states(self.group_optimizers),
                "local_optimizers": states(self.local_optimizers), "iteration": self.iteration}

    def load_training_state(self, state: dict) -> None:
        for key in ("groups", "local_modules", "group_optimizers", "local_optimizers"):
            for i, obj in getattr(self, key).items():
                obj.load_state_dict(state[key][str(i)])
        self.iteration = state["iteration"]  # critic_every counts from the run's first step

    def summary(self) -> dict:
        return {"groups": self.N, "blocks_per_group": self.split.sizes, "groups_here": self.here,
                "runtime": self.settings.runtime, "delay": self.delay,
                "schedule": f"pipelined, delay {self.delay}" if self.settings.pipelined else "synchronous",
                "step_s_per_iter": statistics.median(self.step_seconds) if self.step_seconds else None,
                "wait_s_per_iter": statistics.median(self.wait_seconds) if self.wait_seconds else None,
                "compute_s_per_iter": statistics.median(s - w for s, w in zip(self.step_seconds, self.wait_seconds))
                if self.step_seconds else None,
                f"{self.local_name}_parameters": {str(i): sum(p.numel() for p in m.parameters())
                                                  for i, m in self.local_modules.items()}}


class LocalCritic(LocalLearning):
    """`local_critic`, `critic_training`, `dgl`: group i < N learns from the CE of its critic."""

    Settings = LocalCriticSettings
    local_name = "critics"

    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        super().check(run, num_blocks)
        s = run.algorithm_settings
        N = s.groups if s.groups is not None else run.gpus
        check_critic_shape(run.algorithm, s, run.model, N)

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec,
                 settings: LocalCriticSettings, example_inputs: torch.Tensor):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        critics, blocks, N = self.every_local_module, self.split.blocks, self.N
        # Sub-model k: groups 1..k and critic k (spec Table 4-5), counted by the paper's rule.
        self.sub_models = [lc_rule_counts(nn.ModuleList([*model.blocks[:blocks[k][-1] + 1], critics[k]]))
                           for k in range(N - 1)]
        self.main_model = lc_rule_counts(model)
        # Costs for progressive inference: the exit model's own (the paper's accounting) and the
        # cumulative one (groups 1..k and every critic tried on the way).
        group_flop = [count_flop_lc_rule(nn.ModuleList([model.blocks[b] for b in bs])) for bs in blocks]
        critic_flop = [count_flop_lc_rule(c) for c in critics]
        self.exit_cost = [m["flop_lc_rule"] for m in self.sub_models] + [self.main_model["flop_lc_rule"]]
        self.cumulative_cost = [sum(group_flop[:k + 1]) + sum(critic_flop[:k + 1]) for k in range(N - 1)]
        self.cumulative_cost.append(sum(group_flop) + sum(critic_flop))
        self.exit_facts: dict = {}

    @property
    def joint(self) -> bool:
        return self.settings.critic_target == "none"  # DGL: auxiliary and group form one model

    def make_local_modules(self) -> list[nn.Module]:
        return make_critics(self.model, [shape for shape, _ in self.split.outputs[:-1]], self.split.classes,
                            self.settings.critic_convs, self.settings.critic_blocks)

    def target_source(self, i: int) -> int | None:
        """The group whose per-sample loss critic i regresses: i+1 (LC), N (critic training), none (DGL)."""
        if i == self.N - 1 or self.settings.critic_target == "none":
            return None
        return i + 1 if self.settings.critic_target == "next" else self.N - 1

    def target_shape(self, i: int) -> tuple[torch.Size, torch.dtype]:
        return torch.Size([self.split.outputs[0][0][0]]), self.worker.dtype  # B per-sample losses

    def local_objective(self, predicted, target) -> torch.Tensor:
        return critic_objective(self.settings.critic_loss, predicted, target)

    def _critic_signal(self, i: int, h: torch.Tensor, targets, weights: dict) -> tuple[torch.Tensor, dict]:
        """l_i = per-sample CE of critic i (at `weights`) on h_i, and group i's gradients from
        mean l_i, backpropagated through the critic into f_i alone (for DGL the critic's too)."""
        h_in = h.detach().requires_grad_()
        own = per_sample_loss(functional_call(self.local_modules[i], weights, (h_in,)), targets)
        grads = {}
        if self.joint:
            delta, *phi_grads = torch.autograd.grad(own.mean(), [h_in, *weights.values()])
            grads.update(zip(self.local_modules[i].parameters(), phi_grads))
        else:  # the critic's graph stays for its own regression
            (delta,) = torch.autograd.grad(own.mean(), [h_in], retain_graph=True)
        grads.update(self._group_backward(i, h, delta)[0])
        return own, grads

    def _worker_gradients(self, inputs, targets):
        """Group i: forward, send h_i on, send l_i back, regress the target of batch t - d."""
        i = self.worker.rank
        x = inputs if i == 0 else self._take(self.activation_in)
        h = self.groups[i](x)
        if i == self.N - 1:
            if self.target_out:
                own = per_sample_loss(h.detach(), targets)
                for channel in self.target_out:
                    channel.put(own)
            loss = self.model.loss(h, targets)
            grads, _ = self._group_backward(i, loss)
            return grads, {}, loss.item()
        self.activation_out.put(h.detach())
        weights = self._weights(i)
        own, grads = self._critic_signal(i, h, targets, weights)
        for channel in self.target_out:
            channel.put(own.detach())
        local_grads = {} if self.joint else self._delayed_local_gradients(i, own, weights)
        return grads, local_grads, None

    def _emulated_gradients(self, inputs, targets):
        """Spec §4: every forward at the pre-update parameters, then every gradient."""
        h, outputs = inputs, []
        for i in range(self.N):
            h = self.groups[i](h.detach())
            outputs.append(h)
        loss = self.model.loss(outputs[-1], targets)
        grads, _ = self._group_backward(self.N - 1, loss)
        losses = {self.N - 1: per_sample_loss(outputs[-1].detach(), targets)}  # l_N
        weights = {i: self._weights(i) for i in range(self.N - 1)}
        for i in range(self.N - 1):
            losses[i], group_grads = self._critic_signal(i, outputs[i], targets, weights[i])
            for param, grad in group_grads.items():
                grads[param] = grad if param not in grads else grads[param] + grad  # a tie: sum the parts
        local_grads = {}
        for i in range(self.N - 1):
            source = self.target_source(i)
            if source is not None:
                local_grads.update(self._local_gradients(i, losses[i], weights[i], losses[source]))
        return grads, local_grads, loss.item()

    def evaluate(self, batches) -> EvalTotals:
        if self.task != "classification" or self.N == 1:
            return super().evaluate(batches)
        # One pass gives the main model's totals and every sub-model's logits.
        outputs = self._exit_logits(batches)
        if outputs is None:  # not the last worker: the trainer sums the totals
            return EvalTotals()
        labels = torch.cat([y for _, y in batches])
        self.exit_facts = exit_metrics(outputs, labels, self.exit_cost, self.cumulative_cost)
        return self.model.eval_totals(outputs[-1], labels)

    @torch.no_grad()
    def _exit_logits(self, batches) -> list[torch.Tensor] | None:
        """Logits of sub-models 1..N-1 and of the main model on `batches`, gathered where the last
        group is (None elsewhere). Harness traffic: activations go on as in the evaluation, each
        critic's logits to the last worker."""
        critics = self.local_modules
        modules = [*self.groups.values(), *critics.values()]
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
                        if j not in critics:
                            logits[j].append(recv_activation(transport, j, h.dtype, x.device))
                    continue
                z = critics[i](h)
                if i + 1 not in self.groups:
                    send_activation(transport, h, i + 1)
                if last in self.groups:
                    logits[i].append(z)
                else:
                    send_activation(transport, z, last)
        for m, mode in zip(modules, modes):
            m.train(mode)
        return [torch.cat(z) for z in logits] if last in self.groups else None

    def summary(self) -> dict:
        return {**super().summary(), "critic_loss": self.settings.critic_loss,
                "critic_every": self.settings.critic_every, "critic_target": self.settings.critic_target,
                "sub_models": self.sub_models, "main_model": self.main_model, **self.exit_facts}


class SyntheticGradients(LocalLearning):
    """`dni`: group i < N backpropagates the synthetic gradient ghat_i = M_i(h_i [, y]); M_i
    regresses the gradient group i+1 computes at its input (Jaderberg et al. 2017, Eq. 1-2 with
    the bootstrapped target; the true gradient from the last group)."""

    Settings = DNISettings
    local_name = "synthesizers"

    def make_local_modules(self) -> list[nn.Module]:
        s = self.settings
        return [SyntheticGradient(shape, self.split.classes, s.conditioned, s.synthesizer_width)
                for shape, _ in self.split.outputs[:-1]]

    def target_source(self, i: int) -> int:
        return i + 1

    def target_shape(self, i: int) -> tuple[torch.Size, torch.dtype]:
        return self.split.outputs[i]  # dL/dh_i: B x |h_i|

    def local_objective(self, predicted, target) -> torch.Tensor:
        return synthetic_gradient_objective(predicted, target)

    def _worker_gradients(self, inputs, targets):
        """Group i: forward, send h_i on, backpropagate ghat_i (or the loss), send the gradient at
        the input back as M_{i-1}'s target, regress M_i onto the target of batch t - d."""
        i, last = self.worker.rank, self.N - 1
        x = inputs if i == 0 else self._take(self.activation_in).requires_grad_()
        h = self.groups[i](x)
        if i < last:
            self.activation_out.put(h.detach())
            weights = self._weights(i)
            predicted = functional_call(self.local_modules[i], weights, (h.detach(), targets))
            grads, input_grad = self._group_backward(i, h, predicted.detach(), x if i > 0 else None)
            loss = None
        else:
            loss_tensor = self.model.loss(h, targets)
            grads, input_grad = self._group_backward(i, loss_tensor, None, x if i > 0 else None)
            loss = loss_tensor.item()
        for channel in self.target_out:
            channel.put(input_grad)
        local_grads = self._delayed_local_gradients(i, predicted, weights) if i < last else {}
        return grads, local_grads, loss

    def _emulated_gradients(self, inputs, targets):
        """Every forward at the pre-update parameters (inputs detached), then every gradient."""
        xs, hs = [], []
        for i in range(self.N):
            x = inputs if i == 0 else hs[-1].detach().requires_grad_()
            xs.append(x)
            hs.append(self.groups[i](x))
        loss = self.model.loss(hs[-1], targets)
        weights = {i: self._weights(i) for i in range(self.N - 1)}
        predicted = {i: functional_call(self.local_modules[i], weights[i], (hs[i].detach(), targets))
                     for i in range(self.N - 1)}
        grads, input_grads = {}, {}
        for i in reversed(range(self.N)):
            output, grad_output = (loss, None) if i == self.N - 1 else (hs[i], predicted[i].detach())
            group_grads, input_grads[i] = self._group_backward(i, output, grad_output, xs[i] if i > 0 else None)
            for param, grad in group_grads.items():
                grads[param] = grad if param not in grads else grads[param] + grad  # a tie: sum the parts
        local_grads = {}
        for i in range(self.N - 1):
            local_grads.update(self._local_gradients(i, predicted[i], weights[i], input_grads[i + 1]))
        return grads, local_grads, loss.item()


class SubModelBackprop(OneModuleAndOptimizer, Algorithm):
    """`sub_model_backprop`, Table 4's "BP sub k": sub-model k of a local-critic split (groups
    1..k and critic k, built exactly as `local_critic` builds them, so critic k starts from the
    same weights) trained end to end by backprop on one worker, with the run's optimizer for every
    part. Its held-out accuracy stands beside local_critic's sub_model_accuracy[k-1]."""

    Settings = SubModelBackpropSettings

    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        s, name = run.algorithm_settings, run.algorithm
        if run.gpus != 1:
            raise ConfigError(f"{name} trains by backprop on one worker; set gpus=1 (got gpus={run.gpus})")
        N = s.num_groups
        if N is None:
            raise ConfigError(f"{name}: set algorithm.groups (or a balance list) to the local-critic split "
                              f"whose sub-model it trains")
        check_split(name, s.balance, num_blocks, N, f"groups N={N}")
        if not s.sub_model <= N - 1:
            raise ConfigError(f"{name}: algorithm.sub_model={s.sub_model} must be in 1..{N - 1}: sub-model k "
                              f"ends at critic k, and N={N} groups have {N - 1}")
        check_critic_shape(name, s, run.model, N)

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec,
                 settings: SubModelBackpropSettings, example_inputs: torch.Tensor):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        self.model, self.settings, self.optimizer_spec = model, settings, optimizer
        self.split = GroupSplit.of(model, example_inputs, settings.num_groups, settings.balance)
        k = settings.sub_model
        critics = make_critics(model, [shape for shape, _ in self.split.outputs[:-1]], self.split.classes,
                               settings.critic_convs, settings.critic_blocks)
        self.end = self.split.blocks[k - 1][-1] + 1  # blocks 0..end-1 are groups 1..k
        self.critic = critics[k - 1].to(worker.device, worker.dtype)
        self.net = nn.Sequential(*model.blocks[:self.end], self.critic)
        self.optimizer = make_optimizer(self.net.parameters(), optimizer)
        self.counts = lc_rule_counts(self.net)

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)

    def train_step(self, inputs, targets, lr) -> StepLoss:
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model.loss(self.net(inputs), targets)
        loss.backward()
        clip_gradients(list(self.net.parameters()), self.optimizer_spec)
        self.optimizer.step()
        return StepLoss(loss.item(), len(targets))

    @torch.no_grad()
    def evaluate(self, batches) -> EvalTotals:
        self.net.eval()
        totals = EvalTotals()
        for inputs, targets in batches:
            totals += self.model.eval_totals(self.net(inputs), targets)
        self.net.train()
        return totals

    def model_state(self) -> dict[str, torch.Tensor]:
        state = {f"blocks.{b}.{name}": value for b in range(self.end)
                 for name, value in self.model.blocks[b].state_dict().items()}
        state.update({f"critics.{self.settings.sub_model - 1}.{name}": value
                      for name, value in self.critic.state_dict().items()})
        return state

    def trained_module_and_optimizer(self):
        return self.net, self.optimizer

    def summary(self) -> dict:
        return {"sub_model": self.settings.sub_model, "groups": self.settings.num_groups,
                "blocks_per_group": self.split.sizes, "sub_models": [self.counts]}
