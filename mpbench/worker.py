"""What one worker process does: join the group, build its part of the run, train, report.

Every worker builds the whole model from the same seed and hands it to the algorithm, which keeps
the blocks it owns; so every placement starts from identical weights. Each worker ends by writing
its own report (`workers/rank<r>.json`), also when it fails, so that the run's summary can name
the rank and step where a failure started.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
from tqdm import tqdm

from mpbench.algorithm import BuildContext, Worker
from mpbench.block_compute import prepare_blocks
from mpbench.checkpoints import latest_complete_step, load_worker_state
from mpbench.config import RunSpec
from mpbench.data import load_dataset
from mpbench.external_workers import local_rank
from mpbench.flops import peak_flops, training_flops_per_token, utilisation
from mpbench.host_memory import keep_freed_host_memory
from mpbench.metrics_log import MetricsLog
from mpbench.parallel.clock import IterationClock
from mpbench.preemption import stop_signals
from mpbench.records import atomic_write_json, worker_report_path
from mpbench.topology import Topology
from mpbench.trainer import Checkpointing, LossSpikes, Trainer, timing_summary, to_device
from mpbench.transport import Transport
from mpbench.worker_memory import measure_of, peak_bytes, start_measuring

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Rendezvous:
    """How workers find each other: a TCPStore held by the launcher, or torchrun's environment."""

    host: str | None = None  # None: torchrun's env:// variables
    port: int | None = None


def configure_compute_unit(threads: int) -> None:
    """A worker is a fixed unit of compute: `threads` intra-op threads, one inter-op thread, and
    a host allocator that keeps freed memory (mpbench/host_memory.py)."""
    keep_freed_host_memory()
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


def run_worker(rank: int, spec: RunSpec, topology: Topology, run_dir: Path, rendezvous: Rendezvous,
               config: dict, finish: Callable[[Path], None] | None = None, exit_at_end: bool = True) -> int:
    """Entry point of one worker process (spawned, or started by torchrun or submitit).

    The worker trains, writes its report (also on failure), waits until every worker has written
    its own, leaves the group, calls `finish(run_dir)` if given (an external launcher's rank 0
    writes the summary there) and ends the process with exit status 0, or 1 if it failed. With
    `exit_at_end=False` (a submitit task, whose job must record a result) it returns that status.
    """
    configure_compute_unit(topology.threads_per_worker)
    # SIGTERM (a cluster's preemption notice) asks for a clean stop: the workers agree on a step,
    # checkpoint there and exit. The launcher kills survivors of a failure with SIGKILL instead.
    # SLURM signals every process of a job step, so a worker also takes submitit's preemption signal.
    stop = threading.Event()
    for signum in stop_signals():
        signal.signal(signum, lambda *_: stop.set())
    # One progress bar per process needs no cross-process lock; tqdm's default one is a semaphore
    # that exit_now() would leave to the parent's resource tracker to clean up.
    tqdm.set_lock(threading.RLock())
    started, failed = time.time(), False
    progress: list[Trainer] = []  # the trainer, once built: its step locates a failure
    try:
        device = _device_of(rank, topology)
        join_group(rank, topology.workers, topology.backend, rendezvous, spec.timeout_s)
        if rendezvous.host is None:  # torchrun: only rank 0 has a Hydra run directory
            shared = [str(run_dir)]
            dist.broadcast_object_list(shared, src=0)
            run_dir = Path(shared[0])
        clock = IterationClock()
        transport = Transport(rank, topology.workers, spec.timeout_s, clock=clock)
        worker = Worker(rank, topology.workers, device, DTYPES[spec.dtype], transport, clock)
        report = _train(spec, worker, run_dir, config, progress, stop.is_set)
        atomic_write_json(worker_report_path(run_dir, rank), {**report, "started_at": started, "time": time.time()})
        # Every report is on disk before any worker leaves (torchrun's rank 0 merges them next).
        transport.all_reduce(torch.zeros(1, device=device), count=False)
    except BaseException as err:
        failed = True
        atomic_write_json(worker_report_path(run_dir, rank), {
            "rank": rank, "status": "failed", "step": progress[0].step + 1 if progress else None,
            "error": f"{type(err).__name__}: {err}".strip().splitlines()[0][:500],
            "traceback": traceback.format_exc(), "started_at": started, "time": time.time(),
        })
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if finish is not None:
        finish(run_dir)
    if not exit_at_end:
        return 1 if failed else 0
    exit_now(1 if failed else 0)


