"""Start the workers of one run, wait for them, and write the run's summary.

Two ways in, one set of records:
- `python run.py ...`: this process spawns `gpus` worker processes joined through a TCPStore it
  holds, waits for them, and merges their reports into summary.json;
- `torchrun --nproc-per-node=N run.py ...` (or several nodes, or a submitit job of one task per
  worker: mpbench/external_workers.py): the launcher started the workers; each joins the group
  (env://), and rank 0 merges the reports.

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
from mpbench.external_workers import check_external_world, external_launcher, external_rank, started_externally
from mpbench.machine_load import Snapshot, load_record, snapshot
from mpbench.preemption import forwarded_to
from mpbench.records import (atomic_write_json, environment_record, file_digests, read_json, result_line,
                             worker_report_path)
from mpbench.topology import Topology
from mpbench.worker import Rendezvous, run_worker

REPO = Path(__file__).resolve().parents[1]


def launch(spec: RunSpec, topology: Topology, run_dir: Path, config: dict) -> dict:
    """Run one training run to the end and return its summary (also written to summary.json).

    Under torchrun this process is a worker and ends with the run (it does not return); a task of
    a submitit job returns its status (mpbench/external_workers.py)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    started = snapshot()  # the time, and the machine's load, as the run starts
    if started_externally():
        check_external_world(topology.workers)
        return _join_external(spec, topology, run_dir, config, started)
    return _spawn(spec, topology, run_dir, config, started)


def _spawn(spec: RunSpec, topology: Topology, run_dir: Path, config: dict, started: Snapshot) -> dict:
    # The store lives in this process, so it outlives any worker that crashes.
    store = dist.TCPStore("127.0.0.1", 0, topology.workers + 1, is_master=True,
                          timeout=timedelta(seconds=spec.timeout_s), wait_for_workers=False)
    rendezvous = Rendezvous("127.0.0.1", store.port)
    processes: list = []
    launcher_error, crashed_rank = None, None

    def stop_workers():  # SIGTERM: the workers checkpoint and stop, then we record the run
        for p in processes:
            if p.is_alive():
                p.terminate()
    with forwarded_to(stop_workers) as sigterm:
        try:
            context = mp.start_processes(run_worker, args=(spec, topology, run_dir, rendezvous, config),
                                         nprocs=topology.workers, join=False, start_method="spawn")
            processes.extend(context.processes)
            if sigterm.received:  # it came while they were being started
                stop_workers()
            while not context.join(timeout=0.5):
                pass
        except mp.ProcessRaisedException as err:  # only before run_worker's own error handling
            launcher_error, crashed_rank = f"rank {err.error_index} raised", err.error_index
        except mp.ProcessExitedException as err:  # workers end with os._exit: 1 after a failure
            launcher_error = (f"rank {err.error_index} was killed by {err.signal_name}" if err.signal_name
                              else f"rank {err.error_index} exited with code {err.exit_code}")
            crashed_rank = err.error_index if err.signal_name or err.exit_code != 1 else None
        except BaseException as err:  # Ctrl-C or anything else here: no worker may outlive this process
            _terminate(processes)
            summary = compose_summary(spec, topology, run_dir, started)
            what = "Ctrl-C (SIGINT)" if isinstance(err, KeyboardInterrupt) else type(err).__name__
            summary.update(status="interrupted", reason=f"interrupted by {what} before the run finished; "
                           f"all workers ended")
            atomic_write_json(run_dir / "summary.json", summary)
            raise
        finally:
            _terminate(processes)
    summary = compose_summary(spec, topology, run_dir, started, launcher_error, crashed_rank)
    if sigterm.received and summary["status"] == "failed":
        # A worker still starting up when our SIGTERM reached it dies of it; the rest then lose
        # their peer. Nothing failed: the run was stopped before it could checkpoint.
        summary.update(status="interrupted", interrupted_at_step=summary.get("failed_step") or 0,
                       reason="stopped by SIGTERM while the workers were starting; run it again with resume=true",
                       failed_rank=None, failed_step=None)
    atomic_write_json(run_dir / "summary.json", summary)
    if sigterm.received and summary["status"] != "interrupted":
        signal.raise_signal(signal.SIGTERM)  # it ended anyway, recorded as it is; now stop (Preempted)
    return summary


def _terminate(processes) -> None:
    """End every worker still alive. SIGKILL: a worker takes SIGTERM as a request to checkpoint
    at the next step, which survivors of a failed peer would never reach. Every child process
    multiprocessing started counts, also one `start_processes` had started when a Ctrl-C
    interrupted it (before it returned them): left alive, it would train on, and this process
    would wait for it at exit."""
    for p in [*processes, *(c for c in mp.active_children() if c not in processes)]:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join()


def _join_external(spec: RunSpec, topology: Topology, run_dir: Path, config: dict, started: Snapshot):
    """This process is one worker that torchrun or submitit started; rank 0 also writes the
    summary. A torchrun worker ends with the run; a submitit task returns to its job (rank 0
    the summary, the others their own status), which records the point's result."""
    torchrun = external_launcher() == "torchrun"
    summary: dict = {}

    def write_summary(run_dir: Path) -> None:
        summary.update(compose_summary(spec, topology, run_dir, started))
        atomic_write_json(run_dir / "summary.json", summary)
        if torchrun:  # no run.py after this to print it
            print(result_line(run_dir, summary), flush=True)

    status = run_worker(external_rank(), spec, topology, run_dir, Rendezvous(), config,
                        finish=write_summary if external_rank() == 0 else None, exit_at_end=torchrun)
    return summary or {"status": "ok" if status == 0 else "failed"}


