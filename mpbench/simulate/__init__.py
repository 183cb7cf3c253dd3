"""A calibrated discrete-event simulator of every registered algorithm (issue 16).

    costs.py       per-block f, b, w, bytes and optimizer seconds, profiled on one worker; one
                   profile per sweep, kept in the sweep and never re-timed there
    overhead.py    the trainer's own work per step, timed on the real trainer: the per-step overhead
    link.py        α-β messages and ring all-reduces: a ping-pong over gloo/NCCL, or presets
    engine.py      lanes running tasks in program order, messages with a transfer delay
    plan.py        what a plan is (a configuration turned into every worker's program), the registry;
                   the plans are plugins, in algorithms/simulated/
    simulation.py  a plan plus the trainer's per-step work, run; step, busy/idle, memory
    gantt.py       one steady step per worker, as a picture

`simulated_summary` (records.py) is what `python run.py ... simulate=true` calls instead of
launching workers: it profiles the run's own model on this process (the run's device, dtype and
threads per worker), or reads the sweep's profile, simulates the configuration and the backprop
reference on one worker from that profile, and returns the `simulation` record (every number in
it is simulated; see docs/simulator.md).
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import torch

from mpbench.errors import ConfigError
from mpbench.simulate.costs import PROFILE_FORMAT, Profiler, read_kept, refuse_other_workload
from mpbench.simulate.link import PRESETS, Link, measure_link
from mpbench.simulate.plan import PLANS, Setup
from mpbench.simulate.simulation import Simulated, iterations_for, run_plan

STATE_COPIES = {"adam": 2, "adamw": 2}  # optimizer state per parameter element (SGD: its momentum buffer)


def check_simulable(spec) -> None:
    """ConfigError (one line) if the simulator has no model of `spec`'s algorithm or settings."""
    if spec.algorithm not in PLANS:
        raise ConfigError(f"simulate=true: the simulator has no plan for algorithm {spec.algorithm} "
                          f"(it models: {', '.join(sorted(PLANS))})")
    runtime = getattr(spec.algorithm_settings, "runtime", "distributed")
    if runtime != "distributed":
        raise ConfigError(f"simulate=true: algorithm.runtime={runtime} runs every part in one process, which the "
                          f"simulator does not model; set algorithm.runtime=distributed")
    named = named_profile(spec)
    if named is not None and named.exists():  # before the run starts: a named profile of another workload
        refuse_other_workload(named, read_kept(named).get("workload") or {}, spec_workload(spec))


