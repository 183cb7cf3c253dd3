"""A reference for every speed-up, timed beside the runs it serves.

A run's quality is compared with `backprop` on one worker of the same computation (analysis.derive:
the same model, data, batch, dtype, threads, device, optimizer and schedule, steps, seed and
evaluation set), and its speed with that reference timed right before and right after it:

1. **timed beside every point**: before each measured point of a multirun (a Hydra callback's
   `on_job_start`), the point's own overrides run as `algorithm=backprop gpus=1` for
   `report.retime_steps` steps into `references/timing_<n>_before_<point>`; after the last point,
   that timing runs once more into `references/timing_<n>_end`. A point's speed-up is the mean
   of the reference timings just before and just after it over its own time per iteration, so
   the machine's drift over a sweep (15-20% within minutes on a shared machine) stays out of
   it, and the two timings' difference widens its error bar (analysis/derive.py). Timings do not
   depend on the seed or learning rate, so consecutive points of a sweep over them bracket each
   other.
2. **added**: when the sweep ends, a computation whose reference the grid did not hold is run
   once more as `algorithm=backprop gpus=1`, with the sweep's own overrides (without its
   algorithm and worker keys), into `references/added_<n>_backprop_g1` (a multirun with
   resume=true: a sweep run again reuses them): its final metric is the target and the
   quality every method is compared with. A reference is never taken from another sweep: a run
   at another learning rate or seed is another computation.

Reference runs are ordinary run records; the report marks them (`reference_role`). Simulated runs
(simulate=true) need none: each carries its speed-up over backprop on one worker simulated from
the same profile, so a sweep of simulated runs only adds nothing, and a simulated backprop x 1 is
no reference for measured runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from analysis.derive import references, simulated
from analysis.load import REFERENCES, TIMING_PREFIX, load_runs, read_summary

REPO = Path(__file__).resolve().parents[1]
# Overrides of the sweep that do not carry over to its reference run (which is measured: not simulate).
NOT_CARRIED = ("algorithm", "gpus", "fault", "hydra.sweep.dir", "hydra.sweep.subdir", "resume", "simulate")
# ... nor to a timing run, which also runs its own number of steps and evaluates once, on one batch.
NOT_CARRIED_TO_TIMING = (*NOT_CARRIED, "steps", "eval_every", "eval_batches", "checkpoint_every", "save_weights")


def missing_computations(runs: pd.DataFrame) -> set[str]:
    """Computations with a finished measured run but no ok measured `backprop` x 1 run among `runs`."""
    finished = runs[runs["status"].isin(("ok", "diverged")) & runs["computation"].notna() & ~simulated(runs)
                    & (runs["reference_role"] != "timing")]
    return set(finished["computation"]) - set(references(runs)["computation"])


def reference_overrides(task_overrides: list[str], dropped: tuple[str, ...] = NOT_CARRIED) -> list[str]:
    """The sweep's overrides without the keys that choose its algorithm and workers (and `dropped`)."""
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")
    return [o for o in task_overrides if not any(key(o) == k or key(o).startswith(k + ".") for k in dropped)]


def run_backprop(sweep_dir: Path, overrides: list[str], subdir: str) -> int:
    """`backprop` on one worker with `overrides`, as a multirun into references/<subdir>; its exit
    status. The child is stopped with this process (SIGTERM, Ctrl-C)."""
    # simulate=false also over a preset's own grid (experiment=scaling sweeps simulate: true,false).
    command = [sys.executable, str(REPO / "run.py"), "-m", *overrides, "algorithm=backprop", "gpus=1", "simulate=false",
               "resume=true", f"hydra.sweep.dir={sweep_dir / REFERENCES}", f"hydra.sweep.subdir={subdir}",
               "~hydra.callbacks.sweep_summary"]
    child = subprocess.Popen(command)
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        child.wait()
        raise


def ensure_references(sweep_dir: Path, task_overrides: list[str]) -> list[str]:
    """Give every computation of the sweep its reference (added if missing); lines for the console."""
    missing = missing_computations(load_runs(sweep_dir))
    if not missing:
        return []
    print(f"reference: the sweep has no backprop run on 1 worker for {len(missing)} of its computations; "
          f"running it under {sweep_dir / REFERENCES}", flush=True)
    status = run_backprop(sweep_dir, reference_overrides(task_overrides), "added_${hydra.job.num}_backprop_g1")
    return [f"reference: added under {sweep_dir / REFERENCES}" + ("" if status == 0 else f" (exit status {status})")]


def timing_command(overrides: list[str], steps: int, into: Path) -> list[str]:
    """run.py timing backprop on one worker for `steps` steps with `overrides`, as one run into `into`."""
    return [sys.executable, str(REPO / "run.py"), *reference_overrides(overrides, NOT_CARRIED_TO_TIMING),
            "algorithm=backprop", "gpus=1", "simulate=false", f"steps={steps}", f"eval_every={steps}", "eval_batches=1",
            "resume=true", f"hydra.run.dir={into}", "~hydra.callbacks.sweep_summary", "~hydra.callbacks.sweep_guard"]


def _run_quietly(command: list[str]) -> int:
    """A timing run: its console output is one line of ours; stopped with this process."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = child.communicate()
    except BaseException:
        child.terminate()
        child.wait()
        raise
    if child.returncode != 0:
        print(f"reference: timing run failed (exit status {child.returncode}): {output.strip().splitlines()[-1:]}",
              flush=True)
    return child.returncode


def time_before_point(sweep_dir: Path, point: Path, number: int, overrides: list[str], steps: int) -> None:
    """Time the point's reference (backprop x 1, `steps` steps) right before the point runs,
    into references/timing_<number>_before_<point>; nothing if that timing, or the point, is
    already recorded ok (a resumed sweep)."""
    into = sweep_dir / REFERENCES / f"{TIMING_PREFIX}{number:03d}_before_{point.name}"
    if _finished_ok(into) or _finished_ok(point):
        return
    print(f"reference: timing backprop on 1 worker for {steps} steps before {point.name}", flush=True)
    _run_quietly(timing_command(overrides, steps, into))


def time_after_last_point(sweep_dir: Path) -> list[str]:
    """Time each timed reference once more after the sweep's last point (its latest timing's
    config again, into references/timing_<n>_end), unless a sweep resumed has one already."""
    runs = load_runs(sweep_dir)
    timing = runs[(runs["reference_role"] == "timing") & runs["timing_key"].notna()]
    lines, order = [], int(timing["timing_order"].max()) + 1 if not timing.empty else 0
    for _, latest in timing.sort_values("timing_order").groupby("timing_key").tail(1).iterrows():
        if latest["timed_point"] is None or pd.isna(latest["timed_point"]):
            continue  # its end timing is already the latest
        into = sweep_dir / REFERENCES / f"{TIMING_PREFIX}{order:03d}_end"
        order += 1
        command = [sys.executable, str(REPO / "run.py"), "--config-path", str(Path(latest["path"]).resolve()),
                   "--config-name", "config", "resume=true", f"hydra.run.dir={into}", "hydra.output_subdir=null",
                   "hydra/job_logging=stdout"]
        status = _run_quietly(command)
        lines.append(f"reference: timed again after the last point into {into}"
                     + ("" if status == 0 else f" (exit status {status})"))
    return lines


def _finished_ok(run_dir: Path) -> bool:
    summary, _ = read_summary(run_dir)
    return summary is not None and summary.get("status") == "ok"
