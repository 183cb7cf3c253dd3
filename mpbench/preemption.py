"""SIGTERM, a cluster's preemption notice, means "stop and be resumable" at every moment.

- While a run's workers train, the launcher passes SIGTERM on to them (`forwarded_to`): they
  agree on a step, checkpoint there and stop, and the run is recorded as `interrupted`. A worker
  still starting up (before it could install its own handler) dies of it; the launcher, knowing
  it sent the signal, records that run as interrupted too.
- At any other moment (composing the config, loading data, between the runs of a sweep,
  writing the report) SIGTERM raises `Preempted` in the main thread; run.py records an
  interrupted run if one was set up, and exits 143 (128 + SIGTERM), which stops a sweep.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


class Preempted(BaseException):
    """SIGTERM arrived outside a run's training. A BaseException so that no `except Exception`
    (Hydra's job runner among them) takes it for a failure and carries on."""


def _raise_preempted(*_) -> None:
    raise Preempted("SIGTERM")


def raise_on_sigterm() -> None:
    """From now on, SIGTERM raises Preempted in the main thread (install once, at start-up)."""
    signal.signal(signal.SIGTERM, _raise_preempted)


class Forwarding:
    """Whether SIGTERM arrived while `forwarded_to` was active."""

    received: bool = False


@contextlib.contextmanager
def forwarded_to(stop_workers: Callable[[], None]) -> Iterator[Forwarding]:
    """While inside, SIGTERM calls `stop_workers` and is remembered (`.received`) instead of
    raising; on leaving, the previous handler comes back."""
    state = Forwarding()

    def forward(*_) -> None:
        state.received = True
        stop_workers()
    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)
