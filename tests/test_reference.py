"""A speed-up for the user's own command, over a reference timed beside it: a sweep times
`backprop` on one worker before each measured point and after the last, runs the reference of
each computation it lacks at its end, and never takes one from another sweep (another load,
maybe another learning rate) (analysis/reference.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.reference import reference_overrides
from tests.cli import TINY, read_summary, run_cli


def test_the_reference_keeps_the_workload_and_drops_the_algorithm_and_workers():
    task = ["experiment=smoke", "algorithm=ouroboros,local_critic", "gpus=1,2,4", "algorithm.modules=3",
            "+algorithm.x=1", "model.n_layer=2", "seed=0,1", "fault={rank:1,step:2,kind:raise}", "resume=true",
            "hydra.sweep.dir=x"]
    assert reference_overrides(task) == ["experiment=smoke", "model.n_layer=2", "seed=0,1"]


@pytest.mark.slow
def test_a_sweep_times_its_reference_beside_each_point_adds_it_and_never_takes_another_sweeps(tmp_path):
    # An earlier sweep at another learning rate left a backprop x 1 run in results/.
    earlier = run_cli(["-m", *TINY, "algorithm=backprop", "optimizer.lr=0.01"], cwd=tmp_path)
    assert earlier.returncode == 0, earlier.stderr[-3000:]
    grid = ["-m", *TINY, "algorithm=ddg", "gpus=1,2", "optimizer.lr=0.003", "report.retime_steps=6"]
    first = run_cli(grid, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = sorted((tmp_path / "results" / "sweeps").iterdir())[-1]
    timings = sweep / "references"
    names = ["timing_000_before_0_ddg_g1", "timing_001_before_1_ddg_g2", "timing_002_end"]
    assert sorted(p.name for p in timings.glob("timing_*")) == names
    summaries = [read_summary(timings / name) for name in names]
    assert all(s["status"] == "ok" and s["algorithm"] == "backprop" and s["steps"] == 6 for s in summaries)
    added = timings / "added_0_backprop_g1"  # the quality reference, at the sweep's own learning rate
    assert read_summary(added)["status"] == "ok" and read_summary(added)["steps"] == 4
    table = pd.read_csv(sweep / "report" / "runs.csv").set_index("run")
    two = table.loc["1_ddg_g2"]
    assert two["reference_run"] == "added_0_backprop_g1" and two["reference_timing"] == "side by side"
    around = (summaries[1]["time_per_iter_median_s"] + summaries[2]["time_per_iter_median_s"]) / 2
    assert two["speedup"] == pytest.approx(around / read_summary(sweep / "1_ddg_g2")["time_per_iter_median_s"])
    assert "timing_002_end" not in table.index and table.loc["added_0_backprop_g1", "reference_role"] == "added"
    page = (sweep / "report" / "report.md").read_text()
    assert "lacked its `backprop` x 1 reference: 1 added" in page and "3 timing runs" in page

    # Run again: the sweep's own reference and timings are found, nothing more is run.
    again = run_cli([*grid, f"hydra.sweep.dir={sweep}", "resume=true"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [line for line in again.stdout.splitlines() if line.startswith("reference:")], again.stdout[-3000:]
    assert sorted(p.name for p in timings.glob("timing_*")) == names


@pytest.mark.slow
def test_a_sweep_can_do_without_the_reference(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *TINY, "algorithm=ddg", "gpus=2", "report.add_reference=false",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (sweep / "references").exists()
    assert "no reference" in (sweep / "report" / "report.md").read_text()
