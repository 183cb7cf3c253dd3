"""The training loop every algorithm shares, run by each worker.

Per step: fetch this worker's rows of global batch `step` (a pure function of seed and step),
set the learning rate from the global step, let the algorithm do one iteration, and combine the
workers' loss shares into the global-batch loss. Every `eval_every` steps and at the end, the
held-out split is evaluated with the current weights. Worker 0 writes the metrics.

The global-batch loss of step t is reduced across workers while step t+1 runs, and recorded
then: waiting for it at the end of step t would put a barrier between every two steps and stall
algorithms whose workers overlap consecutive steps (the stale-gradient family). Time per
iteration is therefore worker 0's loop period: from the start of step t to the start of step
t+1 (on an evaluation step and the last step: until its loss is known to all workers). It
excludes evaluation.

Checkpoints (`Checkpointing`) are taken between steps, after the step's loss is known: every
`every` steps, and at the step at which the workers learn that one of them got SIGTERM. That news
rides on the loss reduction as a third number, so every worker stops after the same step.

Divergence: a step whose global loss is non-finite, or after which some worker's weights are (a
non-finite gradient or update was applied), ends the run as `diverged` at that step; so does,
with `LossSpikes`, the `patience`-th step in a row whose loss exceeds `factor` x the lowest so
far. Each worker checks its own weights after its iteration and sends the verdict in its slot of
the same reduction; checking the weights finds every non-finite gradient that an optimizer
applied, in whatever way an algorithm computes and applies its gradients.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from mpbench.algorithm import Algorithm, StepLoss, Worker
from mpbench.blocks import EvalTotals
from mpbench.checkpoints import mark_complete, save_worker_state
from mpbench.config import FaultSpec, OptimizerSpec
from mpbench.data.base import DataInfo, Dataset
from mpbench.optim import lr_at
from mpbench.parallel.clock import steady_iqr, steady_median
from mpbench.progress import progress_bar
from mpbench.transport import Pending


@dataclass
class TrainOutcome:
    status: str  # "ok", "diverged", or "interrupted" (SIGTERM: stopped, checkpointed if it can be)
    steps_completed: int
    diverged_at: int | None = None
    diverged_reason: str | None = None  # what was non-finite: the loss, or which workers' weights
    interrupted_at: int | None = None
    checkpointed_at: int | None = None  # the last checkpoint this run wrote
    resumed_from: int | None = None  # the checkpoint step this run started from
    step_times_s: list[float] = field(default_factory=list)  # worker 0's loop period per step
    final: dict = field(default_factory=dict)


@dataclass
class _StepInFlight:
    """A step whose training iteration is done and whose global loss is being reduced."""

    step: int
    lr: float
    started: float
    loss: Pending


@dataclass
class Checkpointing:
    """Where and when this worker checkpoints, and whether it continues from one."""

    run_dir: Path | None = None
    every: int = 0  # steps between checkpoints; 0: only when stopped by SIGTERM
    possible: bool = False  # the algorithm captures its state (Algorithm.checkpoint_gap is None)
    resume_state: dict | None = None  # this worker's state from the checkpoint to continue from
    stop_requested: Callable[[], bool] = lambda: False  # set by SIGTERM

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0


@dataclass
class LossSpikes:
    """`divergence_patience` and `divergence_factor`: a spike is a step whose global loss exceeds
    `factor` x the lowest loss so far; `patience` spikes in a row (0: never) are divergence."""

    patience: int = 0
    factor: float = 2.0
    lowest: float = math.inf
    in_a_row: int = 0

    def diverged(self, loss: float) -> bool:
        self.in_a_row = self.in_a_row + 1 if loss > self.factor * self.lowest else 0
        self.lowest = min(self.lowest, loss)
        return 0 < self.patience <= self.in_a_row


class InjectedFault(RuntimeError):
    """Raised by the fault-injection test hook (config key `fault`)."""


@contextlib.contextmanager
def gradients_made_nan():
    """The test hook's `nan_gradient`: while inside, every optimizer step in this process applies
    NaN gradients (a process-wide optimizer hook, removed on leaving; a worker is one process)."""
    def poison(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
    handle = register_optimizer_step_pre_hook(poison)
    try:
        yield
    finally:
        handle.remove()


def non_finite(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Whether a floating tensor of `state` holds an inf or a NaN (0-dim bool tensor, no sync).

    One sum per tensor: a sum is non-finite iff a summand is, or if it overflows, which only
    weights beyond ~1e38 / numel (float32) can make happen.
    """
    sums = [t.sum() for t in state.values() if t.is_floating_point()]
    if not sums:
        return torch.tensor(False)
    return ~torch.stack(sums).isfinite().all()


