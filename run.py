"""mpbench: train one configuration, or a grid of them, and record the results.

    python run.py                                          one run from experiments/config.yaml
    python run.py algorithm=data_parallel gpus=2 steps=50  override any key
    python run.py -m experiment=default_sweep              the main job: a small grid
    python run.py -m algorithm=backprop,data_parallel gpus=1,2 threads_per_worker=1
    torchrun --nproc-per-node=2 run.py algorithm=data_parallel gpus=2

Each run writes config.yaml, metrics.jsonl and summary.json into its own directory under
results/ and prints where. Bad input ends with one line naming the key or file (exit 2); a run
that fails is recorded as failed (exit 1 for a single run); a sweep goes on past failed runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import NoReturn

# SIGTERM or Ctrl-C during the imports below (seconds) stays pending until main() handles it: exit
# 143 or 130 with the resume hint. (Not in a spawned worker, which imports this file as __mp_main__
# and installs its own handler.)
if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})

# Hydra would print its own multi-line errors and exit; we let them through to print one line.
# Forced, not defaulted: the user's HYDRA_FULL_ERROR=0 must not change the format or exit code.
os.environ["HYDRA_FULL_ERROR"] = "1"
# A launcher's job process (submitit: a local process, or a SLURM job, which inherits this environment)
# unpickles the run's function wherever it starts: it must find this repository's packages from any cwd.
_REPO = str(Path(__file__).resolve().parent)
if _REPO not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH")) if p)

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

# The composition root: importing the plugin packages registers every algorithm and model.
import algorithms  # noqa: E402, F401
import models  # noqa: E402, F401
from mpbench.blocks import BlockModel  # noqa: E402
from mpbench.checkpoints import discard_checkpoints, verify_checkpoint  # noqa: E402
from mpbench.config import RunSpec, check_group_choices, run_spec_from  # noqa: E402
from mpbench.data import check_batch_fits, load_dataset  # noqa: E402
from mpbench.errors import ConfigError  # noqa: E402
from mpbench.external_workers import (adopt_submitit_tasks, check_external_world, external_rank,  # noqa: E402
                                     started_externally, workers_on_this_node)
from mpbench.launch import launch  # noqa: E402
from mpbench.preemption import (Preempted, in_submitit_job, raise_if_preempted, raise_on_sigterm,  # noqa: E402
                                sigterm_arrived)
from mpbench.records import atomic_write_json, atomic_write_text, result_line  # noqa: E402
from mpbench.run_dirs import Claim, claim_run_dir, register_resolvers  # noqa: E402
from mpbench.simulate import check_simulable  # noqa: E402
from mpbench.simulate.records import simulated_summary, simulation_of, wants_simulation_alongside  # noqa: E402
from mpbench.topology import resolve_topology  # noqa: E402
from mpbench.user_errors import USER_ERRORS, check_overrides, in_results_dir, one_line  # noqa: E402

CONFIG_DIR = str(Path(__file__).resolve().parent / "experiments")
register_resolvers()  # ${unique_dir:...} in experiments/config.yaml


def meta_model(spec: RunSpec, data_info) -> BlockModel:
    """The run's model on the meta device (its blocks, ties and heads, no memory), for the checks
    made before any worker starts; a model that cannot be built for this data is bad input, and
    so is a batch larger than the data."""
    check_batch_fits(data_info, spec.batch_size)
    try:
        with torch.device("meta"):
            return spec.build_model(spec.model_settings, data_info)
    except ValueError as err:
        raise ConfigError(f"model {spec.model}: {err}" if not str(err).startswith("model") else str(err)) from None


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def train(cfg: DictConfig) -> str:
    # A launcher that runs each point in a process of its own (submitit) sends this function there by
    # value: import the plugin packages here too, or that process knows no algorithm and no model.
    import algorithms  # noqa: F401
    import models  # noqa: F401

    raise_if_preempted()  # the SIGTERM of an earlier point, whose exception was lost: stop the sweep here
    adopt_submitit_tasks()  # a job of several tasks: this task is one worker, as under torchrun
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    leader = not started_externally() or external_rank() == 0
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return _train(cfg, hydra_cfg, run_dir, multirun, leader)
    except SystemExit as stop:
        if stop.code == 2 and leader and not multirun and _made_by_this_command(hydra_cfg, "run"):
            _remove_if_empty(run_dir)  # refused input: no empty results/runs/<time>_... is left behind
        raise
    except (Preempted, KeyboardInterrupt) as stop:
        # The resume hint names the directory this command made, which "the same command" would not
        # find again (a new default directory each time): main() prints it.
        kind, made = ("sweep", run_dir.parent) if multirun else ("run", run_dir)
        if leader and _made_by_this_command(hydra_cfg, kind):
            stop.resume_dir = f"hydra.{kind}.dir={made}"
        raise


def _made_by_this_command(hydra_cfg, kind: str) -> bool:
    """Whether the run (or sweep) directory is the default one, which this command created
    (`unique_dir`: a new name each time), rather than one the command named with hydra.<kind>.dir."""
    return not any(o.startswith(f"hydra.{kind}.dir=") for o in hydra_cfg.overrides.hydra)


def _remove_if_empty(directory: Path) -> None:
    """Remove `directory` if it holds nothing (rmdir: a directory with any file, a run's records
    above all, stays)."""
    try:
        directory.rmdir()
    except OSError:
        pass


def _train(cfg: DictConfig, hydra_cfg, run_dir: Path, multirun: bool, leader: bool) -> str:
    try:
        check_group_choices(hydra_cfg)  # algorithm=[a,b] would merge two configs into one run
        gpus = cfg.get("gpus")
        notice = check_external_world(gpus if isinstance(gpus, int) else None)
        config = OmegaConf.to_container(cfg, resolve=True)
        # Only rank 0 owns the run directory (mpbench/run_dirs.py: lock it, never replace a run's records).
        claim = claim_run_dir(run_dir, config, config.get("resume") is True, multirun) if leader else None
    except USER_ERRORS as err:
        return _refused(cfg, err, multirun, leader, run_dir=None)  # nothing of ours there: write nothing
    if leader and notice:
        print(f"notice: {notice}", flush=True)
    try:
        return _run(cfg, config, claim.run_dir if claim else run_dir, claim, multirun, leader)
    except OSError as err:  # here, not in main(): Hydra would first print a line of its own
        results_unwritable(err)
    finally:
        if claim is not None:
            claim.lock.release()


def _run(cfg: DictConfig, config: dict, run_dir: Path, claim: Claim | None, multirun: bool, leader: bool) -> str:
    if claim is not None and claim.note:
        print(f"notice: {claim.note}", flush=True)
    try:
        spec = run_spec_from(cfg)
        # A simulated run profiles one worker of the target device (mpbench/simulate/).
        topology = resolve_topology(1 if spec.simulate else spec.gpus, spec.device, spec.threads_per_worker,
                                    workers_on_this_node(spec.gpus))
        # Checksums are verified (and decoded images cached) once, before any worker starts.
        data = load_dataset(spec.dataset, spec.dataset_settings, spec.data_path, spec.seed,
                            cache_dir=spec.cache_path)
        spec.algorithm_cls.check(spec, meta_model(spec, data.info))
        if spec.simulate:
            check_simulable(spec)
        gap = spec.algorithm_cls.checkpoint_gap(spec.algorithm_settings)
        if spec.checkpoint_every and gap:
            raise ConfigError(f"checkpoint_every={spec.checkpoint_every}: {spec.algorithm} cannot checkpoint "
                              f"({gap}); set checkpoint_every=0")
        if claim is not None and claim.action == "done":
            print(f"resume: {run_dir} already finished ok with this config; not run again", flush=True)
            return "ok"
        if claim is not None and claim.action == "continue":
            step = verify_checkpoint(run_dir, spec.gpus)
            print(f"resume: {run_dir} from " + (f"its checkpoint at step {step}" if step else "the start"), flush=True)
        elif claim is not None:  # a new run here: no other run's checkpoint may be resumed into it
            discard_checkpoints(run_dir)
    except USER_ERRORS as err:
        return _refused(cfg, err, multirun, leader, run_dir if claim is not None else None)

    try:
        if leader:
            # A run that starts (again) here: no earlier record may stand for it until it ends.
            (run_dir / "summary.json").unlink(missing_ok=True)
            shutil.rmtree(run_dir / "workers", ignore_errors=True)
            atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            if topology.notice:
                print(f"notice: {topology.notice}", flush=True)
            if topology.oversubscribed and not spec.simulate:
                print(f"notice: {topology.workers} workers x {topology.threads_per_worker} threads > "
                      f"{topology.cores} cores: timings are oversubscribed", flush=True)
        summary = simulated_summary(spec, topology, data, run_dir) if spec.simulate else \
            launch(spec, topology, run_dir, config)
        if not leader:
            return summary["status"]  # one task of several: rank 0 records the run
        if leader and spec.simulate:
            atomic_write_json(run_dir / "summary.json", summary)
        elif leader and summary["status"] == "ok" and wants_simulation_alongside(spec, topology):
            summary["simulation"] = _simulation_alongside(spec, topology, data, run_dir)
            atomic_write_json(run_dir / "summary.json", summary)
    except (Preempted, KeyboardInterrupt) as stop:
        if leader and not (run_dir / "summary.json").exists() and (run_dir / "config.yaml").exists():
            what = "Ctrl-C (SIGINT)" if isinstance(stop, KeyboardInterrupt) else "SIGTERM"
            atomic_write_json(run_dir / "summary.json", _brief(cfg, "interrupted", f"stopped by {what} before the "
                                                                  "workers started; run it again with resume=true"))
        raise
    print(result_line(run_dir, summary), flush=True)
    if summary["status"] == "interrupted":
        if in_submitit_job():
            return "interrupted"  # one point's job: recorded; the sweep's other jobs and its report go on
        raise Preempted("SIGTERM")  # the whole job stops, sweep included; main(): the resume hint, exit 143
    if not multirun and summary["status"] == "failed":
        raise SystemExit(1)
    return summary["status"]


def _simulation_alongside(spec: RunSpec, topology, data, run_dir: Path) -> dict:
    """A measured run's simulated twin (mpbench/simulate/records.py), or why there is none."""
    try:
        check_simulable(spec)
        return simulation_of(spec, topology, data, run_dir)
    except ConfigError as err:
        print(f"notice: no simulated speed-up beside the measured one: {one_line(err)}", flush=True)
        return {"simulated": True, "unavailable": one_line(err)}


