"""`ddg`, `features_replay`, `ouroboros`: decoupled backpropagation with delayed gradients.

One algorithm, three configurations (spec stale_gradient.md). The model's blocks are cut into K
modules, k = 1..K from input to output. The forward is not decoupled: batch t passes through all
modules in iteration t with the current weights. The backward is: module k applies at iteration
t the gradient of the batch of iteration t-K+k (its delay is K-k; module K is fresh), so no
module waits for the error gradient of the batch it has just forwarded (spec §1):

    g_k^t = grad_{w_k} f_{x(t-K+k)}(w^{t-K+k}),    w_k^{t+1} = w_k^t - lr(t) * g_k^t      (DDG eq. 3)

Messages produced in iteration t are consumed in t+1: module k+1's backward at iteration t yields
the error of exactly the batch module k backpropagates at t+1.

Placements (spec §3): `linear` puts module k on worker k (`ddg`, `features_replay`); `ring` puts
K modules on K-1 workers, modules 1 and K on worker 1 (`ouroboros`, Yang et al. 2019, Fig. 2), so
the tied embedding V lives once, on worker 1. What enters module k's delayed backward is the
`semantics` (spec §2):

- S, stashed: the forward of batch s ran on a copy of w_k^s kept until its backward, so the
  gradient is exactly the formula above (DDG's theory; PipeDream's weight stashing).
- H, hybrid: the graph of batch s is kept, but its Jacobians read the current weights (what the
  DDG code computes by updating `.data` in place).
- R, replay: only module k's input of batch s is kept; the module is recomputed at the current
  weights (Features Replay, Huo et al. 2018).

A tied tensor (GPT's V: token embedding = output projection) gets one update per iteration from
the sum of its parts, each of its own age: the output-projection part of batch t and the
input-lookup part of batch t-K+1 (spec §3, "tied V gradient"). On the ring both parts arise on
worker 1; under the linear placement the two workers holding a copy exchange their parts and
add them in the same order, so the copies stay bit-identical.

Choices where the spec is silent (also in the README):
- Optimizers: one per module, plus one per tied tensor (its parts have different ages), each
  stepped only when it has a gradient: a module takes no step, not even a zero one, before its
  first gradient at t = K-k (spec §4.1). Every optimizer takes lr(t) of the global step t, so
  module k's first step uses lr(K-k) and the linear warm-up (`optimizer.warmup_steps`, the same
  schedule as the baselines) is partly over before the lower modules start (spec §4.2).
- Clipping (`optimizer.clip_norm`): one norm per module and one per tied tensor, since a global
  norm would mix gradients of different batches (spec §8). With K = 1 all parameters share one
  age and form one group: the global clip of `backprop`.
- Messages are tagged per boundary and direction; a tied tensor's part is sent the moment
  autograd computes it (a tensor hook), so the worker holding the other copy waits as little as
  possible before its step.
- R replays a module with the RNG state of its original forward (same dropout masks) and
  restores the BatchNorm statistics afterwards, so they are updated once per batch.
- Checkpoints (`checkpoint_every`, SIGTERM): a worker's state holds, besides weights and
  optimizers, each batch still owed a backward as its input, the RNG state of its forward and,
  under S, its stashed weights; loading runs those forwards again, which rebuilds the very graphs
  the uninterrupted run would have used. The errors sent in a step for the next step's delayed
  backwards are received at the checkpoint and saved with it. H is not checkpointed: its graphs
  hold activations computed with weights that it no longer keeps.

Runtimes: `distributed` runs the workers; `emulated` runs in one process: S as the FIFO of
gradient blocks (spec §6: one ordinary backward per step, module k's block delayed by K-k steps),
H and R as the serialised workers (the loop below with every module on one worker).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from mpbench.algorithm import Algorithm, StepLoss, Worker
from mpbench.balance import (agreed_split, check_balance, check_split, ring_split_minimising_max,
                             split_minimising_max)
from mpbench.channels import Channel, LocalChannel, RemoteChannel
from mpbench.config import OptimizerSpec, RunSpec
from mpbench.errors import ConfigError
from mpbench.optim import clip_gradients, make_optimizer, set_lr
from mpbench.staged_eval import evaluate_stages
from models.blocks import BlockModel, EvalTotals, block_output_shapes

SEMANTICS = ("S", "H", "R")
PLACEMENTS = ("linear", "ring")
RUNTIMES = ("distributed", "emulated")


@dataclass(frozen=True)
class StaleGradientSettings:
    placement: str = "linear"  # linear: module k on worker k; ring: modules 1 and K share worker 1
    semantics: str = "S"  # S stashed weights | H stored graph, current weights | R replay
    modules: int | None = None  # K; null: gpus (linear) or gpus + 1 (ring)
    balance: Any = "uniform"  # uniform | profile | [blocks per module]
    runtime: str = "distributed"  # distributed | emulated (one process)

    def __post_init__(self):
        for key, valid in (("placement", PLACEMENTS), ("semantics", SEMANTICS), ("runtime", RUNTIMES)):
            if getattr(self, key) not in valid:
                raise ValueError(f"{key} must be one of {', '.join(valid)}; got {getattr(self, key)!r}")
        if self.modules is not None and (isinstance(self.modules, bool) or self.modules < 1):
            raise ValueError(f"modules must be a positive integer or null, got {self.modules!r}")
        check_balance(self.balance)


@dataclass(frozen=True)
class DDGSettings(StaleGradientSettings):
    """Huo et al. 2018a (DDG): linear placement, exact stale gradients."""


@dataclass(frozen=True)
class FeaturesReplaySettings(StaleGradientSettings):
    """Huo et al. 2018b (Features Replay): linear placement, recompute from the stored input."""

    semantics: str = "R"


@dataclass(frozen=True)
class OuroborosSettings(StaleGradientSettings):
    """Yang et al. 2019 (Ouroboros): K modules on K-1 workers in a ring, exact stale gradients."""

    placement: str = "ring"


def module_count(settings: StaleGradientSettings, gpus: int) -> int:
    """K: `modules` if set, else one module per worker (linear) or one more (ring)."""
    if settings.modules is not None:
        return settings.modules
    return gpus + 1 if settings.placement == "ring" else gpus


def delay_of_module(k: int, num_modules: int) -> int:
    """Iterations between module k's forward of a batch and its backward (0-based k): K-1-k."""
    return num_modules - 1 - k


