"""The workers of `pipedream_2bw`: a 1F1B pipeline of micro-batches that is never flushed
(PipeDream-2BW, Narayanan et al. ICML 2021, §3.1; docs/algorithms/stale_gradient.md §12).

Stage s of d runs on worker s. Micro-batches stream through the stages without a flush between
batches: in step t stage s runs, for i = 0..m-1, the forward of micro-batch i of batch t, then
the backward of the micro-batch d-1-s places earlier in the stream (the last stage: the one it
has just forwarded). So the first d-1-s backwards of step t belong to batch t-1, and a stage
finishes batch t (and updates) during step t+1, while batch t+1 is already flowing: no bubble
between batches.

Versions (2BW §3.1): every micro-batch of batch t runs its forward and its backward at w(t-1),
the weights after the updates of batches 0..t-2 (w(0) for batch 0), whatever the time it runs at.
A part of the stage's weights (its own parameters; a tensor tied to another stage) knows how many
updates it has applied and keeps the weights from before its last one, so the version of batch t
is either a copy of the live weights or that stash: two versions beside the live weights.

A tensor used by two stages (GPT's embedding and output projection) takes one update per batch,
the sum of both stages' parts, on both copies. The later stage finishes a batch first: it sends
its part and applies the update when the earlier stage's part has come (at the start of the step
after next, when its next forward needs that version); the earlier stage adds the part it
receives and applies at once.

`evaluate` and `state_dict` first finish the batch in flight (every backward owed, every tied
update), so evaluations, checkpoints and the recorded weights see w(t+1) after step t, as the
one-process emulation does; the next step refills the pipeline. Versions follow batch indices,
not time, so this drain changes when work happens, never the arithmetic.
"""

from __future__ import annotations

from collections import deque

import torch
from torch.func import functional_call

from mpbench.algorithm import Algorithm, BuildContext, StepLoss
from mpbench.blocks import EvalTotals
from mpbench.optim import Optimizers
from mpbench.parallel.channels import channel_between
from mpbench.parallel.evaluation import evaluate_parts
from mpbench.parallel.split import Split
from mpbench.parallel.balance import stage_sizes

OWN = "own"  # the part of a stage's weights that no other stage uses


def uniform_split(num_blocks: int, stages: int) -> Split:
    return Split(tuple(stage_sizes("uniform", num_blocks, stages)))


def cross_stage_ties(model, split: Split) -> dict[str, tuple[int, ...]]:
    """Each tensor used by blocks of two stages: its name (the first use) -> the stages, in order."""
    stage_of = split.part_of_block()
    ties = {}
    for tie in model.ties:
        stages = tuple(sorted({stage_of[b] for b, _ in tie.uses}))
        if len(stages) > 1:
            b, n = tie.uses[0]
            ties[f"blocks.{b}.{n}"] = stages
    return ties


