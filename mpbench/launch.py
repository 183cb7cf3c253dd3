"""Start the workers of one run, wait for them, and write the run's summary.

Two ways in, one set of records:
- `python run.py ...`: this process spawns `gpus` worker processes joined through a TCPStore it
  holds, waits for them, and merges their reports into summary.json;
- `torchrun --nproc-per-node=N run.py ...`: torchrun started the workers; each joins the existing
  group (env://), and rank 0 merges the reports.

No wait is unbounded: group creation, collectives and point-to-point receives use the run's
`timeout_s`. When a spawned worker ends with an error, torch.multiprocessing terminates the rest;
Ctrl-C terminates every worker before this process exits.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from mpbench.config import RunSpec
from mpbench.errors import ConfigError
from mpbench.records import atomic_write_json, environment_record, read_json, result_line, worker_report_path
from mpbench.topology import Topology
from mpbench.worker import Rendezvous, run_worker

REPO = Path(__file__).resolve().parents[1]


def started_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def torchrun_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def launch(spec: RunSpec, topology: Topology, run_dir: Path, config: dict) -> dict:
    """Run one training run to the end and return its summary (also written to summary.json).

    Under torchrun this process is a worker and ends with the run (it does not return)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if started_by_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if world != topology.workers:
            raise ConfigError(f"gpus={topology.workers} but torchrun started {world} processes; "
                              f"pass gpus={world} or --nproc-per-node={topology.workers}")
        return _join_torchrun(spec, topology, run_dir, config, started)
    return _spawn(spec, topology, run_dir, config, started)


def _spawn(spec: RunSpec, topology: Topology, run_dir: Path, config: dict, started: float) -> dict:
    # The store lives in this process, so it outlives any worker that crashes.
    store = dist.TCPStore("127.0.0.1", 0, topology.workers + 1, is_master=True,
                          timeout=timedelta(seconds=spec.timeout_s), wait_for_workers=False)
    rendezvous = Rendezvous("127.0.0.1", store.port)
    context = mp.start_processes(run_worker, args=(spec, topology, run_dir, rendezvous, config),
                                 nprocs=topology.workers, join=False, start_method="spawn")
    launcher_error, crashed_rank = None, None

    def preempted(*_):  # pass SIGTERM on: the workers checkpoint and stop, then we record the run
        for p in context.processes:
            if p.is_alive():
                p.terminate()
    previous_handler = signal.signal(signal.SIGTERM, preempted)
    try:
        while not context.join(timeout=0.5):
            pass
    except mp.ProcessRaisedException as err:  # only before run_worker's own error handling
        launcher_error, crashed_rank = f"rank {err.error_index} raised", err.error_index
    except mp.ProcessExitedException as err:  # workers end with os._exit: 1 after a failure
        launcher_error = (f"rank {err.error_index} was killed by {err.signal_name}" if err.signal_name
                          else f"rank {err.error_index} exited with code {err.exit_code}")
        crashed_rank = err.error_index
    except BaseException as err:  # Ctrl-C or anything else here: no worker may outlive this process
        _terminate(context.processes)
        summary = compose_summary(spec, topology, run_dir, started)
        what = "Ctrl-C (SIGINT)" if isinstance(err, KeyboardInterrupt) else type(err).__name__
        summary.update(status="interrupted", reason=f"interrupted by {what} before the run finished; "
                       f"all workers ended")
        atomic_write_json(run_dir / "summary.json", summary)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        _terminate(context.processes)
    summary = compose_summary(spec, topology, run_dir, started, launcher_error, crashed_rank)
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def _terminate(processes) -> None:
    """End every worker still alive. SIGKILL: a worker takes SIGTERM as a request to checkpoint
    at the next step, which survivors of a failed peer would never reach."""
    for p in processes:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join()


def _join_torchrun(spec: RunSpec, topology: Topology, run_dir: Path, config: dict, started: float):
    """This process is one of torchrun's workers; rank 0 also writes the summary. Never returns."""

    def write_summary(run_dir: Path) -> None:
        summary = compose_summary(spec, topology, run_dir, started)
        atomic_write_json(run_dir / "summary.json", summary)
        print(result_line(run_dir, summary), flush=True)

    run_worker(torchrun_rank(), spec, topology, run_dir, Rendezvous(), config,
               finish=write_summary if torchrun_rank() == 0 else None)