def _brief(cfg: DictConfig, status: str, reason: str) -> dict:
    """The summary of a run that never reached its workers."""
    return {"status": status, "reason": reason, "algorithm": cfg.algorithm.get("name"),
            "model": cfg.model.get("name"), "dataset": cfg.dataset.get("name"), "gpus": cfg.get("gpus")}


def _refused(cfg: DictConfig, err: BaseException, multirun: bool, leader: bool, run_dir: Path | None) -> str:
    """Bad input: a single run ends here (exit 2); in a grid, a point the algorithm cannot run
    (backprop at gpus=2) is recorded as skipped in its own directory and the rest go on."""
    raise_if_preempted()  # an error that SIGTERM's interruption caused is no verdict on the input
    if not multirun:
        # Exit here: a task that raises makes Hydra print an extra line of its own.
        if leader:
            print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    if leader and run_dir is not None:
        atomic_write_json(run_dir / "summary.json", _brief(cfg, "skipped", one_line(err)))
    print(f"skipped {(run_dir or Path(HydraConfig.get().runtime.output_dir)).name}: {one_line(err)}", flush=True)
    return "skipped"


def main() -> None:
    if started_externally() and external_rank() != 0:
        # Only rank 0 owns a run directory; the others learn its path from rank 0.
        sys.argv += ["hydra.output_subdir=null", "hydra.run.dir=.",
                     "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    try:
        raise_on_sigterm()  # SIGTERM outside a run's training: stop here, exit 143 (mpbench/preemption.py)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        sys.argv[1:] = check_overrides(sys.argv[1:])  # non-ASCII: quote a path, refuse a look-alike
        train()
        raise_if_preempted()  # a SIGTERM whose exception was lost on the way still ends the job with 143
    except Preempted as stop:
        _exit_interrupted(stop)
    except KeyboardInterrupt as stop:  # Ctrl-C: the run in flight was recorded interrupted (mpbench/launch.py)
        _exit_interrupted(stop)
    except Exception as err:
        if sigterm_arrived():
            # SIGTERM raised Preempted inside a library whose clean-up then raised an error of its
            # own in its place (seen in CI: Hydra composing a sweep's next point, exit 2).
            _exit_interrupted(Preempted("SIGTERM"))
        if isinstance(err, USER_ERRORS):
            if not started_externally() or external_rank() == 0:
                print(f"error: {one_line(err, sys.argv[1:])}", file=sys.stderr)
            raise SystemExit(2) from None
        if isinstance(err, OSError):
            results_unwritable(err)
        raise


def _exit_interrupted(stop: BaseException) -> NoReturn:
    """SIGTERM (Preempted) or Ctrl-C (KeyboardInterrupt): one line saying how to continue, exit
    128 + the signal's number."""
    what, signum = ("Ctrl-C (SIGINT)", signal.SIGINT) if isinstance(stop, KeyboardInterrupt) else \
        ("SIGTERM", signal.SIGTERM)
    made = getattr(stop, "resume_dir", None)
    where = f" (adding {made}, the directory it made)" if made else ""
    print(f"interrupted: {what}; run the same command with resume=true to continue{where}", file=sys.stderr)
    raise SystemExit(128 + signum) from None


def results_unwritable(err: OSError) -> NoReturn:
    """The results directory cannot be made or written (a file in the way, a full disk): one line."""
    if not in_results_dir(err.filename, sys.argv[1:]):
        raise err  # data_dir and cache_dir problems are DatasetErrors; anything else is a bug to see
    print(f"error: cannot write the results to {err.filename}: {err.strerror}; choose a writable "
          f"hydra.run.dir (or hydra.sweep.dir for -m)", file=sys.stderr)
    raise SystemExit(2) from None


if __name__ == "__main__":
    main()