def link_for(choice: str, backend: str, cache_dir: Path) -> Link:
    """A preset, or α and β measured by ping-pong over `backend` once per machine (cached)."""
    if choice in PRESETS:
        return PRESETS[choice]
    if backend == "nccl" and torch.cuda.device_count() < 2:
        raise ConfigError(f"simulator.link=measured: an NCCL ping-pong needs two GPUs, and this machine has "
                          f"{torch.cuda.device_count()}; use a preset, simulator.link={'|'.join(PRESETS)}")
    path = Path(cache_dir) / "simulator" / f"link-{backend}-{socket.gethostname()}.json"
    try:
        return Link(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    try:
        link = measure_link(backend)
    except Exception as err:  # noqa: BLE001 - any failure to start the two processes is the same answer
        raise ConfigError(f"simulator.link=measured: the {backend} ping-pong failed ({str(err).splitlines()[0][:200]}); "
                          f"use a preset, simulator.link={'|'.join(PRESETS)}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(link.__dict__))
    except OSError:
        pass  # a cache that cannot be written only costs the next run a measurement
    return link


def profiler_for(spec, data, device: torch.device, threads: int, scope: Path) -> Profiler:
    """The run's model (seeded as the workers seed it) and its first global batch, on `device`;
    its profile kept in the file `profile_store` names (`scope`: the sweep's directory, or the run's)."""
    from mpbench.block_compute import prepare_blocks
    from mpbench.host_memory import keep_freed_host_memory
    from mpbench.optim import make_optimizer
    from mpbench.simulate.overhead import trainer_step_s
    from mpbench.trainer import to_device
    from mpbench.worker import DTYPES

    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("simulate=true: the profile needs a CUDA device, and none is available; use device=cpu")
    keep_freed_host_memory()  # as the workers do: the blocks are timed with the run's allocator
    torch.set_num_threads(threads)
    dtype = DTYPES[spec.dtype]
    torch.manual_seed(spec.seed)
    model = spec.build_model(spec.model_settings, data.info).to(device=device, dtype=dtype)
    prepare_blocks(model, device.type, dtype, autocast=spec.autocast, compile=spec.compile)
    inputs, targets = data.train_batch(0, spec.batch_size)
    rows = rows_profiled(spec)  # larger sizes are extrapolated from it (mpbench/simulate/costs.py)
    what = workload(spec, device, threads)
    return Profiler(model, to_device(inputs[:rows], device, dtype), to_device(targets[:rows], device, None),
                    lambda params: make_optimizer(params, spec.optimizer), store=profile_store(spec, what, scope),
                    batch_size=spec.batch_size, retake_disturbed=True, worker_speed=spec.simulator.worker_speed,
                    trainer_step=lambda: trainer_step_s(data, spec, device, dtype), workload=what)


def rows_profiled(spec) -> int:
    return min(spec.batch_size, spec.simulator.profile_rows)


def workload(spec, device: torch.device, threads: int) -> dict:
    """What a profile is a profile of: model, data, rows, number format, optimizer, device, threads,
    torch and the profile's format. Not the machine: a profile named by simulator.profile may be
    shared by runs on several nodes of one kind (its record names the host it was taken on)."""
    return {**spec_workload(spec), "threads": threads,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def spec_workload(spec) -> dict:
    """The part of `workload` the run's settings alone decide (checked before a run starts). Not
    what changes values but not costs: the seed and the learning rate and its schedule, so that
    a sweep over seeds or rates is simulated from one profile."""
    o = spec.optimizer
    optimizer = {"name": o.name, "weight_decay": o.weight_decay > 0, "momentum": o.momentum > 0,
                 "nesterov": o.nesterov, "clipped": o.clip_norm is not None}
    return {"model": [spec.model, repr(spec.model_settings)], "dataset": [spec.dataset, repr(spec.dataset_settings)],
            "batch_size": rows_profiled(spec), "dtype": spec.dtype, "autocast": spec.autocast,
            "compile": spec.compile, "optimizer": optimizer, "torch": torch.__version__, "format": PROFILE_FORMAT}


def named_profile(spec) -> Path | None:
    """The file `simulator.profile` names (relative to the working directory), or None."""
    return Path(spec.simulator.profile).expanduser().resolve() if spec.simulator.profile is not None else None


def profile_store(spec, what: dict, scope: Path) -> Path:
    """The profile's file: `simulator.profile` if set, else one per workload in `scope` (the
    sweep's directory, so that every point of a sweep is simulated from the same profile, or a
    single run's own directory): <scope>/simulator/profile-<model>-<digest of the workload>.json."""
    named = named_profile(spec)
    if named is not None:
        return named
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return Path(scope) / "simulator" / f"profile-{spec.model}-{digest}.json"


def setup_for(algorithm: str, settings, workers: int, spec, profiler: Profiler, link: Link) -> Setup:
    setup = Setup(algorithm=algorithm, workers=workers, batch_size=spec.batch_size,
                  element_bytes=torch.empty((), dtype=next(profiler.model.parameters()).dtype).element_size(),
                  settings=settings, costs=profiler, model=profiler.model, link=link,
                  state_copies=STATE_COPIES.get(spec.optimizer.name, int(spec.optimizer.momentum > 0)),
                  iterations=0)
    return Setup(**{**setup.__dict__, "iterations": iterations_for(setup)})


def simulate_spec(spec, profiler: Profiler, link: Link) -> tuple[Simulated, Simulated]:
    """The run's configuration and the backprop reference on one worker, from one profile."""
    ran = run_plan(setup_for(spec.algorithm, spec.algorithm_settings, spec.gpus, spec, profiler, link))
    reference = run_plan(setup_for("backprop", None, 1, spec, profiler, link))
    return ran, reference


def simulation_record(ran: Simulated, reference: Simulated, spec, data_info, profiler: Profiler, link: Link,
                      device: torch.device, threads: int) -> dict:
    """The `simulation` section of a summary: every number in it is simulated."""
    record = {
        "simulated": True,
        "step_s": ran.step_s, "samples_per_s": spec.batch_size / ran.step_s,
        "reference_step_s": reference.step_s, "speedup": reference.step_s / ran.step_s,
        "busy_s_per_worker": ran.busy_s, "overhead_s_per_worker": ran.overhead_s, "comm_s_per_worker": ran.comm_s,
        "idle_s_per_worker": ran.idle_s, "idle_fraction_per_worker": ran.idle_fraction,
        "peak_memory_bytes_per_worker": ran.peak_memory_bytes,
        "link": {"latency_s": link.latency_s, "bytes_per_s": link.bytes_per_s,
                 "reduce_bytes_per_s": link.reduce_bytes_per_s, "source": link.source},
        "profile": profiler.record(),
        "profiled_on": {"device": str(device), "threads": threads, "dtype": spec.dtype,
                        "rows_timed": profiler.rows_timed, "extrapolated_above_rows": profiler.rows_profiled,
                        "interference": profiler.interference},
        "compute_scale": profiler.compute_scale(), "step_overhead_s": profiler.step_overhead_s(),
        "step_overhead_note": overhead_note(profiler),
        "worker_speed": profiler.worker_speed,
    }
    if data_info.task == "lm":
        record["tokens_per_s"] = spec.batch_size * data_info.input_shape[0] / ran.step_s
    return record


def overhead_note(profiler: Profiler) -> str:
    """How the per-step overhead of a record was measured, in a sentence or two."""
    from mpbench.simulate.overhead import HOW

    scale = profiler.compute_scale()
    missed = (f"a whole backprop step takes {scale:.2f} x the sum of its isolated parts: that is compute, and "
              f"scales every block's time (compute_scale), not a cost on every worker")
    if not profiler.step_overhead_measured:
        return f"not measured: no per-step overhead is charged; {missed}"
    disturbed = profiler.record()["entries"].get("trainer step", {}).get("disturbed")
    return (f"{profiler.step_overhead_s() * 1e3:.2f} ms, {HOW}"
            + (f" (taken while the machine was loaded: {disturbed})" if disturbed else "")
            + f"; plus each worker's per-step finiteness check of the weights it holds, profiled per block; {missed}")
