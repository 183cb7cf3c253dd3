"""A reference for every speed-up, timed beside the runs it serves.

A speed-up is measured against `backprop` on one worker of the same computation (analysis.derive:
the same model, data, batch, dtype, threads, device, optimizer and schedule, steps, seed and
evaluation set). When a multirun ends, the sweep-end callback makes sure its directory holds
that reference for every computation it ran, timed within the sweep:

1. **added**: a computation whose reference the grid did not hold is run once more as
   `algorithm=backprop gpus=1`, with the sweep's own overrides (without its algorithm and worker
   keys), into `references/added_<n>_backprop_g1` (a multirun with resume=true: a sweep run
   again reuses them). A reference is never taken from another sweep: its time was measured
   under another load, and a run at another learning rate or seed is another computation.
2. **timed again**: every reference is then timed once more, for `report.retime_steps` steps,
   into `references/timing_<n>_backprop_g1`, at the sweep's end. Its time per iteration is the
   mean of its timings, and their range (the machine's drift over the sweep) widens every
   speed-up's error bar over it (analysis/derive.py).

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

from analysis.derive import measured_ok, references, simulated
from analysis.load import REFERENCES, TIMING_PREFIX, load_runs

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


def ensure_references(sweep_dir: Path, task_overrides: list[str], retime_steps: int) -> list[str]:
    """Give every computation of the sweep its reference (added if missing), then time every
    reference again (`retime_steps` > 0); lines for the console."""
    lines = []
    missing = missing_computations(load_runs(sweep_dir))
    if missing:
        print(f"reference: the sweep has no backprop run on 1 worker for {len(missing)} of its computations; "
              f"running it under {sweep_dir / REFERENCES}", flush=True)
        status = run_backprop(sweep_dir, reference_overrides(task_overrides), "added_${hydra.job.num}_backprop_g1")
        lines.append(f"reference: added under {sweep_dir / REFERENCES}" + ("" if status == 0 else
                                                                          f" (exit status {status})"))
    runs = load_runs(sweep_dir)
    if retime_steps > 0 and untimed_references(runs):
        print(f"reference: timing backprop on 1 worker again for {retime_steps} steps, at the sweep's end", flush=True)
        status = run_backprop(sweep_dir, [*reference_overrides(task_overrides, NOT_CARRIED_TO_TIMING),
                                          f"steps={retime_steps}", f"eval_every={retime_steps}", "eval_batches=1"],
                              TIMING_PREFIX + "${hydra.job.num}_backprop_g1")
        lines.append(f"reference: timed again under {sweep_dir / REFERENCES}" + ("" if status == 0 else
                                                                                f" (exit status {status})"))
    return lines


def untimed_references(runs: pd.DataFrame) -> set[str]:
    """The references (their timed computation) that serve another run of the sweep and have not
    been timed again yet (a sweep resumed after its timing runs has them)."""
    candidates = references(runs)
    ok = measured_ok(runs)
    served = ok[~ok.index.isin(candidates.index) & (ok["reference_role"] != "timing")]
    timed = set(ok.loc[ok["reference_role"] == "timing", "timed_computation"])
    needed = set(candidates.loc[candidates["computation"].isin(served["computation"]), "timed_computation"])
    return needed - timed