def to_device(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Move a batch tensor; floating inputs (images) take the run's dtype, token ids stay integer."""
    if tensor.is_floating_point():
        return tensor.to(device=device, dtype=dtype, non_blocking=True)
    return tensor.to(device=device, non_blocking=True)


def eval_metrics(totals: EvalTotals, info: DataInfo) -> dict:
    """Held-out loss plus the metric that fits the task: bits per char, perplexity or accuracy."""
    loss = totals.loss_sum / max(totals.items, 1)
    metrics = {"eval_loss": loss}
    if info.task == "lm":
        metrics["eval_perplexity"] = math.exp(min(loss, 700.0))
        if info.unit == "char":
            metrics["eval_bits_per_char"] = loss / math.log(2)
    else:
        metrics["eval_accuracy"] = totals.correct / max(totals.items, 1)
    return metrics


class Trainer:
    def __init__(self, algorithm: Algorithm, data: Dataset, worker: Worker, *,
                 optimizer: OptimizerSpec, steps: int, batch_size: int, eval_every: int,
                 eval_batches: int, metrics_sink=None, fault: FaultSpec | None = None,
                 progress: bool = False, checkpoints: Checkpointing | None = None,
                 spikes: LossSpikes | None = None):
        self.algorithm = algorithm
        self.data = data
        self.worker = worker
        self.optimizer = optimizer
        self.steps = steps
        self.batch_size = batch_size
        self.eval_every = eval_every
        self.sink = metrics_sink  # worker 0 only
        self.fault = fault if fault is not None and fault.rank == worker.rank else None
        self.progress = progress
        self.checkpoints = checkpoints or Checkpointing()
        self.spikes = spikes or LossSpikes()
        self.stop_agreed = False  # some worker was asked to stop (SIGTERM); all learn it at the same step
        self.step = 0  # steps whose training iteration is done; read by the worker's failure report
        self.eval_set = [(to_device(x, worker.device, worker.dtype), to_device(y, worker.device, worker.dtype))
                         for x, y in data.eval_batches(batch_size, eval_batches)]

    def _start_global_loss(self, share: StepLoss | None) -> Pending:
        """Start summing (mean * rows, rows) over workers; the mean is sum / rows when done.

        Riding on the same reduction: whether a worker was asked to stop, and per worker whether
        its weights are non-finite after this iteration (slot 3 + rank).
        """
        weighted = (share.mean * share.rows, share.rows) if share is not None else (0.0, 0)
        stop = 1.0 if self.checkpoints.stop_requested() else 0.0
        buf = torch.zeros(3 + self.worker.world_size, dtype=torch.float64, device=self.worker.device)
        buf[:3] = torch.tensor((*weighted, stop), dtype=torch.float64)
        buf[3 + self.worker.rank] = non_finite(self.algorithm.model_state()).to(buf.device, torch.float64)
        return self.worker.transport.start_all_reduce(buf, count=False)

    def _stopped_before_start(self) -> bool:
        """Whether some worker got SIGTERM before the first step (all agree: one reduction)."""
        flag = torch.tensor([1.0 if self.checkpoints.stop_requested() else 0.0], device=self.worker.device)
        if self.worker.world_size > 1:
            self.worker.transport.all_reduce(flag, count=False)
        return flag.item() > 0

    def _evaluate(self) -> dict:
        totals = self.algorithm.evaluate(self.eval_set)
        if self.worker.world_size > 1:
            buf = torch.tensor([totals.loss_sum, totals.items, totals.correct],
                               dtype=torch.float64, device=self.worker.device)
            self.worker.transport.all_reduce(buf, count=False)
            totals = EvalTotals(buf[0].item(), int(buf[1].item()), int(buf[2].item()))
        return eval_metrics(totals, self.data.info)

    def _inject_fault(self, step: int) -> bool:
        """The test hook: returns True when this step's loss must be replaced by NaN."""
        if self.fault is None or self.fault.step != step:
            return False
        if self.fault.kind == "raise":
            raise InjectedFault(f"injected fault on rank {self.worker.rank} at step {step}")
        if self.fault.kind == "exit":
            os._exit(3)  # a hard crash: no exception, no report from this worker
        return self.fault.kind == "nan_loss"

    def run(self) -> TrainOutcome:
        device, dtype = self.worker.device, self.worker.dtype
        rows = self.algorithm.batch_rows(self.batch_size)
        outcome = TrainOutcome("ok", 0)
        last_eval: dict = {}
        loss = float("nan")
        first = 1
        if self.checkpoints.resume_state is not None:
            first, last_eval, loss = self._restore(self.checkpoints.resume_state, outcome)
        if self._stopped_before_start():  # SIGTERM while the workers were being set up
            outcome.status, outcome.interrupted_at, outcome.checkpointed_at = "interrupted", first - 1, first - 1
            outcome.final = {"train_loss": loss, **last_eval}
            return outcome
        bar = progress_bar(self.steps, first - 1, self.progress)
        unfinished: _StepInFlight | None = None  # the previous step, its loss still being reduced
        for step in range(first, self.steps + 1):
            lr = lr_at(step - 1, self.steps, self.optimizer)
            started = time.perf_counter()
            inputs = targets = None
            if rows is not None:
                x, y = self.data.train_batch(step - 1, self.batch_size, rows)
                inputs, targets = to_device(x, device, dtype), to_device(y, device, dtype)
            poison = self._inject_fault(step)
            nan_gradient = self.fault is not None and self.fault.step == step and self.fault.kind == "nan_gradient"
            with self.worker.clock.iteration(), gradients_made_nan() if nan_gradient else contextlib.nullcontext():
                share = self.algorithm.train_step(inputs, targets, lr)
            if poison and share is not None:
                share = StepLoss(float("nan"), share.rows)
            self.step = step
            current = _StepInFlight(step, lr, started, self._start_global_loss(share))
            if unfinished is not None:
                row = self._finish_step(unfinished, outcome, ended=started)
                unfinished = None
                if row is None:
                    current.loss.wait()  # every worker started this reduction; complete it
                    break
                loss = row["train_loss"]
                bar.step_done(row["step"], loss)
            unfinished = current
            if step % self.eval_every == 0 or step == self.steps:
                row = self._finish_step(current, outcome, ended=None, record=False)
                unfinished = None
                if row is None:
                    break
                loss = row["train_loss"]
                last_eval = self._evaluate()
                row.update(last_eval)
                self._record(row, flush=True)  # metrics.jsonl is rewritten at each eval
                bar.step_done(row["step"], loss, last_eval["eval_loss"])
            if step == self.steps:
                break
            stop = self.stop_agreed  # the same on every worker: it came with a reduced loss
            if stop or self.checkpoints.due(step):
                if unfinished is not None:  # a checkpoint is taken between steps: finish this one
                    row = self._finish_step(unfinished, outcome, ended=None)
                    unfinished = None
                    if row is None:
                        break
                    loss = row["train_loss"]
                    bar.step_done(row["step"], loss)
                if self.checkpoints.possible:
                    self._save_checkpoint(step, outcome, last_eval, loss)
                if stop:
                    outcome.status, outcome.interrupted_at = "interrupted", step
                    break
        bar.close()
        outcome.final = {"train_loss": loss, **last_eval}
        if self.sink is not None:
            self.sink.flush()
        return outcome

    def _save_checkpoint(self, step: int, outcome: TrainOutcome, last_eval: dict, loss: float) -> None:
        """Every worker saves its state at the end of `step`; rank 0 then marks it complete."""
        state = {"step": step, "algorithm": self.algorithm.state_dict(), "rng": torch.get_rng_state(),
                 "step_times": list(outcome.step_times_s), "clock": self.worker.clock.state_dict(),
                 "spikes": [self.spikes.lowest, self.spikes.in_a_row], "last_eval": last_eval, "loss": loss}
        if self.worker.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.worker.device)
        if self.sink is not None:
            self.sink.flush()
            state["metrics"] = list(self.sink.file.rows)
        run_dir = self.checkpoints.run_dir
        save_worker_state(run_dir, step, self.worker.rank, state)
        self.worker.transport.all_reduce(torch.zeros(1, device=self.worker.device), count=False)  # all saved
        if self.worker.rank == 0:
            mark_complete(run_dir, step)
        outcome.checkpointed_at = step

    def _restore(self, state: dict, outcome: TrainOutcome) -> tuple[int, dict, float]:
        """Continue from a checkpoint: the algorithm's state, RNG, timings and metrics so far."""
        self.algorithm.load_state_dict(state["algorithm"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.worker.device)
        if self.sink is not None:
            self.sink.file.rows = list(state["metrics"])
        outcome.step_times_s = list(state["step_times"])
        self.worker.clock.load_state_dict(state["clock"])
        self.spikes.lowest, self.spikes.in_a_row = state["spikes"]
        outcome.steps_completed = self.step = state["step"]
        outcome.resumed_from = state["step"]
        return state["step"] + 1, state["last_eval"], state["loss"]

    def _finish_step(self, step: _StepInFlight, outcome: TrainOutcome, ended: float | None,
                     record: bool = True) -> dict | None:
        """Wait for the step's global loss, time it and record its row; None if it diverged.

        `ended` is when the step's period ended (the next step's start); None: now.
        """
        total = step.loss.wait()
        loss = (total[0] / total[1]).item()
        self.stop_agreed = self.stop_agreed or total[2].item() > 0
        non_finite_ranks = [rank for rank, flag in enumerate(total[3:].tolist()) if flag > 0]
        elapsed = (ended if ended is not None else time.perf_counter()) - step.started
        outcome.step_times_s.append(elapsed)
        outcome.steps_completed = step.step
        row = {"step": step.step, "train_loss": loss, "lr": step.lr, "step_time_s": elapsed}
        spiked = math.isfinite(loss) and self.spikes.diverged(loss)
        if not math.isfinite(loss) or non_finite_ranks or spiked:
            outcome.status, outcome.diverged_at = "diverged", step.step
            causes = [f"non-finite training loss at step {step.step}"] if not math.isfinite(loss) else []
            if non_finite_ranks:
                causes.append(f"non-finite weights on rank {', '.join(map(str, non_finite_ranks))} after step "
                              f"{step.step} (a non-finite gradient or update was applied)")
            if spiked:
                causes.append(f"training loss above {self.spikes.factor:g} x its lowest ({self.spikes.lowest:.4g}) "
                              f"for {self.spikes.in_a_row} steps in a row, up to step {step.step} "
                              f"(divergence_patience={self.spikes.patience})")
            outcome.diverged_reason = "; ".join(causes)
            self._record(row, flush=True)
            return None
        if record:
            self._record(row, flush=False)
        return row

    def _record(self, row: dict, flush: bool) -> None:
        if self.sink is None:
            return
        self.sink.log(row)
        if flush:
            self.sink.flush()


def timing_summary(step_times_s: list[float], batch_size: int, info: DataInfo) -> dict:
    """Median time per iteration (`steady_median`), its spread (`steady_iqr`) and the throughputs."""
    median = steady_median(step_times_s)
    if median is None:
        return {}
    record = {"time_per_iter_median_s": median, "time_per_iter_iqr_s": steady_iqr(step_times_s),
              "samples_per_s": batch_size / median}
    if info.task == "lm":
        record["tokens_per_s"] = batch_size * info.input_shape[0] / median
    return record
