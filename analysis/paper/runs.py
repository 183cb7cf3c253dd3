"""The training runs a table needs: ordinary run.py multiruns, resumed, in the table's directory.

Each point of a table (e.g. "LC (3)") is one multirun of the table's preset
(experiments/experiment/paper/<table>.yaml) with the point's and the scale's overrides, over
the scale's seeds, into <results>/paper/<table>/runs-<scale>/<point>_s<seed>. `resume=true`
makes a second invocation run nothing that already finished ok; a directory that holds a run of
another config is refused by run.py (mpbench/run_dirs.py) and reported as one error line.
"""

from __future__ import annotations

import re
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from analysis.load import load_runs, read_summary
from mpbench.errors import ConfigError
from mpbench.records import records_problem
from mpbench.run_dirs import differing_keys, holds_records, recorded_config, same_run

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Point:
    """One row (or cell) of a table: a label and the run.py overrides that make it. `run` names
    its run directories (default: from the label), so that tables sharing a runs directory share
    a run: LC (3) is also Table 2's [1,1,1] and Table 3's 1/1."""

    label: str
    overrides: tuple[str, ...]
    run: str | None = None

    @property
    def slug(self) -> str:
        return self.run or re.sub(r"[^a-z0-9]+", "_", self.label.lower()).strip("_")

    def as_row(self, label: str) -> Point:
        """The same runs under another row label."""
        return Point(label, self.overrides, run=self.slug)


def command(preset: str, point: Point, scale_overrides: list[str], seeds: list[int], runs_dir: Path) -> list[str]:
    return [sys.executable, str(REPO / "run.py"), "-m", f"experiment=paper/{preset}", *scale_overrides,
            *point.overrides, f"seed={','.join(map(str, seeds))}", "resume=true", "report.add_reference=false",
            f"hydra.sweep.dir={runs_dir}", f"hydra.sweep.subdir={point.slug}_s${{seed}}", "~hydra.callbacks.sweep_summary"]


def timed(label: str, algorithm: str, workers: int, steps: int, simulate: bool, extra: tuple[str, ...] = (),
          run: str | None = None) -> Point:
    """A run for its time per iteration on `workers` (one thread each, so that a worker is a core),
    measured or simulated (simulate=true); `label` gets ", measured" or ", simulated". `extra`
    overrides and `run` (its directory's name, default from algorithm and workers) set it apart
    from another configuration of the same algorithm on as many workers."""
    kind = "simulated" if simulate else "measured"
    return Point(f"{label}, {kind}", (f"algorithm={algorithm}", f"gpus={workers}", "threads_per_worker=1",
                                      f"simulate={str(simulate).lower()}", f"steps={steps}", f"eval_every={steps}",
                                      "eval_batches=1", *extra), run=f"{run or f'{algorithm}_g{workers}'}_{kind}")


def point_config(preset: str, point: Point, scale_overrides: list[str], seed: int) -> dict:
    """The resolved config run.py will record for one point and seed (Hydra's compose API)."""
    with initialize_config_dir(config_dir=str(REPO / "experiments"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment=paper/{preset}", *scale_overrides, *point.overrides,
                                           f"seed={seed}", "resume=true", "report.add_reference=false"])
    return OmegaConf.to_container(cfg, resolve=True)


def check_runs_dir(preset: str, points: list[Point], scale_overrides: list[str], seeds: list[int],
                   runs_dir: Path) -> None:
    """Refuse, before anything runs, a table directory that holds runs of another config."""
    for point in points:
        for seed in seeds:
            run_dir = runs_dir / f"{point.slug}_s{seed}"
            if not holds_records(run_dir) or recorded_config(run_dir) is None:
                continue  # a point refused before its config was written (skipped) is tried again, as run.py does
            config = point_config(preset, point, scale_overrides, seed)
            if not same_run(run_dir, config):
                raise ConfigError(f"{run_dir} holds a run of another config ({differing_keys(run_dir, config)}); "
                                  f"move it aside or choose another --results")


def run_points(preset: str, points: list[Point], scale_overrides: list[str], seeds: list[int],
               runs_dir: Path) -> list[str]:
    """Run every point (what already finished ok is skipped by run.py); returns the commands."""
    check_runs_dir(preset, points, scale_overrides, seeds, runs_dir)
    commands = []
    for point in points:
        argv = command(preset, point, scale_overrides, seeds, runs_dir)
        commands.append("python run.py " + " ".join(shlex.quote(a) for a in argv[2:]))
        print(f"paper: {point.label}", flush=True)
        subprocess.run(argv, cwd=REPO, check=False)  # a failed run is recorded as such, and shown as missing
    return commands


def algorithm_facts(runs_dir: Path, point: Point, seed: int, key: str) -> dict | None:
    """The facts of a point's ok, intact run that hold `key` (e.g. local_critic's exits, found
    where its last group ran), or None."""
    run_dir = runs_dir / f"{point.slug}_s{seed}"
    summary, _ = read_summary(run_dir)
    if summary is None or summary.get("status") != "ok" or records_problem(run_dir, summary) is not None:
        return None
    return next((f for f in summary.get("algorithm_facts_per_worker") or [] if key in (f or {})), None)


def final_metric(runs_dir: Path, points: list[Point], seeds: list[int], column: str,
                 scale: float = 1.0) -> tuple[dict[str, list[float]], list[str]]:
    """Per point, the final `column` of each seed's ok run (x `scale`); and what is missing."""
    runs = load_runs(runs_dir) if runs_dir.is_dir() else pd.DataFrame(columns=["run", "status", "reason", column])
    by_name = {row["run"]: row for _, row in runs.iterrows()}
    values, missing = {}, []
    for point in points:
        values[point.label] = []
        for seed in seeds:
            row = by_name.get(f"{point.slug}_s{seed}")
            if row is None or row["status"] != "ok" or pd.isna(row.get(column)):
                why = "not run" if row is None else f"{row['status']}: {row['reason']}"
                missing.append(f"{point.label} seed {seed} ({why})")
                continue
            values[point.label].append(float(row[column]) * scale)
    return values, missing


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)
