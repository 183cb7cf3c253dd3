"""What a message and an all-reduce cost: the α-β model, measured over the real transport or preset.

A message of n bytes between two workers takes α + n/β (α: latency, β: bandwidth). A ring
all-reduce of n bytes over p workers sends 2(p-1) chunks of n/p each way round the ring, in
2(p-1) latency-bound rounds: 2(p-1)α + 2(p-1)/p · n/β (Thakur et al. 2005; Patarasuk & Yuan 2009).

`measure_link` takes α and β by a ping-pong between two spawned gloo (or NCCL) processes, with
the same `torch.distributed` calls the algorithms use: α from small messages, β from large ones.
`PRESETS` are common interconnects' nominal figures (one direction, per link), for asking what a
method would do on hardware this machine is not.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@dataclass(frozen=True)
class Link:
    """α (seconds) and β (bytes per second) of one worker-to-worker link, and where they came from."""

    latency_s: float
    bytes_per_s: float
    source: str
    reduce_bytes_per_s: float | None = None  # an all-reduce's own β where measured (gloo reduces on the CPU)

    def message_s(self, nbytes: int) -> float:
        """α + n/β: one point-to-point message."""
        return self.latency_s + nbytes / self.bytes_per_s if nbytes else 0.0

    def all_reduce_s(self, nbytes: int, workers: int) -> float:
        """A ring all-reduce: 2(p-1)α + 2(p-1)/p · n/β; nothing on one worker."""
        if workers <= 1 or not nbytes:
            return 0.0
        rounds = 2 * (workers - 1)
        return rounds * self.latency_s + rounds / workers * nbytes / (self.reduce_bytes_per_s or self.bytes_per_s)


PRESETS = {  # nominal: latency and one-direction bandwidth per link
    "nvlink4": Link(3e-6, 450e9, "preset nvlink4 (H100 NVLink 4, 450 GB/s)"),
    "pcie4": Link(5e-6, 25e9, "preset pcie4 (PCIe 4.0 x16, 25 GB/s)"),
    "infiniband_hdr": Link(5e-6, 25e9, "preset infiniband_hdr (200 Gb/s HDR)"),
    # 100 Gb/s to each node: Frontera's HDR100 InfiniBand and Stampede2's Omni-Path (HyPar-Flow's clusters)
    "infiniband_hdr100": Link(5e-6, 12.5e9, "preset infiniband_hdr100 (100 Gb/s HDR100)"),
    "ethernet_100g": Link(2e-5, 12e9, "preset ethernet_100g (100 GbE)"),
    "ethernet_10g": Link(5e-5, 1.2e9, "preset ethernet_10g (10 GbE)"),
}
LINK_CHOICES = ("measured", *PRESETS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping_pong(rank: int, port: int, backend: str, sizes: list[int], repeats: int, out: str) -> None:
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        one_way = []
        for size in sizes:
            buf = torch.zeros(max(size // 4, 1), dtype=torch.float32, device=device)
            times = []
            for r in range(repeats + 1):  # the first round trip sets up the connection
                dist.barrier()
                started = time.perf_counter()
                if rank == 0:
                    dist.send(buf, 1)
                    dist.recv(buf, 1)
                else:
                    dist.recv(buf, 0)
                    dist.send(buf, 0)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if r:
                    times.append((time.perf_counter() - started) / 2)
            one_way.append(statistics.median(times))
        reduce = []
        for size in sizes[1:]:
            buf = torch.zeros(size // 4, dtype=torch.float32, device=device)
            times = []
            for r in range(repeats + 1):
                dist.barrier()
                started = time.perf_counter()
                dist.all_reduce(buf)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if r:
                    times.append(time.perf_counter() - started)
            reduce.append(statistics.median(times))
        if rank == 0:
            Path(out).write_text(" ".join(map(repr, one_way + reduce)))
    finally:
        dist.destroy_process_group()


def measure_link(backend: str = "gloo", repeats: int = 20) -> Link:
    """α and β by ping-pong between two processes over `backend` (gloo on loopback, or NCCL
    between two GPUs): α the one-way time of a 4-byte message, β from 4 MiB and 16 MiB ones; and
    the all-reduce's own β from two-worker all-reduces of the same sizes (for p = 2 the ring's
    bandwidth term is n/β), since gloo's reduction runs on the CPU and is slower than a copy."""
    sizes = [4, 4 << 20, 16 << 20]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "one_way")
        mp.start_processes(_ping_pong, args=(_free_port(), backend, sizes, repeats, out), nprocs=2,
                           start_method="spawn", join=True)
        small, mid, large, reduce_mid, reduce_large = map(float, Path(out).read_text().split())
    bandwidth = (sizes[2] - sizes[1]) / max(large - mid, 1e-9)
    reduce_bandwidth = (sizes[2] - sizes[1]) / max(reduce_large - reduce_mid, 1e-9)
    return Link(latency_s=small, bytes_per_s=bandwidth, reduce_bytes_per_s=reduce_bandwidth,
                source=f"measured: {backend} ping-pong and all-reduce on this machine")