def owner_of_module(k: int, num_modules: int, placement: str) -> int:
    """The worker holding module k (0-based): k, or on the ring worker 0 for the first and last."""
    if placement == "ring":
        return 0 if k in (0, num_modules - 1) else k
    return k


# ---- one module: its forward, what it keeps, its delayed backward --------------------------


@dataclass
class Record:
    """What a module keeps of one batch until that batch's backward."""

    input: torch.Tensor  # the module's input (a leaf requiring grad, unless token ids or data)
    rng: tuple  # the RNG state before the forward: R replays with it, and so does a resumed S
    output: torch.Tensor | None = None  # S, H and the fresh module: the output, with its graph
    leaves: dict[str, torch.Tensor] | None = None  # the tensors that graph used as weights


def rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


class DelayedModule:
    """Module k of K on this worker: its blocks, the batches it still owes a backward, and the
    memory those batches hold (spec §7)."""

    def __init__(self, index: int, num_modules: int, net: nn.Sequential, semantics: str):
        self.index = index
        self.delay = delay_of_module(index, num_modules)
        self.net = net
        self.params = dict(net.named_parameters())  # a tensor tied inside the module appears once
        self.semantics = semantics if self.delay > 0 else "fresh"  # module K: no delay, no copies
        self.pending: deque[Record] = deque()
        self.stored_batches_peak = 0
        self.saved_elements_per_batch: int | None = None  # autograd-saved activations of one batch
        self.input_elements_per_batch = 0
        self.compute_s = 0.0

    def _weights(self) -> dict[str, torch.Tensor]:
        if self.semantics == "S":  # a stash: a copy of w_k^s that no optimizer step touches
            return {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in self.params.items()}
        if self.semantics == "H":  # `.data`: the live storage with its own version counter, so the
            # saved graph sees later in-place steps instead of raising
            return {n: p.data.requires_grad_(p.requires_grad) for n, p in self.params.items()}
        return self.params  # fresh: backward comes before any step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward of the newest batch; keeps what its backward will need."""
        started = time.perf_counter()
        if x.is_floating_point() and self.index > 0:
            x = x.detach().requires_grad_(True)
        rng = rng_state(x.device)
        if self.semantics == "R":
            record = Record(x.detach(), rng)
            with torch.no_grad():
                out = self.net(x)
            saved = 0
        else:
            leaves = self._weights()
            saved, out = self._counting_saved(lambda: functional_call(self.net, leaves, (x,)), leaves)
            record = Record(x, rng, out, leaves)
        if self.saved_elements_per_batch is None:
            self.saved_elements_per_batch = saved
            self.input_elements_per_batch = x.numel()
        self.pending.append(record)
        self.stored_batches_peak = max(self.stored_batches_peak, len(self.pending))
        self.compute_s += time.perf_counter() - started
        return out

    def _counting_saved(self, run: Callable, leaves: dict) -> tuple[int, torch.Tensor]:
        """Run the forward; on the first batch, count the elements autograd saves besides the
        weights (A_k of spec §7)."""
        if self.saved_elements_per_batch is not None:
            return self.saved_elements_per_batch, run()
        weights = {t.data_ptr() for t in leaves.values()}
        count = [0]

        def pack(tensor):
            if tensor.data_ptr() not in weights:
                count[0] += tensor.numel()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = run()
        return count[0], out

    def owes_backward(self, iteration: int) -> bool:
        """True iff a batch is due at `iteration`: t >= K-k, and then it is the oldest kept one."""
        return iteration >= self.delay

    @property
    def stashed_weight_versions(self) -> int:
        """Weight copies held between iterations: K-k under S (spec §7), 0 otherwise."""
        return len(self.pending) if self.semantics == "S" else 0

    def backward(self, grad_output: torch.Tensor | None, loss_of: Callable | None = None,
                 on_gradient: dict[str, Callable] | None = None):
        """Backward of the oldest kept batch: from `grad_output` (dL/d output) or, for the last
        module, from `loss_of(output)`. Returns ({name: gradient or None}, dL/d input, loss).

        `on_gradient[name]` is called with that weight's gradient as soon as autograd has it.
        """
        started = time.perf_counter()
        record = self.pending.popleft()
        if self.semantics == "R":
            out, leaves = self._replay(record)
        else:
            out, leaves = record.output, record.leaves
        loss = loss_of(out) if loss_of is not None else None
        names = list(leaves)
        inputs = [leaves[n] for n in names]
        wants_input = record.input.requires_grad
        if wants_input:
            inputs.append(record.input)
        hooks = [leaves[n].register_hook(fn) for n, fn in (on_gradient or {}).items()]
        try:
            grads = torch.autograd.grad(loss if loss is not None else out, inputs,
                                        None if loss is not None else grad_output, allow_unused=True)
        finally:
            for hook in hooks:
                hook.remove()
        self.compute_s += time.perf_counter() - started
        input_grad = grads[-1] if wants_input else None
        return dict(zip(names, grads)), input_grad, loss

    def _replay(self, record: Record):
        """R: recompute the module on its stored input at the current weights, with the RNG
        state of the original forward; BatchNorm statistics are left as that forward set them."""
        x = record.input.detach().requires_grad_(record.input.is_floating_point() and self.index > 0)
        record.input = x
        return self._rerun(x, record.rng, lambda: self.net(x)), self.params

    def _rerun(self, x: torch.Tensor, rng: tuple, forward: Callable) -> torch.Tensor:
        """`forward()` again, as the original forward of `x` ran: with its RNG state (the same
        dropout masks), and leaving the BatchNorm statistics as they are (updated once per batch)."""
        buffers = [b.clone() for b in self.net.buffers()]
        cpu_state, cuda_state = rng
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, x.device)
            out = forward()
        with torch.no_grad():
            for live, before in zip(self.net.buffers(), buffers):
                live.copy_(before)
        return out

    # A checkpoint keeps, per batch still owed a backward, its input and RNG state and, under S,
    # its stashed weights; loading runs that forward again, which rebuilds the same graph. H
    # cannot be captured: its graph holds activations of weights it no longer has.

    def pending_state(self) -> list[dict]:
        if self.semantics == "H" and self.pending:
            raise RuntimeError("semantics H cannot be checkpointed (StaleGradient.checkpoint_gap)")
        entries = []
        for record in self.pending:
            entry = {"input": record.input.detach(), "rng": record.rng}
            if self.semantics == "S":
                entry["stash"] = {n: t.detach() for n, t in record.leaves.items()}
            entries.append(entry)
        return entries

    def load_pending(self, entries: list[dict], device: torch.device) -> None:
        self.pending.clear()
        for entry in entries:
            x = entry["input"].to(device)
            if self.semantics == "R":
                self.pending.append(Record(x, entry["rng"]))
                continue
            x.requires_grad_(x.is_floating_point() and self.index > 0)
            leaves = {n: entry["stash"][n].to(device).requires_grad_(p.requires_grad)
                      for n, p in self.params.items()}
            out = self._rerun(x, entry["rng"], lambda: functional_call(self.net, leaves, (x,)))
            self.pending.append(Record(x, entry["rng"], out, leaves))

    def counters(self) -> dict:
        """The facts a resumed run carries on (`facts` reports them)."""
        return {"stored_batches_peak": self.stored_batches_peak,
                "saved_elements_per_batch": self.saved_elements_per_batch,
                "input_elements_per_batch": self.input_elements_per_batch}

    def load_counters(self, counters: dict) -> None:
        self.stored_batches_peak = counters["stored_batches_peak"]
        self.saved_elements_per_batch = counters["saved_elements_per_batch"]
        self.input_elements_per_batch = counters["input_elements_per_batch"]

    def facts(self) -> dict:
        return {"module": self.index, "delay": self.delay, "semantics": self.semantics,
                "stored_batches_peak": self.stored_batches_peak,
                "saved_activation_elements_per_batch": self.saved_elements_per_batch,
                "input_elements_per_batch": self.input_elements_per_batch,
                "stashed_weight_versions": self.stashed_weight_versions}


