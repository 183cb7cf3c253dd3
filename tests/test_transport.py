"""No wait between workers can hang: a receive from a silent peer times out with the ranks named."""

from __future__ import annotations

import pytest

import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mpbench.transport import PeerTimeout, Transport

pytestmark = pytest.mark.slow  # real processes: CI runs it, `pytest -m "not slow"` skips it


def _worker(rank: int, port: int, results) -> None:
    store = dist.TCPStore("127.0.0.1", port, 2, is_master=False, timeout=timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2, timeout=timedelta(seconds=30))
    transport = Transport(rank, 2, timeout_s=2.0)
    data = torch.arange(4.0)
    if rank == 1:
        transport.send(data, 0)  # one message only; the second receive on rank 0 must time out
        results.put((rank, transport.bytes_sent, None))
        time.sleep(6)
    else:
        got = transport.recv(torch.zeros(4), 1)
        started = time.time()
        try:
            transport.recv(torch.zeros(4), 1)
            error = None
        except PeerTimeout as err:
            error = (str(err), time.time() - started)
        results.put((rank, got.tolist(), error))
    # No destroy_process_group: rank 0's pending receive would wait for the peer again.


def test_receive_from_silent_peer_times_out():
    store = dist.TCPStore("127.0.0.1", 0, 3, is_master=True, wait_for_workers=False)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    procs = mp.start_processes(_worker, args=(store.port, results), nprocs=2, join=False,
                               start_method="spawn")
    outcome = {}
    for _ in range(2):
        rank, *rest = results.get()
        outcome[rank] = rest
    for p in procs.processes:
        p.join(timeout=20)
        if p.is_alive():
            p.kill()
    assert outcome[1][0] == 16  # 4 float32 values counted as sent
    received, (message, waited) = outcome[0]
    assert received == [0.0, 1.0, 2.0, 3.0]
    assert "rank 0" in message and "rank 1" in message and 1.5 < waited < 5.5
