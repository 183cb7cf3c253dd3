"""Every algorithm, run twice with one config and seed (`seed=0,0` in one multirun each):

- the metrics are bit-identical on the CPU (every recorded number of metrics.jsonl: losses,
  learning rates, evaluations; step times left out);
- each worker's time is split by one definition (mpbench/parallel/clock.py): compute and wait
  are parts of the time inside train_step, recorded for every algorithm.
"""

from __future__ import annotations

import json

import pytest

import algorithms  # noqa: F401 (registers them)
from analysis.load import load_runs
from mpbench.registry import ALGORITHMS
from tests.cli import TINY, read_metrics, run_cli

pytestmark = pytest.mark.slow

ONE_WORKER = {"backprop": [], "sub_model_backprop": ["algorithm.groups=2"]}
QUICK = [*TINY, "steps=2", "eval_every=2", "eval_batches=1", "seed=0,0"]
UNSPLIT = {"data_parallel"}  # DDP's all-reduce runs inside the backward


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("every_algorithm")
    grids = {"two": ["algorithm=" + ",".join(sorted(set(ALGORITHMS) - set(ONE_WORKER))), "gpus=2"]}
    grids.update({name: [f"algorithm={name}", "gpus=1", *extra] for name, extra in ONE_WORKER.items()})
    for label, grid in grids.items():
        result = run_cli(["-m", *QUICK, *grid, "report.add_reference=false", f"hydra.sweep.dir={tmp / label}"],
                         cwd=tmp, timeout=600)
        assert result.returncode == 0, result.stderr
    runs = {label: load_runs(tmp / label) for label in grids}
    assert sum(len(r) for r in runs.values()) == 2 * len(ALGORITHMS)
    return {label: (tmp / label, frame) for label, frame in runs.items()}


def metrics_without_times(run_dir) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "step_time_s"} for row in read_metrics(run_dir)]


def test_same_seed_gives_identical_metrics_for_every_algorithm(sweeps):
    for sweep, runs in sweeps.values():
        assert set(runs["status"]) == {"ok"}
        for algorithm, pair in runs.groupby("algorithm"):
            first, second = (metrics_without_times(sweep / run) for run in pair["run"])
            assert len(first) == 2 and first == second, algorithm


def test_every_algorithm_splits_its_workers_time_the_same_way(sweeps):
    for sweep, runs in sweeps.values():
        for _, run in runs.iterrows():
            summary = json.loads((sweep / run["run"] / "summary.json").read_text())
            step, compute, wait = (summary[f"{k}_s_per_worker"] for k in ("iteration", "compute", "wait"))
            assert len(step) == len(compute) == len(wait) == summary["gpus"], run["algorithm"]
            for s, c, w in zip(step, compute, wait):
                assert s > 0 and 0 <= w <= s
                if run["algorithm"] in UNSPLIT:
                    assert c is None
                else:  # per iteration compute and wait are parts of the step, so are their medians
                    assert 0 < c <= s and w <= s, (run["algorithm"], s, c, w)
