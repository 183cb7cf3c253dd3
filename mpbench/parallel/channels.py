"""Message streams between the modules of a model split across workers.

A `Channel` carries one kind of tensor, in order, from one module to another: the activations of
a boundary forward, its error gradients backward, or a tied tensor's gradient part. Both ends of
a channel may sit on one worker (a `LocalChannel`, a queue) or on two (a `RemoteChannel`, tagged
isend/irecv through the transport, so every wait has the run's timeout and every byte is
counted). The code that produces and consumes messages does not need to know which.

Sends never block the sender: a `RemoteChannel` keeps the last few sends in flight and only
waits for the oldest when more are outstanding, so a worker goes on computing while its messages
travel. Receives block until the message is there.
"""

from __future__ import annotations

from collections import deque

import torch

from mpbench.transport import Pending, Transport

SENDS_IN_FLIGHT = 2  # per channel; a receiver consumes a message at most one iteration late


class LocalChannel:
    """Both ends on this worker: a FIFO queue."""

    def __init__(self):
        self._queue: deque[torch.Tensor] = deque()

    def put(self, tensor: torch.Tensor) -> None:
        self._queue.append(tensor)

    def take(self) -> torch.Tensor:
        return self._queue.popleft()


class RemoteChannel:
    """One end on this worker, the other on rank `peer`; messages of a fixed shape and dtype."""

    def __init__(self, transport: Transport, peer: int, tag: int, shape: torch.Size,
                 dtype: torch.dtype, device: torch.device):
        self.transport, self.peer, self.tag = transport, peer, tag
        self.shape, self.dtype, self.device = shape, dtype, device
        self._sends: deque[Pending] = deque()

    def put(self, tensor: torch.Tensor) -> None:
        self._sends.append(self.transport.post_send(tensor.contiguous(), self.peer, self.tag))
        while len(self._sends) > SENDS_IN_FLIGHT:
            self._sends.popleft().wait()

    def take(self) -> torch.Tensor:
        buffer = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        return self.transport.post_recv(buffer, self.peer, self.tag).wait()


Channel = LocalChannel | RemoteChannel


def channel_between(src: int, dst: int, me: int, tag: int, shape: torch.Size | None, dtype: torch.dtype | None,
                    transport: Transport, device: torch.device) -> Channel | None:
    """The channel from the worker holding the producer (`src`) to the one holding the consumer
    (`dst`), as worker `me` sees it: a queue when both are here, this end of a remote stream
    when one is, None when neither is. `shape` and `dtype` size a remote stream's messages."""
    if src == me and dst == me:
        return LocalChannel()
    if me not in (src, dst):
        return None
    return RemoteChannel(transport, dst if src == me else src, tag, shape, dtype, device)
