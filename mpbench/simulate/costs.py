"""The simulator's inputs from the real model: per-block times and bytes, profiled on one worker.

`Profiler` times the run's own blocks, with the run's dtype, device and threads per worker, the
way the balance profiler does (mpbench/parallel/balance.py: each block on its own detached
input, in a loop), but split three ways, as the zero-bubble schedules need them (Qi et al.
2024, §2). Timing each block in its place in passes over the whole chain was tried and came
out further from the measured runs (README, simulated scaling), so the loop stays.

- forward f;
- backward-input b: the gradient at the block's input only (autograd computes nothing else);
- backward-weight w: the full backward minus b (never below 0).

It also records what memory the simulator charges: the bytes of each block's output (the message
at a cut after it), of the activations autograd keeps for its backward (saved tensors that are
not parameters), and of its parameters. The last block's costs include the loss. Costs depend
on the rows of a (micro)batch, and not linearly at small sizes, so each plan asks for the rows it
runs (a pipeline's microbatch, a replica's shard) and each size is timed once. Sizes above the
rows the profiler holds (`simulator.profile_rows`) are that size's costs scaled linearly: time
and activations per row are flat once a batch fills the device, and a global batch of thousands
of rows (a 512-worker sweep, its one-worker reference) could not be timed in minutes.

A profile is kept and reused by every later point, so one taken while other processes loaded the
machine would skew all of them: each timing is taken again once if the machine's load says it
was disturbed (mpbench/machine_load.py, as measured runs are flagged), a second disturbed one is
kept but named in `interference`, and a kept disturbed timing is taken again by the next run.

`calibration` ties the parts to the whole: one whole backprop step (forward, loss, backward,
optimizer) is timed too; what the parts miss is a per-step overhead charged on every worker, and
parts that add up to more than the whole are scaled down to it.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from mpbench.blocks import BlockModel
from mpbench.errors import ConfigError
from mpbench.machine_load import load_record, snapshot
from mpbench.records import atomic_write_text


PROFILE_METHOD = 5  # kept profiles of an earlier method are not reused (5: taken with freed host memory kept)


@dataclass(frozen=True)
class BlockCost:
    """One block at one batch size: seconds and bytes."""

    forward_s: float
    backward_input_s: float
    backward_weight_s: float
    optimizer_s: float  # the run's optimizer step over this block's parameters
    output_bytes: int
    kept_bytes: int  # activations saved for the backward
    parameter_bytes: int

    @property
    def backward_s(self) -> float:
        return self.backward_input_s + self.backward_weight_s


@dataclass(frozen=True)
class HeadCost:
    """A local module (critic, auxiliary classifier, synthesizer) on one block boundary."""

    forward_s: float
    backward_s: float  # the gradient at its input and at its weights
    optimizer_s: float  # an Adam step over its parameters
    parameter_bytes: int
    kept_bytes: int


class ProfileError(ConfigError):
    """The profile cannot be taken (the model does not fit the device, the device fails)."""


def _profiling(method):
    """Timing leaves the model's buffers (BatchNorm's running statistics) and the random
    streams (dropout) as it found them, so a run that profiles (balance=profile) trains as one
    that does not; a failure while timing the model on the device is one line, not a traceback."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        devices = [self.inputs.device] if self.inputs.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                return method(self, *args, **kwargs)
        except (RuntimeError, MemoryError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise ProfileError(f"simulate: the profile of the model on {self.inputs.device} could not be taken "
                               f"({type(err).__name__}: {first}); try a smaller batch_size or model") from None
        finally:
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
    return wrapper


def _sync() -> None:
    """Wait for the GPU's queued work, so a timer reads kernels, not their launches (CPU: nothing)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn, repeats: int, warm_up: int = 2) -> float:
    """The median seconds of `fn()` over `repeats` calls, after `warm_up` calls (the first ones
    pay for allocations and, on oneDNN, for building the kernels of new shapes)."""
    for _ in range(warm_up):
        fn()
    timings = []
    for _ in range(repeats):
        _sync()
        started = time.perf_counter()
        fn()
        _sync()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _timed_backward(forward, wrt: list[torch.Tensor], grad, repeats: int, warm_up: int = 2) -> float:
    """The median seconds of the backward of `forward()` to `wrt` alone: the forward runs outside
    the timer (a difference of two timings is noise, even below zero, for a small block)."""
    for _ in range(warm_up):
        torch.autograd.grad(forward(), wrt, grad, allow_unused=True)
    timings = []
    for _ in range(repeats):
        out = forward()
        _sync()
        started = time.perf_counter()
        torch.autograd.grad(out, wrt, grad, allow_unused=True)
        _sync()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _saved_bytes(fn, parameters: set[int]) -> int:
    """Bytes of the tensors autograd saves while `fn()` runs, parameters excluded, each storage once."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t.data_ptr() not in parameters:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


class Profiler:
    """Per-block costs of `model` on rows of `inputs` (the first rows of one global batch of
    `batch_size`, default all of them) and `targets`.

    Without `targets` the last block is timed without the loss (its backward from ones), and
    without `make_optimizer` optimizer steps cost nothing: the balance profiler's use. Costs of
    more rows than `inputs` holds are extrapolated linearly (`blocks`, `head`).
    """

    def __init__(self, model: BlockModel, inputs: torch.Tensor, targets: torch.Tensor,
                 make_optimizer, repeats: int = 7, store: Path | None = None, batch_size: int | None = None,
                 retake_disturbed: bool = False, worker_speed: float = 1.0):
        self.model, self.inputs, self.targets = model, inputs, targets
        self.worker_speed = worker_speed  # a what-if: every compute time divided by it (the profile stays this machine's)
        # The simulator's profile is taken alone; balance=profile's runs in every worker at once, where
        # the others' load is the run's own and says nothing.
        self.retake_disturbed = retake_disturbed
        self._batch_size = batch_size or len(inputs)
        self.make_optimizer = make_optimizer  # params -> torch.optim.Optimizer (the run's)
        self.repeats = repeats
        self._blocks: dict[int, tuple[BlockCost, ...]] = {}
        self._optimizer_s: list[float] | None = None
        self._whole_step_s: float | None = None
        self._heads: dict[str, HeadCost] = {}
        self._disturbed: dict[str, str] = {}  # timing ("rows 16", "whole step") -> what disturbed it
        self._outputs: list[torch.Tensor] | None = None
        # Timings kept on disk (one file per model, data, batch, dtype, device, threads and machine), so
        # that every point of a scaling sweep, and a later sweep, is simulated from one profile.
        self.store = store
        self._load()

    def _load(self) -> None:
        if self.store is None:
            return
        try:
            saved = json.loads(self.store.read_text())
            blocks = {int(rows): tuple(BlockCost(**c) for c in costs) for rows, costs in saved["blocks"].items()}
            heads = {key: HeadCost(**cost) for key, cost in saved["heads"].items()}
            optimizer_s, whole = saved["optimizer_s"], saved["whole_step_s"]
            disturbed = {str(k): str(v) for k, v in saved.get("disturbed", {}).items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return  # none yet, or unreadable: profile again (and replace it)
        # a timing disturbed by other load is not trusted: this run takes it again
        blocks = {rows: costs for rows, costs in blocks.items() if f"rows {rows}" not in disturbed}
        whole = None if "whole step" in disturbed else whole
        self._blocks, self._heads, self._optimizer_s, self._whole_step_s = blocks, heads, optimizer_s, whole

    def _save(self) -> None:
        if self.store is None:
            return
        saved = {"blocks": {rows: [asdict(c) for c in costs] for rows, costs in self._blocks.items()},
                 "heads": {key: asdict(c) for key, c in self._heads.items()},
                 "optimizer_s": self._optimizer_s, "whole_step_s": self._whole_step_s, "disturbed": self._disturbed}
        try:
            atomic_write_text(self.store, json.dumps(saved))
        except OSError:
            pass  # a store that cannot be written only costs the next run a profile

    @property
    def rows_timed(self) -> list[int]:
        return sorted(self._blocks)

    @property
    def interference(self) -> str | None:
        """What disturbed the timings this profile holds (other processes' load), or None."""
        return "; ".join(f"{what}: {why}" for what, why in self._disturbed.items()) or None

    def _taken_quietly(self, what: str, take):
        """`take()`, once more if the machine's load disturbed it; a second disturbed one is kept
        and recorded (`interference`)."""
        if not self.retake_disturbed:
            return take()
        for _ in range(2):
            before = snapshot()
            result = take()
            why = load_record(before, snapshot(), spread=None)["interference"]
            if why is None:
                self._disturbed.pop(what, None)
                return result
        self._disturbed[what] = why
        return result

    @property
    def batch_size(self) -> int:
        """The run's global batch (rows), which may exceed the rows profiled."""
        return self._batch_size

    @property
    def rows_profiled(self) -> int:
        """The most rows timed; larger sizes are this one's costs scaled linearly."""
        return len(self.inputs)

    def blocks(self, rows: int) -> tuple[BlockCost, ...]:
        """Each block's costs on `rows` rows of the batch (timed once per size, extrapolated
        linearly above `rows_profiled`), calibrated."""
        rows = max(1, min(rows, self.batch_size))
        timed_rows = min(rows, self.rows_profiled)
        scale, per_row = self.calibration()[0] / self.worker_speed, rows / timed_rows
        return tuple(replace(c, forward_s=c.forward_s * scale * per_row,
                             backward_input_s=c.backward_input_s * scale * per_row,
                             backward_weight_s=c.backward_weight_s * scale * per_row, optimizer_s=c.optimizer_s * scale,
                             output_bytes=round(c.output_bytes * per_row), kept_bytes=round(c.kept_bytes * per_row))
                     for c in self._timed_blocks(timed_rows))

    def _timed_blocks(self, rows: int) -> tuple[BlockCost, ...]:
        rows = max(1, min(rows, self.rows_profiled))
        if rows not in self._blocks:
            self._blocks[rows] = self._taken_quietly(f"rows {rows}", lambda: self._profile(rows))
            self._save()
        return self._blocks[rows]

    @_profiling
    def _profile(self, rows: int) -> tuple[BlockCost, ...]:
        model, repeats = self.model, self.repeats
        optimizer_s = self.optimizer_seconds()
        x = self.inputs[:rows]
        targets = self.targets[:rows] if self.targets is not None else None
        costs = []
        for i, block in enumerate(model.blocks):
            params = [p for p in block.parameters() if p.requires_grad]
            inp = x.detach().requires_grad_(i > 0 and x.is_floating_point())
            last = i == len(model.blocks) - 1

            def forward(block=block, inp=inp, last=last and targets is not None):
                out = block(inp)
                return model.loss(out, targets) if last else out

            f = _timed(forward, repeats)
            out = forward()
            grad = None if out.dim() == 0 else torch.ones_like(out)
            b = _timed_backward(forward, [inp], grad, repeats) if inp.requires_grad else 0.0
            full = _timed_backward(forward, [inp] * inp.requires_grad + params, grad, repeats)
            kept = _saved_bytes(forward, {p.data_ptr() for p in params})
            with torch.no_grad():
                next_x = block(inp)
            costs.append(BlockCost(
                forward_s=f, backward_input_s=b, backward_weight_s=max(full - b, 0.0),
                optimizer_s=optimizer_s[i], output_bytes=next_x.numel() * next_x.element_size(),
                kept_bytes=kept, parameter_bytes=_bytes(params)))
            x = next_x
        model.zero_grad(set_to_none=True)
        return tuple(costs)

    @_profiling
    def optimizer_seconds(self) -> list[float]:
        """The run's optimizer step over each block's parameters (with gradients set)."""
        if self._optimizer_s is None and self.make_optimizer is None:
            return [0.0] * len(self.model.blocks)
        if self._optimizer_s is None:
            seconds = []
            for block in self.model.blocks:
                params = [p for p in block.parameters() if p.requires_grad]
                if not params:
                    seconds.append(0.0)
                    continue
                saved = [p.detach().clone() for p in params]
                for p in params:
                    p.grad = torch.zeros_like(p)
                optimizer = self.make_optimizer(params)
                seconds.append(_timed(optimizer.step, self.repeats))
                with torch.no_grad():  # the profile leaves the model as it found it
                    for p, s in zip(params, saved):
                        p.copy_(s)
                        p.grad = None
            self._optimizer_s = seconds
        return self._optimizer_s

    def step_overhead_s(self) -> float:
        return self.calibration()[1] / self.worker_speed

    def calibration(self) -> tuple[float, float]:
        """(scale, overhead_s): how block timings become the whole step they are parts of.

        One whole backprop step (forward, loss, backward, optimizer) on the full batch is timed
        and compared with the sum of its profiled parts. What the parts miss (the step's own
        work) is the per-step overhead; when they add up to more (each block timed alone pays
        its own call overheads), they are all scaled down to the whole instead. Without a
        loss and an optimizer (the balance profiler) there is no whole step: (1, 0).
        """
        if self.targets is None or self.make_optimizer is None:
            return 1.0, 0.0
        timed = self._timed_blocks(self.rows_profiled)  # first: the whole step is timed right after its parts
        if self._whole_step_s is None:
            self._whole_step_s = self._taken_quietly("whole step", self._time_whole_step)
            self._save()
        parts = sum(c.forward_s + c.backward_s + c.optimizer_s for c in timed)
        if self._whole_step_s >= parts or parts <= 0:
            return 1.0, self._whole_step_s - parts
        # All parts shrink together: scaling compute alone could reach zero when the optimizer's
        # own timing is noisy and the whole step comes in under it.
        return self._whole_step_s / parts, 0.0

    @_profiling
    def _time_whole_step(self) -> float:
        model, params = self.model, [p for p in self.model.parameters() if p.requires_grad]
        saved = [p.detach().clone() for p in params]
        optimizer = self.make_optimizer(params)

        def step():
            optimizer.zero_grad(set_to_none=True)
            model.loss(model(self.inputs), self.targets).backward()
            optimizer.step()

        whole = _timed(step, 2 * self.repeats + 1, warm_up=3)  # the one number every part is scaled to
        with torch.no_grad():  # the profile leaves the model as it found it
            for p, s in zip(params, saved):
                p.copy_(s)
        model.zero_grad(set_to_none=True)
        return whole

    def head(self, key, make_module, boundary: int, call) -> HeadCost:
        """A local module (`make_module()`, timed once per `key`) on block `boundary`'s output
        (the whole batch; extrapolated linearly above `rows_profiled`): its forward,
        `call(module, h, targets)` (a local loss, or the module's output), its whole backward
        and an Adam step over its parameters."""
        key = repr(key)
        if key not in self._heads:
            self._heads[key] = self._head(make_module(), boundary, call)
            self._save()
        cost, per_row = self._heads[key], self.batch_size / self.rows_profiled
        per_row_s = per_row / self.worker_speed
        return replace(cost, forward_s=cost.forward_s * per_row_s, backward_s=cost.backward_s * per_row_s,
                       optimizer_s=cost.optimizer_s / self.worker_speed, kept_bytes=round(cost.kept_bytes * per_row))

    def _boundary_outputs(self) -> list[torch.Tensor]:
        if self._outputs is None:
            with torch.no_grad():
                x, self._outputs = self.inputs, []
                for block in self.model.blocks:
                    x = block(x)
                    self._outputs.append(x)
        return self._outputs

    @_profiling
    def _head(self, module: nn.Module, boundary: int, call) -> HeadCost:
        h = self._boundary_outputs()[boundary].detach().requires_grad_()
        params = [p for p in module.parameters() if p.requires_grad]

        def forward():
            return call(module, h, self.targets)

        f = _timed(forward, self.repeats)
        out = forward()
        grad = None if out.dim() == 0 else torch.ones_like(out)
        full = _timed_backward(forward, [h, *params], grad, self.repeats)
        for p in params:
            p.grad = torch.zeros_like(p)
        step = _timed(torch.optim.Adam(params, lr=0.0).step, self.repeats) if params else 0.0
        module.zero_grad(set_to_none=True)
        return HeadCost(forward_s=f, backward_s=full, optimizer_s=step, parameter_bytes=_bytes(params),
                        kept_bytes=_saved_bytes(forward, {p.data_ptr() for p in params}))