# ---- optimizers: one per module and one per tied tensor ----------------------------------


class ModuleOptimizers:
    """Per-module optimizers and clip groups; a tied tensor has its own (spec §4, §8)."""

    def __init__(self, module_params: dict[int, list[nn.Parameter]], tied: list[nn.Parameter],
                 spec: OptimizerSpec, num_modules: int):
        self.spec = spec
        tied_ids = {id(p) for p in tied}
        own = {k: [p for p in params if id(p) not in tied_ids] for k, params in module_params.items()}
        self.modules = {k: make_optimizer(params, spec) for k, params in own.items() if params}
        self.ties = [make_optimizer([p], spec) for p in tied]
        self.tied = tied
        if num_modules == 1:  # one age: one global norm, in the model's parameter order
            self.clip_groups = [list(module_params[0])]
        else:
            self.clip_groups = [*own.values(), *([p] for p in tied)]
        self.params = [p for params in module_params.values() for p in params]

    def step(self, lr: float, grads: dict[int, dict[nn.Parameter, torch.Tensor | None]],
             tie_parts: list[dict[int, torch.Tensor]]) -> None:
        """Apply module k's gradient for each k in `grads`, and to tied tensor i the sum of its
        parts, latest module first (spec §3: out-part(t) + in-part(t-K+1)); no step elsewhere."""
        for p in self.params:
            p.grad = None
        for module_grads in grads.values():
            for p, g in module_grads.items():
                p.grad = g
        for tensor, parts in zip(self.tied, tie_parts):
            if parts:
                order = sorted(parts, reverse=True)
                total = parts[order[0]].clone()  # never alias a part that may still be in flight
                for k in order[1:]:
                    total += parts[k]
                tensor.grad = total
        for group in self.clip_groups:
            clip_gradients(group, self.spec)
        stepping = [self.modules[k] for k in grads if k in self.modules]
        stepping += [opt for opt, parts in zip(self.ties, tie_parts) if parts]
        for optimizer in stepping:
            set_lr(optimizer, lr)
            optimizer.step()

    def state_dict(self) -> dict:
        return {"modules": {str(k): o.state_dict() for k, o in self.modules.items()},
                "ties": [o.state_dict() for o in self.ties]}

    def load_state_dict(self, state: dict) -> None:
        for k, optimizer in self.modules.items():
            optimizer.load_state_dict(state["modules"][str(k)])
        for optimizer, saved in zip(self.ties, state["ties"]):
            optimizer.load_state_dict(saved)


