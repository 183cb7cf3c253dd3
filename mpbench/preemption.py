"""SIGTERM, a cluster's preemption notice, means "stop and be resumable" at every moment.

- While a run's workers train, the launcher passes SIGTERM on to them (`forwarded_to`): they
  agree on a step, checkpoint there and stop, and the run is recorded as `interrupted`. A worker
  still starting up (before it could install its own handler) dies of it; the launcher, knowing
  it sent the signal, records that run as interrupted too.
- At any other moment (composing the config, loading data, between the runs of a sweep,
  writing the report) SIGTERM raises `Preempted` in the main thread; run.py records an
  interrupted run if one was set up, and exits 143 (128 + SIGTERM), which stops a sweep.
- In a job of Hydra's submitit launcher (one process per sweep point, `in_submitit_job`), the
  scheduler's notice may also be submitit's preemption signal (USR2 unless
  SUBMITIT_PREEMPT_SIGNAL says otherwise: SLURM sends it `signal_delay_s` before a time-limit
  kill), which a run takes as SIGTERM. An interrupted point there ends its job normally, so that
  the sweep's other jobs and its report go on; re-submitting with resume=true continues it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator


class Preempted(BaseException):
    """SIGTERM arrived outside a run's training. A BaseException so that no `except Exception`
    (Hydra's job runner among them) takes it for a failure and carries on."""


class _Sigterm:
    """Whether SIGTERM has arrived in this process (process-wide state, as the signal is). The
    handler's exception can be lost: raised while the garbage collector runs a weakref callback
    or a __del__, Python prints it and carries on. So the next safe point checks again
    (`raise_if_preempted`): a new run does not start, the process does not exit 0. And a library
    may turn it into an error of its own (a `finally` that fails on the half-done state): run.py
    then reports the preemption, not that error (`sigterm_arrived`)."""

    arrived = False


def _raise_preempted(*_) -> None:
    _Sigterm.arrived = True
    raise Preempted("SIGTERM")


def sigterm_arrived() -> bool:
    """Whether SIGTERM arrived (outside `forwarded_to`) since start-up."""
    return _Sigterm.arrived


def raise_if_preempted() -> None:
    """Raise Preempted if SIGTERM arrived before, also when the handler's own exception was lost."""
    if _Sigterm.arrived:
        raise Preempted("SIGTERM")


def raise_on_sigterm() -> None:
    """From now on, SIGTERM raises Preempted in the main thread (install once, at start-up)."""
    signal.signal(signal.SIGTERM, _raise_preempted)


class Forwarding:
    """Whether SIGTERM arrived while `forwarded_to` was active."""

    received: bool = False


def in_submitit_job() -> bool:
    """Whether this process is a job started by submitit (SLURM or its local executor)."""
    return "SUBMITIT_EXECUTOR" in os.environ


def stop_signals() -> list[signal.Signals]:
    """The signals that ask a training run to checkpoint and stop: SIGTERM, and in a submitit
    job its preemption signal."""
    if not in_submitit_job():
        return [signal.SIGTERM]
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    extra = getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)
    return [signal.SIGTERM] + ([extra] if extra is not None and extra != signal.SIGTERM else [])


@contextlib.contextmanager
def forwarded_to(stop_workers: Callable[[], None]) -> Iterator[Forwarding]:
    """While inside, SIGTERM (and the other `stop_signals`) calls `stop_workers` and is remembered
    (`.received`) instead of raising; on leaving, the previous handlers come back."""
    raise_if_preempted()  # a SIGTERM whose exception was lost: do not start the workers
    state = Forwarding()

    def forward(*_) -> None:
        state.received = True
        stop_workers()
    previous = {signum: signal.signal(signum, forward) for signum in stop_signals()}
    try:
        yield state
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
