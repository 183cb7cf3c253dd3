"""The same config and seed give bit-identical metrics on the CPU, for every algorithm.

Each algorithm runs twice (`seed=0,0` in one multirun) on its own worker count; every recorded
number of metrics.jsonl (losses, learning rates, evaluations) must be equal, not close. Step
times are left out.
"""

from __future__ import annotations

from algorithms import ALGORITHMS
from analysis.load import load_runs
from tests.cli import TINY, read_metrics, run_cli

ONE_WORKER = {"backprop": [], "sub_model_backprop": ["algorithm.groups=2"]}
QUICK = [*TINY, "steps=2", "eval_every=2", "eval_batches=1", "seed=0,0"]


def metrics_without_times(run_dir) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "step_time_s"} for row in read_metrics(run_dir)]


def test_same_seed_gives_identical_metrics_for_every_algorithm(tmp_path):
    grids = {"two": ["algorithm=" + ",".join(sorted(set(ALGORITHMS) - set(ONE_WORKER))), "gpus=2"]}
    grids.update({name: [f"algorithm={name}", "gpus=1", *extra] for name, extra in ONE_WORKER.items()})
    for label, grid in grids.items():
        sweep = tmp_path / label
        result = run_cli(["-m", *QUICK, *grid, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stderr
        runs = load_runs(sweep)
        assert set(runs["status"]) == {"ok"}
        for algorithm, pair in runs.groupby("algorithm"):
            first, second = (metrics_without_times(sweep / run) for run in pair["run"])
            assert len(first) == 2 and first == second, algorithm
    assert sum(len(load_runs(tmp_path / label)) for label in grids) == 2 * len(ALGORITHMS)
