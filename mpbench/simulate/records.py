"""The simulator in a run's records: a `simulate=true` run's summary, or a measured run's extra section.

A simulated run writes config.yaml, summary.json and gantt.png, no metrics (nothing trained). Its
summary has the usual identity keys and status, `simulated: true`, and every simulated number
under `simulation`: none under the measured keys (`time_per_iter_median_s`, `final`, ...), so
no table or plot can take one for the other. A measured run that is oversubscribed (or every
measured run, with simulator.alongside=always) gets the same `simulation` section beside its
measured numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mpbench.records import environment_record, file_digests
from mpbench.simulate import check_simulable, link_for, profiler_for, simulate_spec, simulation_record

REPO = Path(__file__).resolve().parents[2]


def simulation_of(spec, topology, data, run_dir: Path) -> dict:
    """Profile, simulate the run and its reference, draw one step; the `simulation` section."""
    device = torch.device("cuda", 0) if topology.device_type == "cuda" else torch.device("cpu")
    # One profile per sweep: every point of a multirun reads the one the first point took (docs/simulator.md).
    profiler = profiler_for(spec, data, device, topology.threads_per_worker, spec.sweep_path or run_dir)
    link = link_for(spec.simulator.link, topology.backend, spec.cache_path)
    ran, reference = simulate_spec(spec, profiler, link)
    from mpbench.simulate.gantt import draw_gantt  # here: matplotlib costs every process half a second to import
    record = simulation_record(ran, reference, spec, data.info, profiler, link, device, topology.threads_per_worker)
    draw_gantt(ran, f"{spec.algorithm}, {spec.gpus} workers, {spec.model}", run_dir / "gantt.png")
    record["gantt"] = "gantt.png"
    return record


def simulated_summary(spec, topology, data, run_dir: Path) -> dict:
    """The whole summary of a `simulate=true` run."""
    started = time.time()
    check_simulable(spec)
    summary = {"status": "ok", "reason": None, "simulated": True,
               "algorithm": spec.algorithm, "model": spec.model, "dataset": spec.dataset,
               "gpus": spec.gpus, "steps": spec.steps, "batch_size": spec.batch_size, "seed": spec.seed,
               "dtype": spec.dtype, "autocast": spec.autocast, "compile": spec.compile, "launched_by": "simulator",
               **{k: v for k, v in topology.as_record().items() if k != "workers"},
               "simulation": simulation_of(spec, topology, data, run_dir),
               "environment": environment_record(REPO)}
    summary["interference"] = summary["simulation"]["profiled_on"]["interference"]  # as a measured run's is flagged
    summary["digests"] = file_digests(run_dir)
    summary.update(started_at=started, finished_at=time.time(), wall_time_s=time.time() - started)
    return summary


def wants_simulation_alongside(spec, topology) -> bool:
    """Whether a measured run gets a simulated section too (simulator.alongside)."""
    mode = spec.simulator.alongside
    return mode == "always" or (mode == "oversubscribed" and topology.oversubscribed)
