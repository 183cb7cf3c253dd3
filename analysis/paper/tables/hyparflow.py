"""Awan et al., "HyPar-Flow" (ISC 2020): `hyparflow_scaling`, the speed-ups its abstract claims.

The paper's two views of hybrid parallelism (partitions x replicas, `hypar`): against
Horovod-style data parallelism on the same nodes, and against one node as the nodes grow (to
128 and 512 CPU nodes). Ours, in weak scaling (16 images per worker): measured where this
machine holds the workers without oversubscription (2, one thread each), simulated beyond, to
the paper's node counts, from this machine's profile and a 100 Gb/s link (the paper's clusters:
experiments/experiment/paper/hyparflow_scaling.yaml). Each simulated "node" computes as fast as
one core of this machine, not one of the paper's 48- and 56-core nodes, so communication weighs
less against compute than on their clusters: the caption says so. Measured and simulated
numbers are in separate columns, and separate lines of the figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.paper.claims import FAILS, HOLDS, UNRESOLVED, Claim, Verdict  # noqa: E402
from analysis.paper.registry import Ours, PaperTable, register  # noqa: E402
from analysis.paper.runs import Point, final_metric, run_points, timed  # noqa: E402

PRESET = "hyparflow_scaling"
PER_WORKER = 16  # images per worker: the global batch grows with the workers
SPEEDUP, SIM_SPEEDUP, NODE_SPEEDUP = "speed-up", "speed-up, simulated", "speed-up, simulated, paper's node"
CONFIG, SIM_CONFIG, NODE_CONFIG = "configuration", "configuration, simulated", "configuration, simulated, paper's node"
# What-if (simulator.worker_speed): a node of the paper's clusters (56 cores: Frontera's 2 x 28) computes
# as fast as 32 cores of this machine, about 60% thread efficiency. An assumption, stated as one.
NODE_SPEED = 32.0
DEEP, SHALLOW = "ResNet-1001", "ResNet-110"
MODELS = {DEEP: "resnet1001", SHALLOW: "resnet110"}
OVER_DP, OVER_ONE, OVER_SEQUENTIAL = "hybrid over data parallel (best)", "over one node", "hybrid over sequential"
NOT_STATED = "not stated"


@dataclass(frozen=True)
class Scale:
    timed_steps: int  # measured points: the median step of these
    measured_workers: tuple[int, ...]
    simulated_workers: tuple[int, ...]  # ResNet-1001, to the paper's node counts
    shallow_workers: tuple[int, ...]  # ResNet-110
    partitions: tuple[int, ...]  # hypar's partitions tried at each count (1 is data parallel)


SCALES = {"quick": Scale(10, (2,), (2, 8, 32, 128, 512), (2, 4, 8), (2, 8)),
          "full": Scale(30, (2,), (2, 4, 8, 16, 32, 64, 128, 256, 512), (2, 4, 8, 16, 32), (2, 4, 8, 16, 32))}


@dataclass(frozen=True)
class Config:
    """One way to spread a workload over `workers`: one worker (sequential), data parallel
    (partitions 1), or `partitions` x workers/partitions replicas."""

    workload: str
    workers: int
    partitions: int
    speed: float = 1.0  # simulated only: the workers' compute speed over this machine's core

    @property
    def name(self) -> str:
        if self.workers == 1:
            return "one worker"
        if self.partitions == 1:
            return f"data parallel x {self.workers}"
        return f"{self.partitions} partitions x {self.workers // self.partitions} replicas"

    def point(self, steps: int, simulate: bool) -> Point:
        algorithm = "backprop" if self.workers == 1 else "data_parallel" if self.partitions == 1 else "hypar"
        extra = (f"model={MODELS[self.workload]}", f"batch_size={PER_WORKER * self.workers}",
                 *([f"algorithm.partitions={self.partitions}"] if algorithm == "hypar" else []),
                 *([f"simulator.worker_speed={self.speed:g}"] if self.speed != 1.0 else []))
        run = f"{MODELS[self.workload]}_g{self.workers}_p{self.partitions}" + ("_node" if self.speed != 1.0 else "")
        node = ", paper's node" if self.speed != 1.0 else ""
        return timed(f"{self.workload}, {self.name}{node}", algorithm, self.workers, steps, simulate, extra, run)


def configs(workload: str, workers: tuple[int, ...], partitions: tuple[int, ...], speed: float = 1.0) -> list[Config]:
    one = [Config(workload, 1, 1, speed)]
    return one + [Config(workload, n, p, speed) for n in workers for p in (1, *partitions) if p <= n]


def plan(s: Scale) -> dict[bool, list[Config]]:
    """simulate -> the configurations run that way (simulated: also at the paper's node speed)."""
    return {False: configs(DEEP, s.measured_workers, s.partitions) + configs(SHALLOW, s.measured_workers, s.partitions),
            True: configs(DEEP, s.simulated_workers, s.partitions) + configs(SHALLOW, s.shallow_workers, s.partitions)
            + configs(DEEP, s.simulated_workers, s.partitions, NODE_SPEED)}


def throughput(runs_dir: Path, s: Scale) -> tuple[dict[tuple[bool, Config], float], list[str]]:
    """Images per second of each configuration, measured or simulated; and what is missing."""
    found, missing = {}, []
    for simulate, cfgs in plan(s).items():
        points = [c.point(s.timed_steps, simulate) for c in cfgs]
        values, lost = final_metric(runs_dir, points, [0], "sim_samples_per_s" if simulate else "samples_per_s")
        missing += lost
        found.update({(simulate, c): values[p.label][0] for c, p in zip(cfgs, points) if values[p.label]})
    return found, missing


def table(scale: str, results: Path) -> Ours:
    s = SCALES[scale]
    runs_dir = results / f"runs-{scale}"
    points = [c.point(s.timed_steps, simulate) for simulate, cfgs in plan(s).items() for c in cfgs]
    commands = run_points(PRESET, points, [], [0], runs_dir)
    rate, missing = throughput(runs_dir, s)
    rows = speedup_rows(rate, s)
    figure = draw(rate, results / "figure.png")
    note = (f"weak scaling, {PER_WORKER} CIFAR-10 images per worker, SGD; measured on this machine's cores (one thread "
            f"per worker: {', '.join(map(str, s.measured_workers))} workers, median of {s.timed_steps} steps); simulated "
            f"(mpbench/simulate) at {', '.join(map(str, s.simulated_workers))} workers from this machine's profile, linked "
            f"at 100 Gb/s (HDR100 / Omni-Path, the paper's clusters), each worker as fast as one of its cores "
            f"(\"simulated\") or, assumed, as a node of the paper's (56 cores) = {NODE_SPEED:g} of its cores "
            f"(\"simulated, paper's node\": simulator.worker_speed={NODE_SPEED:g}); partitions tried: 1 (data parallel), "
            f"{', '.join(map(str, s.partitions))}")
    return Ours(pd.DataFrame(rows), how={SPEEDUP: "measured", CONFIG: "measured", SIM_SPEEDUP: "simulated",
                                         SIM_CONFIG: "simulated", NODE_SPEEDUP: "simulated", NODE_CONFIG: "simulated"},
                scale_note=note, commands=commands, missing=missing, figure=figure)


def _best(rate: dict, simulate: bool, workload: str, workers: int, hybrid_only: bool,
          speed: float) -> tuple[Config, float] | None:
    """The fastest configuration on `workers` (only those with 2 or more partitions if `hybrid_only`)."""
    found = [(c, v) for (sim, c), v in rate.items() if sim == simulate and c.workload == workload and c.speed == speed
             and c.workers == workers and (c.partitions > 1 or not hybrid_only)]
    return max(found, key=lambda cv: cv[1]) if found else None


def _over(rate: dict, simulate: bool, workload: str, workers: int, baseline: Config, hybrid_only: bool):
    """(speed-up of the best configuration over `baseline`'s throughput, its name), or (None, None)."""
    best = _best(rate, simulate, workload, workers, hybrid_only, baseline.speed)
    base = rate.get((simulate, baseline))
    if best is None or base is None:
        return None, None
    return best[1] / base, f"{best[0].name} on {workers}"


def speedup_rows(rate: dict, s: Scale) -> list[dict]:
    """The paper's rows (each at the count it names, or at the best count run), then the whole
    scaling curve: the best configuration over one worker at each count."""
    rows = []

    nothing = (None, None)

    def row(workload, comparison, workers, measured, simulated, at_node_speed=nothing):
        rows.append({"workload": workload, "comparison": comparison, "workers": workers,
                     SPEEDUP: measured[0], CONFIG: measured[1], SIM_SPEEDUP: simulated[0], SIM_CONFIG: simulated[1],
                     NODE_SPEEDUP: at_node_speed[0], NODE_CONFIG: at_node_speed[1]})

    def over_dp(simulate, counts, speed=1.0):
        ratios = [_over(rate, simulate, DEEP, n, Config(DEEP, n, 1, speed), hybrid_only=True) for n in counts]
        ratios = [r for r in ratios if r[0] is not None]
        return max(ratios, key=lambda r: r[0]) if ratios else nothing

    one_deep, one_shallow, one_node = Config(DEEP, 1, 1), Config(SHALLOW, 1, 1), Config(DEEP, 1, 1, NODE_SPEED)
    row(DEEP, OVER_DP, NOT_STATED, over_dp(False, s.measured_workers), over_dp(True, s.simulated_workers),
        over_dp(True, s.simulated_workers, NODE_SPEED))
    for n in (128, 512):
        row(DEEP, OVER_ONE, str(n), nothing, _over(rate, True, DEEP, n, one_deep, hybrid_only=False),
            _over(rate, True, DEEP, n, one_node, hybrid_only=False))
    largest = max(s.shallow_workers)
    row(SHALLOW, OVER_SEQUENTIAL, NOT_STATED, _over(rate, False, SHALLOW, max(s.measured_workers), one_shallow, True),
        _over(rate, True, SHALLOW, largest, one_shallow, True))
    for n in sorted(set(s.measured_workers) | set(s.simulated_workers)):
        if n not in (128, 512):
            row(DEEP, OVER_ONE, str(n), _over(rate, False, DEEP, n, one_deep, False),
                _over(rate, True, DEEP, n, one_deep, False), _over(rate, True, DEEP, n, one_node, False))
    for n in sorted(set(s.measured_workers) | set(s.shallow_workers)):
        row(SHALLOW, OVER_SEQUENTIAL, str(n), _over(rate, False, SHALLOW, n, one_shallow, True),
            _over(rate, True, SHALLOW, n, one_shallow, True))
    return rows


def draw(rate: dict, path: Path) -> Path:
    """Speed-up over one worker against workers, per configuration: simulated lines, measured
    markers, never joined; one panel per workload."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, workload in zip(axes, (DEEP, SHALLOW)):
        for simulate, speed, kind in ((True, 1.0, "simulated"), (True, NODE_SPEED, "simulated, paper's node"),
                                      (False, 1.0, "measured")):
            base = rate.get((simulate, Config(workload, 1, 1, speed)))
            if base is None:
                continue
            mine = {c: v for (sim, c), v in rate.items() if sim == simulate and c.workload == workload and c.speed == speed}
            for p in sorted({c.partitions for c in mine}):
                points = sorted((c.workers, v / base) for c, v in mine.items() if c.partitions == p and c.workers > 1)
                if not points:
                    continue
                name = "data parallel" if p == 1 else f"{p} partitions x replicas"
                x, y = zip(*points)
                if simulate:
                    ax.plot(x, y, marker=".", linestyle="-" if speed == 1.0 else "--", label=f"{name} ({kind})")
                else:
                    ax.scatter(x, y, marker="x", s=60, label=f"{name} ({kind})")
        workers = sorted({c.workers for (_, c) in rate if c.workload == workload})
        if workers:
            ax.plot(workers, workers, color="grey", linestyle=":", label="linear")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("workers (nodes)")
        ax.set_ylabel("speed-up over one worker (images/s)")
        ax.set_title(f"{workload}, {PER_WORKER} images per worker")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# One seed of a timed run: a speed-up within 5% of the line decides nothing.
TIMING_NOISE = 0.05


def _cell(ours: pd.DataFrame, workload: str, comparison: str, workers: str, column: str) -> float | None:
    row = ours[(ours["workload"] == workload) & (ours["comparison"] == comparison) & (ours["workers"] == workers)]
    return None if row.empty or pd.isna(row[column].iloc[0]) else float(row[column].iloc[0])


def hybrid_beats_data_parallel(column: str):
    def check(paper, ours: pd.DataFrame) -> Verdict:
        value = _cell(ours, DEEP, OVER_DP, NOT_STATED, column)
        if value is None:
            return Verdict(UNRESOLVED, f"no {column}")
        shown = f"best hybrid over data parallel {value:.3g}x (paper: up to 1.6x; noise {TIMING_NOISE:.0%})"
        status = HOLDS if value > 1 + TIMING_NOISE else FAILS if value < 1 - TIMING_NOISE else UNRESOLVED
        return Verdict(status, shown)
    return check


def reaches(workload: str, comparison: str, workers: str, paper_value: float, column: str = SIM_SPEEDUP):
    """Ours (simulated, in `column`) at least the paper's speed-up, less the noise."""
    def check(paper, ours: pd.DataFrame) -> Verdict:
        value = _cell(ours, workload, comparison, workers, column)
        if value is None:
            return Verdict(UNRESOLVED, f"no {column} at {workers} workers")
        status = HOLDS if value >= paper_value * (1 - TIMING_NOISE) else FAILS
        return Verdict(status, f"{value:.3g}x ({column}) vs the paper's {paper_value:g}x")
    return check


register(PaperTable(
    name="hyparflow_scaling",
    title="HyPar-Flow: hybrid partitions x replicas against data parallelism and one node, to 512 nodes",
    comparison="speed only (weak scaling, one recipe for every configuration); measured and simulated in separate "
               "columns; the best of the configurations tried at each count",
    budgets={"quick": "ResNet-1001 and ResNet-110, 16 images per worker: 6 timed runs at 1-2 workers (10 steps) and "
                      "38 simulated points to 512 workers (one core per worker, and the paper's node): about 15 minutes on 2 CPU "
                      "cores",
             "full": "the same, 30 timed steps, simulated at every power of 2 to 512 with partitions 2 to 32: about "
                     "an hour on 2 CPU cores (not run here)"},
    ours=table,
    claims=(Claim("hybrid parallelism is faster than data parallelism on the same workers (measured)",
                  hybrid_beats_data_parallel(SPEEDUP)),
            Claim("hybrid parallelism is faster than data parallelism on the same workers (simulated)",
                  hybrid_beats_data_parallel(SIM_SPEEDUP)),
            Claim("hybrid parallelism is faster than data parallelism on the same nodes (simulated, paper's node)",
                  hybrid_beats_data_parallel(NODE_SPEEDUP)),
            Claim("110x over one node on 128 nodes (simulated, paper's node)",
                  reaches(DEEP, OVER_ONE, "128", 110.0, NODE_SPEEDUP)),
            Claim("481x over one node on 512 nodes (simulated, paper's node)",
                  reaches(DEEP, OVER_ONE, "512", 481.0, NODE_SPEEDUP)),
            Claim("ResNet-110: 3.1x over sequential training (simulated, at the largest count run; the paper does not "
                  "say on how many nodes)", reaches(SHALLOW, OVER_SEQUENTIAL, NOT_STATED, 3.1))),
))
