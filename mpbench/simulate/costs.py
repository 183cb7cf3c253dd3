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
not parameters), and of its parameters; and the trainer's per-step finiteness check of the
block's weights (`check_s`: every worker runs it over the weights it holds). The last block's
costs include the loss. Costs depend on the rows of a (micro)batch, and not linearly at small
sizes, so each plan asks for the rows it runs (a pipeline's microbatch, a replica's shard) and
each size is timed once. Sizes above the rows the profiler holds (`simulator.profile_rows`) are
that size's costs scaled linearly: time and activations per row are flat once a batch fills the
device, and a global batch of thousands of rows (a 512-worker sweep, its one-worker reference)
could not be timed in minutes.

One profile per sweep (docs/simulator.md). A profile kept in `store` is read by every point that
names it and is never re-timed: its *base* (the blocks at the most rows, the optimizer, one whole
backprop step, the trainer's own per-step work) is taken once, at one moment, by the first point
that needs it. A row size or local module first needed by a later point is timed then, at another
moment of a machine whose speed drifts; so that the drift does not leak in, that point first
times the *anchor* again (the whole model's forward on the most rows, timed in the base too) and
scales what it adds by base / now (`scaled_by`).
Every timing is taken again at once if the machine's load says it was disturbed (mpbench/
machine_load.py, as measured runs are flagged); a second disturbed one is kept and flagged
(`interference`), never replaced by a later point. Entries are added under a file lock, so points
that run at once (a cluster launcher) add each entry once and all read the same profile.

The parts and the whole: what one whole step costs beyond the sum of its isolated parts (or
below it) is compute the loop's timings missed, so every compute time is scaled by whole / parts
(`compute_scale`) rather than charged as a fixed cost on every worker, which would give a stage
of one block the whole model's residual. The trainer's own per-step work (fetching the batch, the
learning rate, the loss bookkeeping), measured by the caller (`trainer_step`,
mpbench/simulate/overhead.py), is the per-step overhead charged on every worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpbench.blocks import BlockModel
from mpbench.errors import ConfigError
from mpbench.machine_load import load_record, snapshot
from mpbench.records import atomic_write_text


# A kept profile of another format is refused with one line, not re-timed behind the sweep's back
# (6: one frozen profile per sweep, later entries anchored, the finiteness check, the trainer's step).
PROFILE_FORMAT = 6
BASE = ("optimizer", "whole step", "anchor", "trainer step")  # with "rows <most rows>": the profile's base


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
    check_s: float = 0.0  # the trainer's per-step finiteness check of the block's weights and buffers

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
    check_s: float = 0.0  # the trainer's per-step finiteness check of its weights


class ProfileError(ConfigError):
    """The profile cannot be taken (the model does not fit the device, the device fails), or a
    kept one cannot be used."""


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


def _check_s(module: nn.Module, repeats: int) -> float:
    """The trainer's finiteness check (mpbench/trainer.py `non_finite`) of `module`'s weights and buffers."""
    from mpbench.trainer import non_finite  # here: the trainer imports what a worker runs

    state = module.state_dict()
    return _timed(lambda: non_finite(state), repeats) if state else 0.0


def refuse_other_workload(store: Path, kept: dict, wanted: dict) -> None:
    """ProfileError (one line) if the profile kept in `store` is of another workload than `wanted`
    on any key `wanted` names."""
    differs = sorted(k for k in wanted if kept.get(k) != wanted[k])
    if differs:
        raise ProfileError(f"the simulator's profile {store} is of another workload (it differs in "
                           f"{', '.join(differs)}); name another file with simulator.profile")


def read_kept(store: Path) -> dict:
    """The profile kept in `store`, parsed; ProfileError (one line) if it cannot be read or is of
    another format."""
    try:
        saved = json.loads(Path(store).read_text())
        if not isinstance(saved, dict) or saved.get("format") != PROFILE_FORMAT:
            found = saved.get("format") if isinstance(saved, dict) else None
            raise ValueError(f"it is of format {found!r}, this version reads {PROFILE_FORMAT}")
        return saved
    except (OSError, ValueError) as err:
        raise ProfileError(f"the simulator's profile {store} cannot be read ({str(err)[:200]}); delete it to take "
                           f"the profile again, or name another file with simulator.profile") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Profiler:
    """Per-block costs of `model` on rows of `inputs` (the first rows of one global batch of
    `batch_size`, default all of them) and `targets`.

    Without `targets` the last block is timed without the loss (its backward from ones), and
    without `make_optimizer` optimizer steps cost nothing: the balance profiler's use, which has
    no whole step, no base and no store. Costs of more rows than `inputs` holds are extrapolated
    linearly (`blocks`, `head`). `store` is the profile's file, shared by every point of a sweep
    (module docstring); `workload` says what it is a profile of, and a store of another workload is
    refused. `trainer_step()` measures the trainer's own seconds per step (None: not charged).
    """

    def __init__(self, model: BlockModel, inputs: torch.Tensor, targets: torch.Tensor,
                 make_optimizer, repeats: int = 7, store: Path | None = None, batch_size: int | None = None,
                 retake_disturbed: bool = False, worker_speed: float = 1.0,
                 trainer_step: Callable[[], float] | None = None, workload: dict | None = None):
        self.model, self.inputs, self.targets = model, inputs, targets
        self.worker_speed = worker_speed  # a what-if: every compute time divided by it (the profile stays this machine's)
        # The simulator's profile is taken alone; balance=profile's runs in every worker at once, where
        # the others' load is the run's own and says nothing.
        self.retake_disturbed = retake_disturbed
        self._batch_size = batch_size or len(inputs)
        self.make_optimizer = make_optimizer  # params -> torch.optim.Optimizer (the run's)
        self.repeats = repeats
        self.trainer_step = trainer_step
        self.workload = dict(workload or {})
        self.store = Path(store) if store is not None else None
        # The profile, as kept: raw timings (an entry's anchor factor is applied when it is read).
        self._blocks: dict[int, tuple[BlockCost, ...]] = {}
        self._heads: dict[str, HeadCost] = {}
        self._optimizer_s: list[float] | None = None
        self._whole_step_s: float | None = None
        self._anchor_s: float | None = None
        self._trainer_step_s: float | None = None
        self._created: dict = {}  # when and where the base was taken
        self._entries: dict[str, dict] = {}  # "rows 16", "head ...", "whole step" -> {"taken_at", "scaled_by"}
        self._disturbed: dict[str, str] = {}  # entry -> what disturbed it (other processes' load)
        # This process: its anchor factor (1 where it took the base), the entries it used.
        self._moment: tuple[float, str | None] | None = None
        self._used: set[str] = set()
        self._outputs: list[torch.Tensor] | None = None
        self._read()

    # --- the kept profile ---

    @property
    def _calibrated(self) -> bool:
        """Whether there is a whole step to time (a loss and an optimizer): then there is a base."""
        return self.targets is not None and self.make_optimizer is not None

    def _read(self) -> None:
        """Load the kept profile, if there is one; refuse one that is damaged or of another workload."""
        if self.store is None or not self.store.exists():
            return
        saved = read_kept(self.store)
        try:
            blocks = {int(rows): tuple(BlockCost(**c) for c in costs) for rows, costs in saved["blocks"].items()}
            heads = {str(key): HeadCost(**cost) for key, cost in saved["heads"].items()}
            optimizer_s, whole, trainer = saved["optimizer_s"], saved["whole_step_s"], saved["trainer_step_s"]
            anchor = saved["anchor_s"]
            created, entries, workload = dict(saved["created"]), dict(saved["entries"]), dict(saved["workload"])
            disturbed = {str(k): str(v) for k, v in saved["disturbed"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ProfileError(f"the simulator's profile {self.store} cannot be read ({type(err).__name__}: "
                               f"{str(err)[:200]}); delete it to take the profile again, or name another file "
                               f"with simulator.profile") from None
        refuse_other_workload(self.store, workload, self.workload)
        self._blocks, self._heads, self._optimizer_s = blocks, heads, optimizer_s
        self._whole_step_s, self._anchor_s, self._trainer_step_s = whole, anchor, trainer
        self._created, self._entries, self._disturbed, self.workload = created, entries, disturbed, workload

    def _write(self) -> None:
        if self.store is None:
            return
        saved = {"format": PROFILE_FORMAT, "id": self.id, "workload": self.workload, "created": self._created,
                 "blocks": {rows: [asdict(c) for c in costs] for rows, costs in sorted(self._blocks.items())},
                 "heads": {key: asdict(c) for key, c in self._heads.items()},
                 "optimizer_s": self._optimizer_s, "whole_step_s": self._whole_step_s, "anchor_s": self._anchor_s,
                 "trainer_step_s": self._trainer_step_s, "entries": self._entries, "disturbed": self._disturbed}
        try:
            atomic_write_text(self.store, json.dumps(saved, indent=1) + "\n")
        except OSError as err:  # a profile that is not kept would be taken again by the next point
            raise ProfileError(f"the simulator's profile {self.store} cannot be written ({err.strerror or err}); "
                               f"name a writable file with simulator.profile") from None

    @contextlib.contextmanager
    def _locked(self):
        """Hold the store while an entry is added (points that run at once add each entry once)."""
        if self.store is None:
            yield
            return
        try:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.store.parent / f".{self.store.name}.lock", "a")
        except OSError as err:
            raise ProfileError(f"the simulator's profile {self.store} cannot be kept ({err.strerror or err}); "
                               f"name a writable file with simulator.profile") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def id(self) -> str | None:
        """A digest of the profile's base (and what it is a profile of): the same on every point
        that used this profile, whatever entries later points added."""
        if self.rows_profiled not in self._blocks:
            return None
        base = {"workload": self.workload, "created": self._created, "optimizer_s": self._optimizer_s,
                "blocks": [asdict(c) for c in self._blocks[self.rows_profiled]],
                "whole_step_s": self._whole_step_s, "anchor_s": self._anchor_s,
                "trainer_step_s": self._trainer_step_s}
        return hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:16]

    def record(self) -> dict:
        """What a run's record says of the profile it used: its id and file, when and where its
        base was taken, and each entry this run read (when it was timed, the anchor factor it was
        scaled by, what disturbed it)."""
        self._base()
        used = sorted(self._used | ({*BASE, f"rows {self.rows_profiled}"} & set(self._entries)))
        return {"id": self.id, "kept_in": str(self.store) if self.store is not None else None,
                "taken_at": self._created.get("taken_at"), "host": self._created.get("host"),
                "entries": {name: {**self._entries[name], "disturbed": self._disturbed.get(name)}
                            for name in used if name in self._entries}}

    @property
    def rows_timed(self) -> list[int]:
        """Every row size the profile holds (timed by this run or an earlier point)."""
        return sorted(self._blocks)

    @property
    def interference(self) -> str | None:
        """What disturbed the timings this run used (the base, and the entries it read), in one
        phrase (each one's cause is in `record()`), or None."""
        used = [name for name in self._entries if name in {*BASE, f"rows {self.rows_profiled}", *self._used}]
        disturbed = [(name, self._disturbed[name]) for name in used if name in self._disturbed]
        if not disturbed:
            return None
        name, why = disturbed[0]
        more = f", and {len(disturbed) - 1} more of the {len(used)} it used" if len(disturbed) > 1 else ""
        return f"profile timings disturbed ({name}: {why}{more}; simulation.profile.entries)"

    def _quietly(self, take, retake: bool = True) -> tuple[Any, str | None]:
        """`take()`, once more at once (`retake`) if the machine's load disturbed it; and what
        disturbed the one kept (None: quiet, or not checked)."""
        if not self.retake_disturbed:
            return take(), None
        why = None
        for _ in range(2 if retake else 1):
            before = snapshot()
            result = take()
            why = load_record(before, snapshot(), spread=None)["interference"]
            if why is None:
                break
        return result, why

    def _base(self) -> None:
        """The profile's base, taken at one moment by the first point that needs it, or read."""
        if not self._calibrated or self._whole_step_s is not None:
            return
        with self._locked():
            self._read()  # another point may have taken it meanwhile: that one stands
            if self._whole_step_s is not None:
                return
            self._created = {"taken_at": _now(), "host": socket.gethostname()}
            self._moment = (1.0, None)  # what this process adds is of the base's moment
            rows = self.rows_profiled
            steps = [("optimizer", self._time_optimizer, "_optimizer_s"),
                     (f"rows {rows}", lambda: self._profile(rows), None),
                     ("whole step", self._time_whole_step, "_whole_step_s"),
                     ("anchor", self._time_anchor, "_anchor_s")]
            if self.trainer_step is not None:
                steps.append(("trainer step", self.trainer_step, "_trainer_step_s"))
            for name, take, attribute in steps:
                value, why = self._quietly(take)
                if attribute is None:
                    self._blocks[rows] = value
                else:
                    setattr(self, attribute, value)
                self._entries[name] = {"taken_at": _now(), "scaled_by": 1.0}
                if why:
                    self._disturbed[name] = why
            self._write()

    def _anchor(self) -> tuple[float, str | None]:
        """How this moment's machine compares with the base's: the base's anchor / the anchor
        timed again now (once per process, not retaken: a ratio, flagged if disturbed), and what
        disturbed it."""
        if self._moment is None:
            if not self._calibrated or not self._anchor_s:
                self._moment = (1.0, None)
            else:
                again, why = self._quietly(self._time_anchor, retake=False)
                self._moment = (self._anchor_s / again if again > 0 else 1.0, why)
        return self._moment

    def _entry(self, name: str, find: Callable[[], Any], take: Callable[[], Any], keep: Callable[[Any], None]):
        """The kept entry `name`, or timed once now (anchored), kept, and never replaced."""
        found = find()
        if found is None:
            with self._locked():
                self._read()  # another point may have timed it meanwhile: that one stands
                found = find()
                if found is None:
                    factor, anchor_why = self._anchor()
                    found, why = self._quietly(take)
                    keep(found)
                    self._entries[name] = {"taken_at": _now(), "scaled_by": factor}
                    if factor != 1.0 or anchor_why:  # the anchor as timed now (the base's is anchor_s)
                        self._entries[name]["anchor_s"] = self._anchor_s / factor
                    why = "; ".join(filter(None, [why, anchor_why and f"its anchor: {anchor_why}"]))
                    if why:
                        self._disturbed[name] = why
                    self._write()
        self._used.add(name)
        return found

    def _scaled_by(self, name: str) -> float:
        return float(self._entries.get(name, {}).get("scaled_by", 1.0))

    # --- what the plans read ---

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
        linearly above `rows_profiled`), anchored and scaled to the whole step."""
        rows = max(1, min(rows, self.batch_size))
        timed_rows = min(rows, self.rows_profiled)
        timed = self._timed_blocks(timed_rows)
        scale, factor, speed = self.compute_scale(), self._scaled_by(f"rows {timed_rows}"), self.worker_speed
        per_row = rows / timed_rows
        compute = scale * factor * per_row / speed
        return tuple(replace(c, forward_s=c.forward_s * compute, backward_input_s=c.backward_input_s * compute,
                             backward_weight_s=c.backward_weight_s * compute,
                             optimizer_s=c.optimizer_s * scale / speed,  # the base's, per step, not per row
                             check_s=c.check_s * factor / speed,
                             output_bytes=round(c.output_bytes * per_row), kept_bytes=round(c.kept_bytes * per_row))
                     for c in timed)

    def _timed_blocks(self, rows: int) -> tuple[BlockCost, ...]:
        self._base()
        rows = max(1, min(rows, self.rows_profiled))
        return self._entry(f"rows {rows}", lambda: self._blocks.get(rows), lambda: self._profile(rows),
                           lambda costs: self._blocks.__setitem__(rows, costs))

    def compute_scale(self) -> float:
        """Whole step / the sum of its profiled parts (forward, backward, optimizer at the most
        rows): what every compute time is scaled by so that the parts make the whole. Above 1 the
        whole step pays for work the isolated blocks do not (a fresh gradient per step, one
        autograd pass over the chain); below 1 each block timed alone paid call overheads the
        step does not. 1 without a whole step (the balance profiler)."""
        if not self._calibrated:
            return 1.0
        self._base()
        parts = sum(c.forward_s + c.backward_s + c.optimizer_s for c in self._blocks[self.rows_profiled])
        return self._whole_step_s / parts if parts > 0 and self._whole_step_s > 0 else 1.0

    def step_overhead_s(self) -> float:
        """The trainer's own seconds per step on every worker (0 where it was not measured)."""
        self._base()
        return (self._trainer_step_s or 0.0) / self.worker_speed

    @property
    def step_overhead_measured(self) -> bool:
        self._base()
        return self._trainer_step_s is not None

    @_profiling
    def _profile(self, rows: int) -> tuple[BlockCost, ...]:
        model, repeats = self.model, self.repeats
        optimizer_s = self._optimizer()
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
                kept_bytes=kept, parameter_bytes=_bytes(params),
                check_s=_check_s(block, repeats) if self._calibrated else 0.0))
            x = next_x
        model.zero_grad(set_to_none=True)
        return tuple(costs)

    def _optimizer(self) -> list[float]:
        """The run's optimizer step over each block's parameters: the base's (zeros without one)."""
        if self.make_optimizer is None:
            return [0.0] * len(self.model.blocks)
        if self._optimizer_s is None:
            self._optimizer_s = self._time_optimizer()
        return self._optimizer_s

    @_profiling
    def _time_optimizer(self) -> list[float]:
        """The run's optimizer step over each block's parameters (with gradients set)."""
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
        return seconds

    @_profiling
    def _time_whole_step(self) -> float:
        """One whole backprop step (forward, loss, backward, optimizer) on the most rows: the
        number every part is scaled to."""
        model, params = self.model, [p for p in self.model.parameters() if p.requires_grad]
        saved = [p.detach().clone() for p in params]
        optimizer = self.make_optimizer(params)

        def step():
            optimizer.zero_grad(set_to_none=True)
            model.loss(model(self.inputs), self.targets).backward()
            optimizer.step()

        whole = _timed(step, 2 * self.repeats + 1, warm_up=3)
        with torch.no_grad():  # the profile leaves the model as it found it
            for p, s in zip(params, saved):
                p.copy_(s)
        model.zero_grad(set_to_none=True)
        return whole

    @_profiling
    def _time_anchor(self) -> float:
        """The whole model's forward on the most rows, without gradients: a short fixed piece of
        the run's own work, timed in the base and again by a later point before it adds an entry,
        to tell how much faster or slower the machine is then."""
        with torch.no_grad():
            return _timed(lambda: self.model(self.inputs), self.repeats)

    def head(self, key, make_module, boundary: int, call) -> HeadCost:
        """A local module (`make_module()`, timed once per `key`) on block `boundary`'s output
        (the whole batch; extrapolated linearly above `rows_profiled`): its forward,
        `call(module, h, targets)` (a local loss, or the module's output), its whole backward
        and an Adam step over its parameters."""
        key = repr(key)
        self._base()
        name = f"head {key}"
        cost = self._entry(name, lambda: self._heads.get(key), lambda: self._head(make_module(), boundary, call),
                           lambda timed: self._heads.__setitem__(key, timed))
        factor, per_row = self._scaled_by(name) / self.worker_speed, self.batch_size / self.rows_profiled
        return replace(cost, forward_s=cost.forward_s * per_row * factor, backward_s=cost.backward_s * per_row * factor,
                       optimizer_s=cost.optimizer_s * factor, check_s=cost.check_s * factor,
                       kept_bytes=round(cost.kept_bytes * per_row))

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
                        kept_bytes=_saved_bytes(forward, {p.data_ptr() for p in params}),
                        check_s=_check_s(module, self.repeats))
