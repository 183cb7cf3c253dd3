"""A worker's communication with the others: torch.distributed, with a timeout on every wait.

All traffic of an algorithm goes through a `Transport` so that (1) no wait can hang: a dead or
wedged peer ends the run with an error naming the ranks, (2) the bytes each worker sends are
counted the same way for every algorithm, and (3) the time it waits is given to the worker's
`IterationClock`. Harness traffic (the per-step loss reduction, result gathering) uses the same
timeouts but is not counted.
"""

from __future__ import annotations

import time
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from mpbench.parallel.clock import IterationClock


class PeerTimeout(RuntimeError):
    """A peer did not answer within the run's timeout."""


class Pending:
    """A started send, receive or collective; `wait()` finishes it within the run's timeout."""

    def __init__(self, transport: Transport, work, tensor: torch.Tensor, what: str):
        self._transport, self._work, self.tensor, self._what = transport, work, tensor, what

    def wait(self) -> torch.Tensor:
        if self._work is not None:
            self._transport._wait(self._work, self._what)
            self._work = None
        return self.tensor


class Transport:
    def __init__(self, rank: int, world_size: int, timeout_s: float, group=None,
                 clock: IterationClock | None = None):
        self.rank = rank
        self.world_size = world_size
        self.timeout = timedelta(seconds=timeout_s)
        self.group = group
        self.clock = clock
        self.bytes_sent = 0  # by the algorithm: point-to-point payloads + estimated collective volume

    def _wait(self, work, what: str) -> None:
        started = time.perf_counter()
        try:
            completed = work.wait(timeout=self.timeout)
            if self.clock is not None:
                self.clock.add_wait(time.perf_counter() - started)
        except RuntimeError as err:
            raise PeerTimeout(f"rank {self.rank}: {what} failed or timed out after "
                              f"{self.timeout.total_seconds():.0f}s: {err}") from err
        if completed is False:
            raise PeerTimeout(f"rank {self.rank}: {what} timed out after {self.timeout.total_seconds():.0f}s")

    def send(self, tensor: torch.Tensor, dst: int, count: bool = True) -> None:
        self._wait(dist.isend(tensor, dst, group=self.group), f"send to rank {dst}")
        if count:
            self.bytes_sent += tensor.numel() * tensor.element_size()

    def recv(self, tensor: torch.Tensor, src: int) -> torch.Tensor:
        self._wait(dist.irecv(tensor, src, group=self.group), f"receive from rank {src}")
        return tensor

    def post_send(self, tensor: torch.Tensor, dst: int, tag: int) -> Pending:
        """Start sending `tensor` (kept alive by the handle) on message stream `tag`; counted."""
        work = dist.isend(tensor, dst, group=self.group, tag=tag)
        self.bytes_sent += tensor.numel() * tensor.element_size()
        return Pending(self, work, tensor, f"send to rank {dst} (tag {tag})")

    def post_recv(self, tensor: torch.Tensor, src: int, tag: int) -> Pending:
        """Start receiving into `tensor` from message stream `tag`; `wait()` returns it."""
        return Pending(self, dist.irecv(tensor, src, group=self.group, tag=tag), tensor,
                       f"receive from rank {src} (tag {tag})")

    def start_all_reduce(self, tensor: torch.Tensor, count: bool = True) -> Pending:
        """An all-reduce (sum) over all workers that overlaps with what the caller does next."""
        if self.world_size == 1:
            return Pending(self, None, tensor, "all-reduce")
        work = dist.all_reduce(tensor, group=self.group, async_op=True)
        if count:
            self.bytes_sent += self.ring_volume(tensor.numel() * tensor.element_size())
        return Pending(self, work, tensor, "all-reduce")

    def all_reduce(self, tensor: torch.Tensor, op=dist.ReduceOp.SUM, count: bool = True,
                   group=None) -> torch.Tensor:
        """In-place all-reduce over `group` (default: all workers); counted as ring-all-reduce
        volume unless `count=False`."""
        group = group if group is not None else self.group
        size = dist.get_world_size(group) if dist.is_initialized() else 1
        if size == 1:
            return tensor
        self._wait(dist.all_reduce(tensor, op=op, group=group, async_op=True), "all-reduce")
        if count:
            self.bytes_sent += self.ring_volume(tensor.numel() * tensor.element_size(), size)
        return tensor

    def ring_volume(self, payload_bytes: int, workers: int | None = None) -> int:
        """Bytes one worker sends in a ring all-reduce of `payload_bytes`: 2(N-1)/N of it."""
        n = workers or self.world_size
        return 2 * (n - 1) * payload_bytes // n

    def counting_allreduce_hook(self):
        """A DDP communication hook: DDP's own bucketed all-reduce (mean), with bytes counted."""

        # No annotations here: DDP checks them, and postponed (string) annotations fail that check.
        def hook(process_group, bucket):
            buffer = bucket.buffer()
            self.bytes_sent += self.ring_volume(buffer.numel() * buffer.element_size())
            return default_hooks.allreduce_hook(process_group, bucket)

        return hook