# ---- the per-worker loop (distributed, and the serialised emulation of H and R) -----------


@dataclass
class TiedTensor:
    """A tensor used by several modules, seen from one worker."""

    tensor: nn.Parameter
    name_in_module: dict[int, str]  # for each module on this worker that uses it
    modules: list[int]  # every module that uses it, on any worker
    outgoing: list[Channel] = field(default_factory=list)  # to the other workers holding a copy
    incoming: dict[int, Channel] = field(default_factory=dict)  # remote module -> channel


class DecoupledWorker:
    """The loop of spec §5 for the modules on this worker (all K in the serialised emulation).

    Per iteration t: forward of the first module here; delayed backwards (their errors arrived
    in t-1); forwards of the other modules here; the fresh backward of module K; one step. On the
    ring's worker 1 that is F1(t), B1(t-K+1), FK(t), BK(t): the delayed backward fills the time
    while modules 2..K-1 run on the other workers.
    """

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec, semantics: str,
                 example_inputs: torch.Tensor, blocks_of_module: list[range], owner: Callable[[int], int]):
        self.model, self.worker, self.owner = model, worker, owner
        self.K = len(blocks_of_module)
        self.blocks_of_module = blocks_of_module
        here = [k for k in range(self.K) if owner(k) == worker.rank]
        self.modules = {k: DelayedModule(k, self.K, nn.Sequential(*(model.blocks[i] for i in blocks_of_module[k])),
                                         semantics) for k in here}
        remote = any(owner(k) != worker.rank for k in range(self.K))
        outputs = block_output_shapes(model, example_inputs) if remote else None
        shapes = [outputs[blocks[-1]] for blocks in blocks_of_module[:-1]] if remote else None
        self.activations: dict[int, Channel] = {}  # boundary b: module b -> b+1
        self.errors: dict[int, Channel] = {}  # boundary b: module b+1 -> b
        for b in range(self.K - 1):
            shape = shapes[b] if shapes else None
            self.activations[b] = self._channel(owner(b), owner(b + 1), 1 + b, shape)
            self.errors[b] = self._channel(owner(b + 1), owner(b), self.K + b, shape)
        self.tied = self._tied_tensors(model, 2 * self.K)
        module_params = {k: list(m.params.values()) for k, m in self.modules.items()}
        self.optimizers = ModuleOptimizers(module_params, [t.tensor for t in self.tied], optimizer, self.K)
        self.iteration = 0
        self.step_seconds: list[float] = []
        self.compute_seconds: list[float] = []
        self.errors_ahead: dict[int, torch.Tensor] = {}  # module -> its next error, taken early

    def _channel(self, src: int, dst: int, tag: int, shape) -> Channel | None:
        me = self.worker.rank
        if src == me and dst == me:
            return LocalChannel()
        if me not in (src, dst):
            return None
        peer = dst if src == me else src
        return RemoteChannel(self.worker.transport, peer, tag, shape[0], shape[1], self.worker.device)

    def _tied_tensors(self, model: BlockModel, first_tag: int) -> list[TiedTensor]:
        module_of_block = {i: k for k, blocks in enumerate(self.blocks_of_module) for i in blocks}
        tied = []
        for index, tie in enumerate(model.ties):
            users = sorted({module_of_block[b] for b, _ in tie.uses})
            local = [k for k in users if k in self.modules]
            if not local:
                continue
            tensor = model.blocks[tie.uses[0][0]].get_parameter(tie.uses[0][1])
            names = {k: next(n for n, p in self.modules[k].params.items() if p is tensor) for k in local}
            entry = TiedTensor(tensor, names, users)
            shape = (tensor.shape, tensor.dtype)
            for peer in sorted({self.owner(k) for k in users} - {self.worker.rank}):
                # Spec §3: the placements keep one use per worker, or all uses on one worker.
                entry.outgoing.append(self._channel(self.worker.rank, peer, first_tag + index, shape))
                channel = self._channel(peer, self.worker.rank, first_tag + index, shape)
                entry.incoming.update({k: channel for k in users if self.owner(k) == peer})
            tied.append(entry)
        return tied

    def batch_rows(self, batch_size: int) -> slice | None:
        return slice(0, batch_size) if {0, self.K - 1} & set(self.modules) else None

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        started = time.perf_counter()
        compute_before = sum(m.compute_s for m in self.modules.values())
        here = sorted(self.modules)
        grads: dict[int, dict] = {}
        tie_parts: list[dict[int, torch.Tensor]] = [{} for _ in self.tied]
        loss = None
        self._forward(here[0], inputs)
        for k in here:
            if k != self.K - 1 and self.modules[k].owes_backward(self.iteration):
                grads[k], _ = self._backward(k, tie_parts)
        for k in here[1:]:
            self._forward(k, inputs)
        if self.K - 1 in self.modules:
            grads[self.K - 1], loss = self._backward(self.K - 1, tie_parts, targets)
        self._receive_tie_parts(tie_parts)
        self.optimizers.step(lr, grads, tie_parts)
        self.iteration += 1
        self.step_seconds.append(time.perf_counter() - started)
        self.compute_seconds.append(sum(m.compute_s for m in self.modules.values()) - compute_before)
        return StepLoss(loss.item(), len(targets)) if loss is not None else None

    def _forward(self, k: int, inputs: torch.Tensor) -> None:
        x = inputs if k == 0 else self.activations[k - 1].take()
        out = self.modules[k].forward(x)
        if k < self.K - 1:
            self.activations[k].put(out.detach())

    def _backward(self, k: int, tie_parts: list[dict], targets=None):
        """Module k's backward (the fresh one from the loss), its error sent on; returns its
        gradients by parameter (tied tensors' parts go to `tie_parts`) and the loss."""
        module = self.modules[k]
        fresh = k == self.K - 1
        grad_output = None if fresh else (self.errors_ahead.pop(k) if k in self.errors_ahead else self.errors[k].take())
        loss_of = (lambda out: self.model.loss(out, targets)) if fresh else None
        on_gradient = {t.name_in_module[k]: self._sender(t) for t in self.tied if k in t.name_in_module and t.outgoing}
        grads, input_grad, loss = module.backward(grad_output, loss_of, on_gradient)
        if k > 0:
            self.errors[k - 1].put(input_grad)
        by_param = {module.params[n]: g for n, g in grads.items()}
        for i, t in enumerate(self.tied):
            if k in t.name_in_module:
                tie_parts[i][k] = by_param.pop(t.tensor)
        return by_param, loss

    @staticmethod
    def _sender(tied: TiedTensor) -> Callable:
        def send(grad: torch.Tensor) -> None:
            for channel in tied.outgoing:
                channel.put(grad)
        return send

    def _receive_tie_parts(self, tie_parts: list[dict]) -> None:
        """The parts of each tied tensor computed on other workers in this iteration: module m
        has one iff it took a backward, i.e. t >= its delay (known here without asking)."""
        for i, t in enumerate(self.tied):
            for m, channel in t.incoming.items():
                if self.iteration >= delay_of_module(m, self.K):
                    tie_parts[i][m] = channel.take()

    def training_state(self) -> dict:
        """This worker's state between two steps: weights, optimizers, the batches its modules
        still owe a backward, and the errors for the next step's delayed backwards. Those
        errors were sent in this step and cross the step boundary, so they are received now
        (and kept for that backward)."""
        for k, module in self.modules.items():
            if k != self.K - 1 and module.owes_backward(self.iteration) and k not in self.errors_ahead:
                self.errors_ahead[k] = self.errors[k].take()
        return {"iteration": self.iteration,
                "modules": {str(k): m.net.state_dict() for k, m in self.modules.items()},
                "pending": {str(k): m.pending_state() for k, m in self.modules.items()},
                "counters": {str(k): m.counters() for k, m in self.modules.items()},
                "optimizers": self.optimizers.state_dict(),
                "errors_ahead": {str(k): e for k, e in self.errors_ahead.items()},
                "step_seconds": self.step_seconds, "compute_seconds": self.compute_seconds}

    def load_training_state(self, state: dict) -> None:
        device = self.worker.device
        for k, module in self.modules.items():
            module.net.load_state_dict(state["modules"][str(k)])
            module.load_pending(state["pending"][str(k)], device)
            module.load_counters(state["counters"][str(k)])
        self.optimizers.load_state_dict(state["optimizers"])
        self.errors_ahead = {int(k): e.to(device) for k, e in state["errors_ahead"].items()}
        self.iteration = state["iteration"]
        self.step_seconds, self.compute_seconds = list(state["step_seconds"]), list(state["compute_seconds"])

    def evaluate(self, batches) -> EvalTotals:
        stages = {k: m.net for k, m in self.modules.items()}
        return evaluate_stages(self.model, stages, self.owner, self.K, batches, self.worker.transport)

    def model_state(self) -> dict[str, torch.Tensor]:
        return {f"blocks.{i}.{name}": value for k in self.modules for i in self.blocks_of_module[k]
                for name, value in self.model.blocks[i].state_dict().items()}

    def facts(self) -> dict:
        steady = slice(1, None) if len(self.step_seconds) > 2 else slice(None)
        median = (lambda xs: statistics.median(xs) if xs else None)
        return {"modules_here": sorted(self.modules),
                "per_module": [m.facts() for _, m in sorted(self.modules.items())],
                "compute_s_per_iter": median(self.compute_seconds[steady]),
                "step_s_per_iter": median(self.step_seconds[steady])}


