"""One module of the stale-gradient family: its forward, what it keeps, its delayed backward.

Module k (0-based here; docs/algorithms/stale_gradient.md numbers from 1) forwards batch t in
iteration t and runs that batch's backward `delay = K-1-k` iterations later (§1). What the
delayed backward differentiates is the semantics (§2):

- S, stashed: the forward ran on a copy of the weights w_k^t, kept until the backward, so the
  gradient is exactly the papers' grad_{w_k} f_{x(t)}(w^t) (DDG eq. 3; PipeDream's weight stashing);
- H, hybrid: the graph of batch t is kept, but its Jacobians read the current weights (what DDG's
  code computes by updating `.data` in place);
- R, replay: only the module's input is kept; the module is recomputed at the current weights,
  with the random state of the original forward (Features Replay).

The last module (delay 0) runs its backward right after its forward: it keeps no copies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from mpbench.parallel.clock import IterationClock
from mpbench.parallel.replay import RngState, count_saved_elements, rerun_as_before, rng_state


def delay_of_module(k: int, num_modules: int) -> int:
    """Iterations between module k's forward of a batch and its backward (0-based k): K-1-k,
    which is the docs' K-k for 1-based k."""
    return num_modules - 1 - k


@dataclass
class PendingBatch:
    """What a module keeps of one batch until that batch's backward."""

    input: torch.Tensor  # the module's input (a leaf requiring grad, unless token ids or data)
    rng: RngState  # the random state before the forward: R replays with it, and so does a resumed S
    output: torch.Tensor | None = None  # S, H and the last module: the output, with its graph
    weights: dict[str, torch.Tensor] | None = None  # the tensors that graph used as weights


