"""What one worker process does: join the group, build its part of the run, train, report.

Every worker builds the whole model from the same seed and hands it to the algorithm, which keeps
the blocks it owns; so every placement starts from identical weights. Each worker ends by writing
its own report (`workers/rank<r>.json`), also when it fails, so that the run's summary can name
the rank and step where a failure started.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from algorithms import ALGORITHMS
from models import build_model, describe
from mpbench.algorithm import Worker
from mpbench.config import RunSpec
from mpbench.data import load_dataset
from mpbench.metrics_log import MetricsLog
from mpbench.records import atomic_write_json, worker_report_path
from mpbench.topology import Topology
from mpbench.trainer import Trainer, peak_memory_bytes, timing_summary, to_device
from mpbench.transport import Transport

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Rendezvous:
    """How workers find each other: a TCPStore held by the launcher, or torchrun's environment."""

    host: str | None = None  # None: torchrun's env:// variables
    port: int | None = None


def configure_threads(threads: int) -> None:
    """A worker is a fixed unit of compute: `threads` intra-op threads, one inter-op thread."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (torchrun re-use, tests)
        pass


def join_group(rank: int, world_size: int, backend: str, rendezvous: Rendezvous, timeout_s: float) -> None:
    timeout = timedelta(seconds=timeout_s)
    if rendezvous.host is None:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timeout)
        return
    store = dist.TCPStore(rendezvous.host, rendezvous.port, world_size, is_master=False,
                          timeout=timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


def run_worker(rank: int, spec: RunSpec, topology: Topology, run_dir: Path,
               rendezvous: Rendezvous, config: dict) -> None:
    """Entry point of one worker process (spawned, or started by torchrun)."""
    configure_threads(topology.threads_per_worker)
    world_size = topology.workers
    report_path = worker_report_path(run_dir, rank)
    trainer = None
    started = time.time()
    try:
        if topology.device_type == "cuda":
            device = torch.device("cuda", rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        join_group(rank, world_size, topology.backend, rendezvous, spec.timeout_s)
        if rendezvous.host is None:  # torchrun: only rank 0 has a Hydra run directory
            shared = [str(run_dir)]
            dist.broadcast_object_list(shared, src=0)
            run_dir = Path(shared[0])
            report_path = worker_report_path(run_dir, rank)
        dtype = DTYPES[spec.dtype]
        transport = Transport(rank, world_size, spec.timeout_s)
        worker = Worker(rank, world_size, device, dtype, transport)

        data = load_dataset(spec.dataset, spec.dataset_settings, spec.data_dir, spec.seed,
                            cache_dir=spec.cache_dir)
        torch.manual_seed(spec.seed)
        model = build_model(spec.model, spec.model_settings, data.info).to(device=device, dtype=dtype)
        model_facts = describe(model)
        algorithm_cls = ALGORITHMS[spec.algorithm][1]
        example_inputs = to_device(data.train_batch(0, spec.batch_size)[0], device, dtype)
        algorithm = algorithm_cls(model, worker, spec.optimizer, spec.algorithm_settings, example_inputs)

        metrics = MetricsLog(run_dir, spec.logger, run_dir.name, config) if rank == 0 else None
        trainer = Trainer(algorithm, data, worker, optimizer=spec.optimizer, steps=spec.steps,
                          batch_size=spec.batch_size, eval_every=spec.eval_every,
                          eval_batches=spec.eval_batches, metrics_sink=metrics, fault=spec.fault,
                          progress=rank == 0)
        outcome = trainer.run()
        if spec.save_weights:
            weights = run_dir / "weights" / f"rank{rank}.pt"
            weights.parent.mkdir(parents=True, exist_ok=True)
            partial = weights.with_suffix(".tmp")
            torch.save({k: v.detach().cpu() for k, v in algorithm.model_state().items()}, partial)
            os.replace(partial, weights)  # atomic: never a half-written weights file
        report = {
            "rank": rank, "status": outcome.status, "steps_completed": outcome.steps_completed,
            "diverged_at_step": outcome.diverged_at,
            "peak_memory_bytes": peak_memory_bytes(device), "bytes_sent": transport.bytes_sent,
            "algorithm": algorithm.summary(), "started_at": started, "time": time.time(),
        }
        if rank == 0:
            report.update(final=outcome.final, model=model_facts,
                          timing=timing_summary(outcome.step_times_s, spec.batch_size, data.info))
        atomic_write_json(report_path, report)
        if metrics is not None:
            metrics.finish(report)
        # Every report is on disk before any worker leaves (torchrun's rank 0 merges them next).
        transport.all_reduce(torch.zeros(1, device=device), count=False)
    except BaseException as err:
        atomic_write_json(report_path, {
            "rank": rank, "status": "failed", "step": trainer.step + 1 if trainer else None,
            "error": f"{type(err).__name__}: {err}".strip().splitlines()[0][:500],
            "traceback": traceback.format_exc(), "started_at": started, "time": time.time(),
        })
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rendezvous.host is not None:
        exit_without_finalizers()


def exit_without_finalizers() -> None:
    """End this process now that its work is on disk. Interpreter shutdown can abort a process
    whose gloo threads still hold finished async work (pytorch/pytorch#179291), which would turn
    a successful worker into a crash; skipping the finalizers avoids that race."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