class DoubleBufferedPipeline(Algorithm):
    def __init__(self, context: BuildContext):
        super().__init__(context)
        model, worker = self.model, self.worker
        self.d, self.s, self.m = worker.world_size, worker.rank, self.settings.micro(worker.world_size)
        self.lag = self.d - 1 - self.s  # backwards run this many micro-batches behind the forwards
        self.split = uniform_split(len(model.blocks), self.d)
        self.module = self.split.module(model, self.s)
        self.owned_blocks = list(self.split.blocks[self.s])
        self.params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}

        # Parts: this stage's own parameters, and each tensor it shares with another stage.
        self.part_of: dict[str, str] = {n: OWN for n in self.params}
        self.peer: dict[str, int] = {}  # tied part -> the other stage holding it
        ties = cross_stage_ties(model, self.split)
        for first_use, stages in ties.items():
            tensor = model.get_parameter(first_use)
            for n, p in self.params.items():
                if p is tensor and self.s in stages:
                    self.part_of[n] = first_use
                    self.peer[first_use] = next(x for x in stages if x != self.s)
        groups = {part: [p for n, p in self.params.items() if self.part_of[n] == part]
                  for part in (OWN, *self.peer)}
        self.optimizers = Optimizers(context.optimizer, {part: ps for part, ps in groups.items() if ps})
        self.names_of = {part: [n for n in self.params if self.part_of[n] == part] for part in groups}
        self.applied = dict.fromkeys(groups, 0)  # updates each part has made
        self.before_last: dict[str, dict[str, torch.Tensor] | None] = dict.fromkeys(groups)

        micro = context.example_inputs[:len(context.example_inputs) // self.m]
        shapes = self.split.outputs(model, micro)

        def channel(src, dst, tag, shape):
            return channel_between(src, dst, self.s, tag, *shape, transport=worker.transport, device=worker.device)
        self.from_previous = channel(self.s - 1, self.s, self.s, shapes[self.s - 1]) if self.s > 0 else None
        self.to_next = channel(self.s, self.s + 1, self.s + 1, shapes[self.s]) if self.s < self.d - 1 else None
        self.error_in = channel(self.s + 1, self.s, self.d + self.s, shapes[self.s]) if self.s < self.d - 1 else None
        self.error_out = channel(self.s, self.s - 1, self.d + self.s - 1, shapes[self.s - 1]) if self.s > 0 else None
        self.tie_out, self.tie_in = {}, {}
        for part, peer in self.peer.items():
            i = list(ties).index(part)  # the same on both holders: message streams 2d + 2i (+1)
            shape = (self.params[self.names_of[part][0]].shape, self.params[self.names_of[part][0]].dtype)
            self.tie_out[part] = channel(self.s, peer, 2 * self.d + 2 * i + (self.s > peer), shape)
            self.tie_in[part] = channel(peer, self.s, 2 * self.d + 2 * i + (peer > self.s), shape)

        self.step_index = 0
        self.in_flight: deque = deque()  # (batch, leaf input, output, targets or None, loss share)
        self.versions: dict[int, dict[str, torch.Tensor]] = {}
        self.grads: dict[int, dict[str, torch.Tensor]] = {}
        self.backwards_done: dict[int, int] = {}
        self.lr_of: dict[int, float] = {}
        self.ties_owed: dict[str, deque] = {part: deque() for part in self.peer}  # (batch, my part, lr)

    # -- versions -----------------------------------------------------------------------------

    def _version_of_batch(self, t: int) -> dict[str, torch.Tensor]:
        """w(t-1) of every part (w(0) for t = 0): a copy of the live weights or the stash."""
        needed = max(t - 1, 0)
        version = {}
        for part, names in self.names_of.items():
            if not names:
                continue
            if self.applied[part] == needed:
                stash = {n: self.params[n].detach().clone() for n in names}
            else:
                assert self.applied[part] == needed + 1, (part, self.applied[part], t)
                stash = self.before_last[part]
            version.update(stash)
        return {n: version[n].requires_grad_() for n in self.params}

    def _update(self, part: str, grads: dict[str, torch.Tensor], batch: int, lr: float) -> None:
        """Part's update with batch's gradient at lr(batch); keeps the weights from before it."""
        self.before_last[part] = {n: self.params[n].detach().clone() for n in self.names_of[part]}
        self.optimizers.zero_grad()
        for n in self.names_of[part]:
            self.params[n].grad = grads.get(n)
        self.optimizers.step(lr)
        self.optimizers.zero_grad()
        self.applied[part] += 1
        assert self.applied[part] == batch + 1

    # -- one step ---------------------------------------------------------------------------

    def batch_rows(self, batch_size: int) -> slice | None:
        return slice(0, batch_size) if self.s in (0, self.d - 1) else None

    def train_step(self, inputs, targets, lr) -> StepLoss | None:
        t = self.step_index
        self._take_owed_ties(before=t - 1)  # the versions of batch t need tied updates up to t-2
        self.versions[t] = self._version_of_batch(t)
        self.lr_of[t], self.grads[t], self.backwards_done[t] = lr, {}, 0
        xs = inputs.chunk(self.m) if inputs is not None else [None] * self.m
        ys = targets.chunk(self.m) if targets is not None else [None] * self.m
        loss = 0.0
        rows = len(targets) if targets is not None else 0
        for i in range(self.m):
            self._forward(t, xs[i], ys[i], rows)
            if len(self.in_flight) > self.lag:
                loss += self._backward()
        self.step_index += 1
        return StepLoss(loss, len(targets)) if self.s == self.d - 1 else None

    def _forward(self, t: int, x, y, rows: int) -> None:
        x = x if self.s == 0 else self.from_previous.take()
        leaf = x.detach().requires_grad_(x.is_floating_point())
        with self.worker.clock.computing():
            out = functional_call(self.module, self.versions[t], (leaf,))
        if self.to_next is not None:
            self.to_next.put(out.detach())
        self.in_flight.append((t, leaf, out, y, None if y is None else len(y) / rows))

    def _backward(self) -> float:
        """The oldest micro-batch in flight, at its batch's version; its error goes to the stage
        before, its gradients add up until the batch is done. Returns its share of the loss."""
        t, leaf, out, y, share = self.in_flight.popleft()
        version = self.versions[t]
        last = self.to_next is None
        error = None if last else self.error_in.take()
        with self.worker.clock.computing():
            if last:
                out = self.model.loss(out, y) * share
            wrt = list(version.values()) + ([leaf] if leaf.requires_grad else [])
            grads = torch.autograd.grad(out, wrt, grad_outputs=error, allow_unused=True)
        if self.error_out is not None:
            self.error_out.put(grads[-1])
        acc = self.grads[t]
        for name, g in zip(version, grads):
            if g is not None:
                acc[name] = acc[name] + g if name in acc else g
        self.backwards_done[t] += 1
        if self.backwards_done[t] == self.m:
            self._batch_done(t)
        return out.item() if last else 0.0

    def _batch_done(self, t: int) -> None:
        grads, lr = self.grads.pop(t), self.lr_of.pop(t)
        del self.versions[t], self.backwards_done[t]
        if self.names_of.get(OWN):
            self._update(OWN, grads, t, lr)
        for part, peer in self.peer.items():
            mine = grads.get(self.names_of[part][0], torch.zeros_like(self.params[self.names_of[part][0]]))
            self.tie_out[part].put(mine)
            if peer > self.s:  # the later stage finished first: its part is here
                self._update(part, {n: mine + self.tie_in[part].take() for n in self.names_of[part]}, t, lr)
            else:
                self.ties_owed[part].append((t, mine, lr))

    def _take_owed_ties(self, before: int) -> None:
        """Apply the tied updates (of batches < `before`) whose earlier stage's part has come."""
        for part, owed in self.ties_owed.items():
            while owed and owed[0][0] < before:
                t, mine, lr = owed.popleft()
                theirs = self.tie_in[part].take()
                self._update(part, {n: theirs + mine for n in self.names_of[part]}, t, lr)  # in stage order

    def _drain(self) -> None:
        """Finish every batch in flight: the backwards owed, then the tied updates."""
        while self.in_flight:
            self._backward()
        self._take_owed_ties(before=self.step_index)

    # -- evaluation and state -------------------------------------------------------------------

    def evaluate(self, batches) -> EvalTotals:
        self._drain()
        return evaluate_parts(self.model, {self.s: self.module}, lambda stage: stage, self.d, batches,
                              self.worker.transport)

    def state_dict(self) -> dict:
        self._drain()
        return {"module": self.module.state_dict(), "optimizers": self.optimizers.state_dict(),
                "applied": dict(self.applied), "before_last": self.before_last, "step_index": self.step_index}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizers.load_state_dict(state["optimizers"])
        self.applied, self.step_index = dict(state["applied"]), state["step_index"]
        device = self.worker.device
        self.before_last = {part: None if v is None else {n: x.to(device) for n, x in v.items()}
                            for part, v in state["before_last"].items()}

    def facts(self) -> dict:
        return {"stages": self.d, "microbatches": self.m, "version_delay": 1 if self.d > 1 else 0,
                "weight_versions": 2 if self.d > 1 else 1, "runtime": "distributed",
                "blocks_per_stage": list(self.split.sizes), "backward_lag": self.lag}
