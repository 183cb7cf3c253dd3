"""A speed-up for the user's own command, over a reference timed beside it: a sweep without
`backprop` on one worker of one of its computations runs it at its end, never takes one from
another sweep (another load, maybe another learning rate), and times every reference again at
its end (analysis/reference.py).
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
def test_a_sweep_adds_its_reference_times_it_again_and_never_takes_another_sweeps(tmp_path):
    # An earlier sweep at another learning rate left a backprop x 1 run in results/.
    earlier = run_cli(["-m", *TINY, "algorithm=backprop", "optimizer.lr=0.01"], cwd=tmp_path)
    assert earlier.returncode == 0, earlier.stderr[-3000:]
    first = run_cli(["-m", *TINY, "algorithm=ddg", "gpus=2", "optimizer.lr=0.003", "report.retime_steps=6"],
                    cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "reused" not in first.stdout
    sweep = sorted((tmp_path / "results" / "sweeps").iterdir())[-1]
    added = sweep / "references" / "added_0_backprop_g1"
    assert read_summary(added)["status"] == "ok" and read_summary(added)["algorithm"] == "backprop"
    timing = sweep / "references" / "timing_0_backprop_g1"
    assert read_summary(timing)["status"] == "ok" and read_summary(timing)["steps"] == 6
    table = pd.read_csv(sweep / "report" / "runs.csv").set_index("run")
    ddg = table.loc["0_ddg_g2"]
    assert ddg["reference_run"] == "added_0_backprop_g1" and ddg["reference_timing"] == "this sweep, timed 2 times"
    timings = [read_summary(added)["time_per_iter_median_s"], read_summary(timing)["time_per_iter_median_s"]]
    assert ddg["speedup"] == pytest.approx(sum(timings) / 2 / read_summary(sweep / "0_ddg_g2")["time_per_iter_median_s"])
    assert table.loc["added_0_backprop_g1", "reference_role"] == "added" and "timing_0_backprop_g1" not in table.index
    page = (sweep / "report" / "report.md").read_text()
    assert "lacked its `backprop` x 1 reference: 1 added" in page and "timed again at the sweep's end" in page

    # Run again: the sweep's own reference and timing are found, nothing more is run.
    again = run_cli(["-m", *TINY, "algorithm=ddg", "gpus=2", "optimizer.lr=0.003", "report.retime_steps=6",
                     f"hydra.sweep.dir={sweep}", "resume=true"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [line for line in again.stdout.splitlines() if line.startswith("reference:")], again.stdout[-3000:]


@pytest.mark.slow
def test_a_sweep_can_do_without_the_reference(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *TINY, "algorithm=ddg", "gpus=2", "report.add_reference=false",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (sweep / "references").exists()
    assert "no reference" in (sweep / "report" / "report.md").read_text()
