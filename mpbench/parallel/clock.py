"""Where one worker's iterations go: one definition of step, compute and wait time for every algorithm.

- step: the time inside the algorithm's `train_step`, measured by the trainer around each call;
- wait: the part of it spent blocked on communication with other workers (receives, the wait for
  an earlier send, a collective), measured by the transport for every algorithm alike;
- compute: the part spent in forward, backward and loss computations, measured where the
  algorithm says it computes (`with worker.clock.computing():`);
- the rest (step - compute - wait): optimizer steps, copies, waits the algorithm cannot attribute
  (e.g. inside torch's pipeline schedules, or DDP's all-reduce overlapping the backward), idle time.

An algorithm that marks no compute reports none, and the report draws its iteration unsplit. One
statistic summarises each series: `steady_median`, the median without the first step.
"""

from __future__ import annotations

import contextlib
import statistics
import time


def _steady(times_s: list[float]) -> list[float]:
    """Without the first step when there are more than two (it pays one-off costs: allocator
    warm-up, DDP bucket set-up, the first message of a pipeline)."""
    return times_s[1:] if len(times_s) > 2 else times_s


def steady_median(times_s: list[float]) -> float | None:
    """The median of the steady steps."""
    return statistics.median(_steady(times_s)) if times_s else None


def steady_iqr(times_s: list[float]) -> float | None:
    """The interquartile range of the steady steps: how much they vary (noise, interference)."""
    steady = _steady(times_s)
    if len(steady) < 2:
        return None
    quartiles = statistics.quantiles(steady, n=4, method="inclusive")
    return quartiles[2] - quartiles[0]


class IterationClock:
    """Step, compute and wait time of each iteration of one worker (see the module docstring)."""

    def __init__(self):
        self.step_s: list[float] = []
        self.compute_s: list[float] = []
        self.wait_s: list[float] = []
        self.marks_compute = False  # the algorithm said where it computes at least once
        self._inside = False
        self._depth = 0  # computing() regions open
        self._compute = self._wait = 0.0

    @contextlib.contextmanager
    def iteration(self):
        """Around one `train_step`: records its step time and the compute and wait inside."""
        self._inside, self._compute, self._wait = True, 0.0, 0.0
        started = time.perf_counter()
        try:
            yield
        finally:
            self.step_s.append(time.perf_counter() - started)
            self.compute_s.append(self._compute)
            self.wait_s.append(self._wait)
            self._inside = False

    @contextlib.contextmanager
    def computing(self):
        """Around a forward, backward or loss computation. A wait inside (a send that must wait
        for an earlier one) is the wait's, not the computation's; a nested region counts once."""
        self.marks_compute = True
        if self._depth:
            yield
            return
        self._depth += 1
        started, waited = time.perf_counter(), self._wait
        try:
            yield
        finally:
            self._depth -= 1
            if self._inside:
                self._compute += time.perf_counter() - started - (self._wait - waited)

    def add_wait(self, seconds: float) -> None:
        """Time this worker was blocked on communication (called by the transport); waits outside
        an iteration (evaluation, the trainer's own reductions) are not the algorithm's."""
        if self._inside:
            self._wait += seconds

    def summary(self) -> dict[str, float | None]:
        """Steady medians per iteration: step, compute (None if never marked) and wait."""
        return {"iteration_s": steady_median(self.step_s),
                "compute_s": steady_median(self.compute_s) if self.marks_compute else None,
                "wait_s": steady_median(self.wait_s)}

    def state_dict(self) -> dict:
        return {"step_s": list(self.step_s), "compute_s": list(self.compute_s), "wait_s": list(self.wait_s),
                "marks_compute": self.marks_compute}

    def load_state_dict(self, state: dict) -> None:
        self.step_s, self.compute_s = list(state["step_s"]), list(state["compute_s"])
        self.wait_s, self.marks_compute = list(state["wait_s"]), state["marks_compute"]