# What a worker reports when a peer, not itself, went wrong: a wait that timed out or a
# connection the peer closed.
PEER_LOSS = ("PeerTimeout", "timed out", "timeout", "connection closed", "connection reset", "broken pipe")


def _lost_peer(error: str) -> bool:
    return any(sign in error.lower() for sign in (s.lower() for s in PEER_LOSS))


def _cause(failures: list[dict], missing: list[int]) -> int | None:
    """The rank that started a failure the launcher did not see: the earliest that failed by
    itself; else one that left no report (stopped or hung: the others only timed out waiting
    for it); else the earliest failure."""
    own = [r for r in failures if not _lost_peer(r["error"])]
    if own:
        return own[0]["rank"]
    if missing:
        return missing[0]
    return failures[0]["rank"] if failures else None


def compose_summary(spec: RunSpec, topology: Topology, run_dir: Path, started: Snapshot,
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
        "dtype": spec.dtype, "autocast": spec.autocast, "compile": spec.compile, "launched_by": external_launcher() or "spawn",
        **{k: v for k, v in topology.as_record().items() if k != "workers"},
    }
    cause = crashed_rank if crashed_rank is not None else _cause(failures, missing)
    if cause is not None:
        report = reports.get(cause, {})
        if report.get("status") == "failed":
            where = f"at step {report['step']}" if report["step"] is not None else "during set-up"
            summary.update(status="failed", failed_rank=cause, failed_step=report["step"],
                           reason=f"rank {cause} failed {where}: {report['error']}")
        else:  # died hard (killed, os._exit, a segfault), or went silent (stopped, hung)
            step = next((r["step"] for r in failures if r.get("step")), None)
            waiting = next((r for r in failures if _lost_peer(r["error"])), None)
            reason = (f"rank {cause} stopped responding: it left no report, and rank {waiting['rank']} failed "
                      f"waiting for it ({waiting['error'][:200]})" if waiting and crashed_rank is None
                      else f"rank {cause} ended without a report ({launcher_error or 'no report'})")
            summary.update(status="failed", failed_rank=cause, failed_step=step, reason=reason)
    elif launcher_error:
        summary.update(status="failed", failed_rank=None, reason=launcher_error)
    else:
        rank0 = reports[0]
        if rank0["status"] == "diverged":
            summary.update(status="diverged", diverged_at_step=rank0["diverged_at_step"],
                           reason=rank0["diverged_reason"])
        elif rank0["status"] == "interrupted":
            step, saved = rank0["interrupted_at_step"], rank0.get("checkpointed_at_step")
            if saved == step or not step:
                resume = "run it again with resume=true" + (f" (from its checkpoint at step {saved})" if saved else "")
            else:
                resume = (f"no checkpoint: {spec.algorithm} cannot checkpoint "
                          f"({spec.algorithm_cls.checkpoint_gap(spec.algorithm_settings)})")
            when = f"after step {step}" if step else "before its first step"
            summary.update(status="interrupted", interrupted_at_step=step, reason=f"stopped by SIGTERM {when}; {resume}")
    if 0 in reports and "final" in reports[0]:
        rank0 = reports[0]
        summary.update(steps_completed=rank0["steps_completed"], final=rank0["final"],
                       **rank0["timing"], model_facts=rank0["model"],
                       resumed_from_step=rank0.get("resumed_from_step"))
    ranked = [reports.get(rank, {}) for rank in range(topology.workers)]
    summary["algorithm_facts_per_worker"] = [r.get("algorithm") for r in ranked]
    summary["peak_memory_bytes_per_worker"] = [r.get("peak_memory_bytes") for r in ranked]
    summary["baseline_memory_bytes_per_worker"] = [r.get("baseline_memory_bytes") for r in ranked]
    summary["memory_measure"] = next((r["memory_measure"] for r in ranked if r.get("memory_measure")), None)
    summary["iteration_s_per_worker"] = [r.get("iteration_s_median") for r in ranked]
    summary["compute_s_per_worker"] = [r.get("compute_s_median") for r in ranked]
    summary["wait_s_per_worker"] = [r.get("wait_s_median") for r in ranked]
    summary["bytes_sent_per_worker"] = [r.get("bytes_sent") for r in ranked]
    summary["environment"] = environment_record(REPO)
    median, iqr = summary.get("time_per_iter_median_s"), summary.get("time_per_iter_iqr_s")
    summary["machine_load"] = load_record(started, snapshot(), iqr / median if median and iqr is not None else None,
                                          own_children=not started_externally())
    summary["interference"] = summary["machine_load"].pop("interference")
    summary["digests"] = file_digests(run_dir)  # what this summary vouches for (resume, the report)
    summary.update(started_at=started.at, finished_at=time.time(), wall_time_s=time.time() - started.at)
    return summary