class DelayedModule:
    """Module k of K on this worker: its blocks, the batches it still owes a backward, and the
    memory those batches hold (§6)."""

    def __init__(self, index: int, num_modules: int, net: nn.Sequential, semantics: str, clock: IterationClock):
        self.index = index
        self.delay = delay_of_module(index, num_modules)
        self.net = net
        self.params = dict(net.named_parameters())  # a tensor tied inside the module appears once
        self.semantics = semantics if self.delay > 0 else "fresh"  # the last module: no delay, no copies
        self.clock = clock
        self.pending: deque[PendingBatch] = deque()
        self.stored_batches_peak = 0
        self.saved_elements_per_batch: int | None = None  # autograd-saved activations of one batch
        self.input_elements_per_batch = 0

    def owes_backward(self, iteration: int) -> bool:
        """True iff a batch is due at `iteration`: t >= its delay, and then it is the oldest kept one."""
        return iteration >= self.delay

    @property
    def stashed_weight_versions(self) -> int:
        """Weight copies held between iterations: K-k under S (§6), 0 otherwise."""
        return len(self.pending) if self.semantics == "S" else 0

    def _weights(self) -> dict[str, torch.Tensor]:
        """The weights a forward records: for S a stash (a copy no optimizer step touches); for H
        `.data`, the live storage with its own version counter, so the saved graph sees later
        in-place steps instead of raising; the live parameters otherwise."""
        if self.semantics == "S":
            return {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in self.params.items()}
        if self.semantics == "H":
            return {n: p.data.requires_grad_(p.requires_grad) for n, p in self.params.items()}
        return self.params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward of the newest batch; keeps what its backward will need."""
        if x.is_floating_point() and self.index > 0:
            x = x.detach().requires_grad_(True)
        rng = rng_state(x.device)
        with self.clock.computing():
            if self.semantics == "R":
                kept = PendingBatch(x.detach(), rng)
                with torch.no_grad():
                    out = self.net(x)
                saved = 0
            else:
                weights = self._weights()
                run = lambda: functional_call(self.net, weights, (x,))  # noqa: E731
                saved, out = (count_saved_elements(run, weights) if self.saved_elements_per_batch is None
                              else (self.saved_elements_per_batch, run()))
                kept = PendingBatch(x, rng, out, weights)
        if self.saved_elements_per_batch is None:
            self.saved_elements_per_batch = saved
            self.input_elements_per_batch = x.numel()
        self.pending.append(kept)
        self.stored_batches_peak = max(self.stored_batches_peak, len(self.pending))
        return out

    def backward(self, grad_output: torch.Tensor | None, loss_of: Callable | None = None,
                 on_gradient: dict[str, Callable] | None = None):
        """Backward of the oldest kept batch: from `grad_output` (dL/d output) or, for the last
        module, from `loss_of(output)`. Returns ({name: gradient or None}, dL/d input, loss).

        `on_gradient[name]` is called with that weight's gradient as soon as autograd has it.
        """
        batch = self.pending.popleft()
        with self.clock.computing():
            if self.semantics == "R":
                x = batch.input.detach().requires_grad_(batch.input.is_floating_point() and self.index > 0)
                batch.input, weights = x, self.params
                out = rerun_as_before(self.net, batch.rng, x.device, lambda: self.net(x))
            else:
                out, weights = batch.output, batch.weights
            loss = loss_of(out) if loss_of is not None else None
            names = list(weights)
            inputs = [weights[n] for n in names]
            wants_input = batch.input.requires_grad
            if wants_input:
                inputs.append(batch.input)
            hooks = [weights[n].register_hook(fn) for n, fn in (on_gradient or {}).items()]
            try:
                grads = torch.autograd.grad(loss if loss is not None else out, inputs,
                                            None if loss is not None else grad_output, allow_unused=True)
            finally:
                for hook in hooks:
                    hook.remove()
        input_grad = grads[-1] if wants_input else None
        return dict(zip(names, grads)), input_grad, loss

    # A checkpoint keeps, per batch still owed a backward, its input and random state and, under
    # S, its stashed weights; loading runs that forward again, which rebuilds the same graph (§8).
    # H cannot be captured: its graph holds activations of weights it no longer has.

    def state_dict(self) -> dict:
        if self.semantics == "H" and self.pending:
            raise RuntimeError("semantics H cannot be checkpointed (checkpoint_gap says so before a run)")
        pending = []
        for batch in self.pending:
            entry = {"input": batch.input.detach(), "rng": batch.rng}
            if self.semantics == "S":
                entry["stash"] = {n: t.detach() for n, t in batch.weights.items()}
            pending.append(entry)
        return {"weights": self.net.state_dict(), "pending": pending,
                "counters": {"stored_batches_peak": self.stored_batches_peak,
                             "saved_elements_per_batch": self.saved_elements_per_batch,
                             "input_elements_per_batch": self.input_elements_per_batch}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.net.load_state_dict(state["weights"])
        self.pending.clear()
        for entry in state["pending"]:
            x = entry["input"].to(device)
            if self.semantics == "R":
                self.pending.append(PendingBatch(x, entry["rng"]))
                continue
            x.requires_grad_(x.is_floating_point() and self.index > 0)
            weights = {n: entry["stash"][n].to(device).requires_grad_(p.requires_grad) for n, p in self.params.items()}
            out = rerun_as_before(self.net, entry["rng"], device, lambda: functional_call(self.net, weights, (x,)))
            self.pending.append(PendingBatch(x, entry["rng"], out, weights))
        counters = state["counters"]
        self.stored_batches_peak = counters["stored_batches_peak"]
        self.saved_elements_per_batch = counters["saved_elements_per_batch"]
        self.input_elements_per_batch = counters["input_elements_per_batch"]

    def facts(self) -> dict:
        return {"module": self.index, "delay": self.delay, "semantics": self.semantics,
                "stored_batches_peak": self.stored_batches_peak,
                "saved_activation_elements_per_batch": self.saved_elements_per_batch,
                "input_elements_per_batch": self.input_elements_per_batch,
                "stashed_weight_versions": self.stashed_weight_versions}
