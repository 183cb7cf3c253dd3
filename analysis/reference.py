"""A reference for every speed-up, without a hand-added run.

A speed-up is measured against `backprop` on one worker of the same workload (analysis.derive).
When a sweep ends without that run for a workload it ran, the sweep-end callback adds one under
`<sweep dir>/references/`, so that the sweep's directory holds everything its report uses:

1. **reused**: an ok reference run of the same workload, steps and seed found in the results tree
   (the parent of `results/sweeps/`) is copied there as `reused_<its name>` (records only, no
   checkpoints or weights), with `reference.json` saying where it came from;
2. **added**: otherwise the sweep's own overrides, without its algorithm and worker keys, run
   once more as `algorithm=backprop gpus=1` into `references/added_<n>_backprop_g1` (a
   multirun with resume=true: a sweep run again reuses them).

Reference runs are ordinary run records; the report marks them (`reference_role`). Simulated runs
(simulate=true) need none: each carries its speed-up over backprop on one worker simulated from
the same profile, so a sweep of simulated runs only adds nothing, and a simulated backprop x 1 is
no reference for measured runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from analysis.derive import REFERENCE, measured_ok, simulated
from analysis.load import REFERENCES, load_runs

REPO = Path(__file__).resolve().parents[1]
# Overrides of the sweep that do not carry over to its reference run (which is measured: not simulate).
NOT_CARRIED = ("algorithm", "gpus", "fault", "hydra.sweep.dir", "hydra.sweep.subdir", "resume", "simulate")


def missing_workloads(runs: pd.DataFrame) -> set[str]:
    """Workloads with a finished measured run but no ok measured `backprop` x 1 run among `runs`."""
    algorithm, workers = REFERENCE
    finished = runs[runs["status"].isin(("ok", "diverged")) & runs["workload"].notna() & ~simulated(runs)]
    ok = measured_ok(runs)
    present = ok[(ok["algorithm"] == algorithm) & (ok["gpus"] == workers)]
    return set(finished["workload"]) - set(present["workload"])


def _identity(run: pd.Series) -> tuple:
    return run["workload"], run["steps"], run["seed"]


def reuse_from_tree(sweep_dir: Path, runs: pd.DataFrame, missing: set[str]) -> list[str]:
    """Copy ok references of the missing workloads from the results tree; returns what was reused."""
    root = sweep_dir.parent.parent if sweep_dir.parent.name == "sweeps" else None
    if root is None or not root.is_dir():
        return []
    tree = measured_ok(load_runs(root))
    algorithm, workers = REFERENCE
    candidates = tree[(tree["algorithm"] == algorithm) & (tree["gpus"] == workers)
                      & ~tree["path"].map(lambda p: Path(p).is_relative_to(sweep_dir))]
    wanted = {_identity(run) for _, run in runs[runs["workload"].isin(missing)].iterrows()}
    reused = []
    for _, candidate in candidates.iterrows():
        if _identity(candidate) not in wanted:
            continue
        wanted.discard(_identity(candidate))
        source = Path(candidate["path"])
        target = sweep_dir / REFERENCES / f"reused_{source.name}"
        if not target.exists():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "weights", "wandb", ".*"))
            (target / "reference.json").write_text(json.dumps({"reused_from": str(source)}) + "\n")
        reused.append(str(source))
    return reused


def reference_overrides(task_overrides: list[str]) -> list[str]:
    """The sweep's overrides without the keys that choose its algorithm and workers."""
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")
    return [o for o in task_overrides if not any(key(o) == k or key(o).startswith(k + ".") for k in NOT_CARRIED)]


def run_references(sweep_dir: Path, task_overrides: list[str]) -> int:
    """Run `backprop` on one worker for the sweep's workloads, as a multirun under references/.
    Returns its exit status. The child is stopped with this process (SIGTERM, Ctrl-C)."""
    command = [sys.executable, str(REPO / "run.py"), "-m", *reference_overrides(task_overrides),
               "algorithm=backprop", "gpus=1", "resume=true",
               f"hydra.sweep.dir={sweep_dir / REFERENCES}", "hydra.sweep.subdir=added_${hydra.job.num}_backprop_g1",
               "~hydra.callbacks.sweep_summary"]
    child = subprocess.Popen(command)
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        child.wait()
        raise


def ensure_references(sweep_dir: Path, task_overrides: list[str]) -> list[str]:
    """Give every workload of the sweep its reference (reused, else added); lines for the console."""
    runs = load_runs(sweep_dir)
    missing = missing_workloads(runs)
    if not missing:
        return []
    lines = [f"reference: reused {source}" for source in reuse_from_tree(sweep_dir, runs, missing)]
    missing = missing_workloads(load_runs(sweep_dir))
    if missing:
        print(f"reference: the sweep has no backprop run on 1 worker for {len(missing)} workload(s); "
              f"running it under {sweep_dir / REFERENCES}", flush=True)
        status = run_references(sweep_dir, task_overrides)
        lines.append(f"reference: added under {sweep_dir / REFERENCES}" + ("" if status == 0 else
                                                                          f" (exit status {status})"))
    return lines