def _device_of(rank: int, topology: Topology) -> torch.device:
    if topology.device_type != "cuda":
        return torch.device("cpu")
    here = local_rank()  # a launcher over several nodes says which of this node's GPUs is ours
    device = torch.device("cuda", here if here is not None else rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def _train(spec: RunSpec, worker: Worker, run_dir: Path, config: dict, progress: list,
           stop_requested: Callable[[], bool]) -> dict:
    """Build this worker's data, model and algorithm, train, and return its report."""
    rank, device, dtype = worker.rank, worker.device, worker.dtype
    baseline_memory = start_measuring(device)  # this process before data and model: interpreter, torch, gloo
    data = load_dataset(spec.dataset, spec.dataset_settings, spec.data_path, spec.seed, cache_dir=spec.cache_path)
    torch.manual_seed(spec.seed)
    model = spec.build_model(spec.model_settings, data.info).to(device=device, dtype=dtype)
    prepare_blocks(model, device.type, dtype, autocast=spec.autocast, compile=spec.compile)
    model_facts = model.describe()
    example_inputs = to_device(data.train_batch(0, spec.batch_size)[0], device, dtype)
    algorithm = spec.algorithm_cls.create(BuildContext(model, worker, spec.optimizer, spec.algorithm_settings,
                                                       example_inputs))
    metrics = MetricsLog(run_dir, spec.logger, run_dir.name, config) if rank == 0 else None
    # run.py has checked the checkpoint (and removed any of another run) before the workers started.
    resume_step = latest_complete_step(run_dir) if spec.resume else None
    checkpoints = Checkpointing(
        run_dir=run_dir, every=spec.checkpoint_every, stop_requested=stop_requested,
        possible=spec.algorithm_cls.checkpoint_gap(spec.algorithm_settings) is None,
        resume_state=load_worker_state(run_dir, resume_step, rank) if resume_step is not None else None)
    trainer = Trainer(algorithm, data, worker, optimizer=spec.optimizer, steps=spec.steps,
                      batch_size=spec.batch_size, eval_every=spec.eval_every,
                      eval_batches=spec.eval_batches, metrics_sink=metrics, fault=spec.fault,
                      progress=rank == 0, checkpoints=checkpoints,
                      spikes=LossSpikes(spec.divergence_patience, spec.divergence_factor))
    progress.append(trainer)
    outcome = trainer.run()
    if spec.save_weights:
        weights = run_dir / "weights" / f"rank{rank}.pt"
        weights.parent.mkdir(parents=True, exist_ok=True)
        partial = weights.with_suffix(".tmp")
        torch.save({k: v.detach().cpu() for k, v in algorithm.model_state().items()}, partial)
        os.replace(partial, weights)  # atomic: never a half-written weights file
    time_split = worker.clock.summary()  # steady medians per iteration (mpbench/parallel/clock.py)
    report = {
        "rank": rank, "status": outcome.status, "steps_completed": outcome.steps_completed,
        "diverged_at_step": outcome.diverged_at, "diverged_reason": outcome.diverged_reason,
        "interrupted_at_step": outcome.interrupted_at,
        "checkpointed_at_step": outcome.checkpointed_at, "resumed_from_step": outcome.resumed_from,
        "peak_memory_bytes": peak_bytes(device), "baseline_memory_bytes": baseline_memory,
        "memory_measure": measure_of(device),
        "iteration_s_median": time_split["iteration_s"], "compute_s_median": time_split["compute_s"],
        "wait_s_median": time_split["wait_s"],
        "bytes_sent": worker.transport.bytes_sent, "algorithm": algorithm.facts(),
    }
    if rank == 0:
        timing = timing_summary(outcome.step_times_s, spec.batch_size, data.info)
        report.update(final=outcome.final, model=model_facts,
                      timing={**timing, **_gpu_utilisation(spec, model, data.info, device, timing)})
    if metrics is not None:
        metrics.finish(report)
    return report


def _gpu_utilisation(spec: RunSpec, model, info, device: torch.device, timing: dict) -> dict:
    """On CUDA, for a GPT: model TFLOP/s and MFU (mpbench/flops.py); elsewhere nothing."""
    settings = spec.model_settings
    if device.type != "cuda" or "tokens_per_s" not in timing or not hasattr(settings, "n_layer"):
        return {}
    per_token = training_flops_per_token(model, settings.n_layer, settings.d_model, info.input_shape[0])
    peak = peak_flops(torch.cuda.get_device_name(device), "bfloat16" if spec.autocast else spec.dtype)
    return utilisation(per_token, timing["tokens_per_s"], peak, spec.gpus)


def exit_now(status: int) -> NoReturn:
    """End this worker process without interpreter shutdown. Tearing down live gloo process
    groups at shutdown can hang (a DDP reducer's group joining a thread that waits on a peer that
    has already left) or abort ("terminate called without an active exception",
    pytorch/pytorch#179291), which would turn a finished run into a failed or hung one."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