# ---- the FIFO-of-gradient-blocks emulation of S -------------------------------------------


class GradientFifo:
    """runtime=emulated, semantics S (spec §6): one ordinary forward and backward per step at the
    current weights; module k's block of that gradient is applied K-k steps later.

    Under S module k's gradient at t is block k of the gradient computed at t-K+k, so delaying
    blocks reproduces the workers' updates. Each use of a tied tensor is given its own leaf, so
    its gradient splits into per-module parts, delayed like their modules.
    """

    def __init__(self, model: BlockModel, optimizer: OptimizerSpec, blocks_of_module: list[range]):
        self.model = model
        self.K = len(blocks_of_module)
        module_of_block = {i: k for k, blocks in enumerate(blocks_of_module) for i in blocks}
        self.uses = [[(f"blocks.{b}.{n}", module_of_block[b]) for b, n in tie.uses] for tie in model.ties]
        self.tied = [model.get_parameter(uses[0][0]) for uses in self.uses]
        module_params = {}
        for k, blocks in enumerate(blocks_of_module):
            params = nn.Sequential(*(model.blocks[i] for i in blocks)).parameters()
            module_params[k] = list(params)
        self.own = {k: [p for p in ps if all(p is not t for t in self.tied)] for k, ps in module_params.items()}
        self.optimizers = ModuleOptimizers(module_params, self.tied, optimizer, self.K)
        self.queues: list[deque] = [deque() for _ in range(self.K)]

    def batch_rows(self, batch_size: int) -> slice:
        return slice(0, batch_size)

    def train_step(self, inputs, targets, lr) -> StepLoss:
        leaves = {name: t.detach().requires_grad_() for t, uses in zip(self.tied, self.uses) for name, _ in uses}
        out = functional_call(self.model, leaves, (inputs,), tie_weights=False)
        loss = self.model.loss(out, targets)
        own = [p for k in range(self.K) for p in self.own[k]]
        grads = torch.autograd.grad(loss, own + list(leaves.values()), allow_unused=True)
        by_tensor = dict(zip(map(id, own), grads))
        use_grads = dict(zip(leaves, grads[len(own):]))
        for k in range(self.K):
            block = {p: by_tensor[id(p)] for p in self.own[k]}
            parts = [{name: use_grads[name] for name, m in uses if m == k} for uses in self.uses]
            self.queues[k].append((block, parts))
        due = {k: self.queues[k].popleft() for k in range(self.K)
               if len(self.queues[k]) > delay_of_module(k, self.K)}
        tie_parts = [{} for _ in self.tied]
        for k, (_, parts) in due.items():
            for i, by_name in enumerate(parts):
                if by_name:
                    tie_parts[i][k] = sum(by_name.values()) if len(by_name) > 1 else next(iter(by_name.values()))
        self.optimizers.step(lr, {k: block for k, (block, _) in due.items()}, tie_parts)
        return StepLoss(loss.item(), len(targets))

    def training_state(self) -> dict:
        """Weights, optimizers and the gradient blocks not yet applied (by position in the
        module's parameter list; a tied tensor's parts by use)."""
        queues = [[{"block": [block[p] for p in self.own[k]], "parts": parts} for block, parts in queue]
                  for k, queue in enumerate(self.queues)]
        return {"model": self.model.state_dict(), "optimizers": self.optimizers.state_dict(), "queues": queues}

    def load_training_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizers.load_state_dict(state["optimizers"])
        device = next(self.model.parameters()).device
        move = (lambda g: None if g is None else g.to(device))
        self.queues = [deque(({p: move(g) for p, g in zip(self.own[k], entry["block"])},
                              [{n: move(g) for n, g in by_name.items()} for by_name in entry["parts"]])
                             for entry in saved) for k, saved in enumerate(state["queues"])]

    def evaluate(self, batches) -> EvalTotals:
        return self.model.evaluate(batches)

    def model_state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def facts(self) -> dict:
        return {"gradient_blocks_held": [len(q) for q in self.queues]}