def compose_summary(spec: RunSpec, topology: Topology, run_dir: Path, started: float,
                    launcher_error: str | None = None, crashed_rank: int | None = None) -> dict:
    """Merge the workers' reports into one record of the run.

    Status: `failed` if any worker failed or left no report, else `diverged` if the loss or some
    worker's weights became non-finite, else `ok`.
    """
    reports = {}
    for rank in range(topology.workers):
        path = worker_report_path(run_dir, rank)
        if path.exists():
            reports[rank] = read_json(path)
    failures = sorted((r for r in reports.values() if r["status"] == "failed"), key=lambda r: r["time"])
    missing = [rank for rank in range(topology.workers) if rank not in reports]
    summary: dict = {
        "status": "ok", "reason": None,
        "algorithm": spec.algorithm, "model": spec.model, "dataset": spec.dataset,
        "gpus": spec.gpus, "steps": spec.steps, "batch_size": spec.batch_size, "seed": spec.seed,
        "dtype": spec.dtype, "launched_by": "torchrun" if started_by_torchrun() else "spawn",
        **{k: v for k, v in topology.as_record().items() if k != "workers"},
    }
    # The cause: the worker the launcher saw end first; else the earliest reported failure (the
    # others then only report "connection closed by peer"); else a worker that left no report.
    cause = crashed_rank if crashed_rank is not None else (
        failures[0]["rank"] if failures else (missing[0] if missing else None))
    if cause is not None:
        report = reports.get(cause, {})
        if report.get("status") == "failed":
            where = f"at step {report['step']}" if report["step"] is not None else "during set-up"
            summary.update(status="failed", failed_rank=cause, failed_step=report["step"],
                           reason=f"rank {cause} failed {where}: {report['error']}")
        else:  # died hard: killed, os._exit, a segfault
            step = next((r["step"] for r in failures if r.get("step")), None)
            summary.update(status="failed", failed_rank=cause, failed_step=step,
                           reason=f"rank {cause} ended without a report ({launcher_error or 'no report'})")
    elif launcher_error:
        summary.update(status="failed", failed_rank=None, reason=launcher_error)
    else:
        rank0 = reports[0]
        if rank0["status"] == "diverged":
            summary.update(status="diverged", diverged_at_step=rank0["diverged_at_step"],
                           reason=rank0["diverged_reason"])
        elif rank0["status"] == "interrupted":
            step, saved = rank0["interrupted_at_step"], rank0.get("checkpointed_at_step")
            resume = (f"checkpoint at step {saved}: run it again with resume=true" if saved == step
                      else f"no checkpoint: {spec.algorithm} cannot checkpoint "
                           f"({spec.algorithm_cls.checkpoint_gap(spec.algorithm_settings)})")
            summary.update(status="interrupted", interrupted_at_step=step,
                           reason=f"stopped by SIGTERM after step {step}; {resume}")
    if 0 in reports and "final" in reports[0]:
        rank0 = reports[0]
        summary.update(steps_completed=rank0["steps_completed"], final=rank0["final"],
                       **rank0["timing"], model_facts=rank0["model"],
                       resumed_from_step=rank0.get("resumed_from_step"))
    ranked = [reports.get(rank, {}) for rank in range(topology.workers)]
    summary["algorithm_facts_per_worker"] = [r.get("algorithm") for r in ranked]
    summary["peak_memory_bytes_per_worker"] = [r.get("peak_memory_bytes") for r in ranked]
    summary["baseline_memory_bytes_per_worker"] = [r.get("baseline_memory_bytes") for r in ranked]
    summary["iteration_s_per_worker"] = [r.get("iteration_s_median") for r in ranked]
    summary["compute_s_per_worker"] = [r.get("compute_s_median") for r in ranked]
    summary["wait_s_per_worker"] = [r.get("wait_s_median") for r in ranked]
    summary["bytes_sent_per_worker"] = [r.get("bytes_sent") for r in ranked]
    summary["environment"] = environment_record(REPO)
    summary.update(started_at=started, finished_at=time.time(), wall_time_s=time.time() - started)
    return summary