# ---- the algorithm as the trainer sees it ------------------------------------------------


class StaleGradient(Algorithm):
    """`ddg`, `features_replay` and `ouroboros`: the settings choose placement and semantics."""

    Settings = StaleGradientSettings

    @classmethod
    def check(cls, run: RunSpec, num_blocks: int) -> None:
        s, name = run.algorithm_settings, run.algorithm
        K = module_count(s, run.gpus)
        if s.runtime == "emulated":
            if run.gpus != 1:
                raise ConfigError(f"{name}: runtime=emulated runs in one process; set gpus=1 and choose K "
                                  f"with algorithm.modules (got gpus={run.gpus})")
        else:
            workers = K - 1 if s.placement == "ring" else K
            if workers != run.gpus:
                per = "K-1 workers for K modules (ring)" if s.placement == "ring" else "one worker per module"
                raise ConfigError(f"{name}: algorithm.modules={K} with placement={s.placement} needs gpus={workers} "
                                  f"({per}), got gpus={run.gpus}; or use algorithm.runtime=emulated")
        if s.placement == "ring" and K < 2:
            raise ConfigError(f"{name}: placement=ring needs at least 2 modules, got modules={K}")
        check_split(name, s.balance, num_blocks, K, f"modules K={K}")

    def __init__(self, model: BlockModel, worker: Worker, optimizer: OptimizerSpec,
                 settings: StaleGradientSettings, example_inputs: torch.Tensor):
        super().__init__(model, worker, optimizer, settings, example_inputs)
        self.settings = settings
        emulated = settings.runtime == "emulated"
        K = module_count(settings, worker.world_size)
        split = ring_split_minimising_max if settings.placement == "ring" else split_minimising_max
        profile_rows = example_inputs[:max(1, len(example_inputs) // 4)]  # costs scale with rows
        self.sizes, self.profile = agreed_split(settings.balance, model, profile_rows, K, split)
        starts = [sum(self.sizes[:k]) for k in range(K)]
        blocks_of_module = [range(starts[k], starts[k] + self.sizes[k]) for k in range(K)]
        if emulated and settings.semantics == "S":
            self.engine = GradientFifo(model, optimizer, blocks_of_module)
        else:
            owner = (lambda k: 0) if emulated else (lambda k: owner_of_module(k, K, settings.placement))
            self.engine = DecoupledWorker(model, worker, optimizer, settings.semantics, example_inputs,
                                          blocks_of_module, owner)
        self.K = K

    @classmethod
    def checkpoint_gap(cls, settings: StaleGradientSettings) -> str | None:
        if settings.semantics == "H":
            return "semantics H keeps graphs whose activations came from weights it no longer holds"
        return None

    def training_state(self) -> dict:
        return self.engine.training_state()

    def load_training_state(self, state: dict) -> None:
        self.engine.load_training_state(state)

    def batch_rows(self, batch_size: int) -> slice | None:
        return self.engine.batch_rows(batch_size)

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        return self.engine.train_step(inputs, targets, lr)

    def evaluate(self, batches) -> EvalTotals:
        return self.engine.evaluate(batches)

    def model_state(self) -> dict[str, torch.Tensor]:
        return self.engine.model_state()

    def summary(self) -> dict:
        s = self.settings
        facts = {"placement": s.placement, "semantics": s.semantics, "runtime": s.runtime,
                 "modules": self.K, "blocks_per_module": self.sizes,
                 "delay_of_module": [delay_of_module(k, self.K) for k in range(self.K)],
                 **self.engine.facts()}
        if self.profile is not None:
            facts["profiled_block_seconds"] = self.profile
        return facts
