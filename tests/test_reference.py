"""A speed-up for the user's own command: a sweep without `backprop` on one worker reuses that
reference from the results tree, else runs it once (analysis/reference.py)."""

from __future__ import annotations

import json

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
def test_a_sweep_without_its_reference_adds_it_once_and_a_later_sweep_reuses_it(tmp_path):
    first = run_cli(["-m", *TINY, "algorithm=ddg", "gpus=2"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweeps = sorted((tmp_path / "results" / "sweeps").iterdir())
    added = sweeps[0] / "references" / "added_0_backprop_g1"
    assert read_summary(added)["status"] == "ok" and read_summary(added)["algorithm"] == "backprop"
    table = pd.read_csv(sweeps[0] / "report" / "runs.csv").set_index("run")
    assert table.loc["0_ddg_g2", "speedup"] > 0 and table.loc["added_0_backprop_g1", "reference_role"] == "added"
    assert "lacked its `backprop` x 1 reference: 1 added" in (sweeps[0] / "report" / "report.md").read_text()

    # Run again: the sweep's own reference is found, nothing more is run.
    again = run_cli(["-m", *TINY, "algorithm=ddg", "gpus=2", f"hydra.sweep.dir={sweeps[0]}", "resume=true"],
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [line for line in again.stdout.splitlines() if line.startswith("reference:")], again.stdout[-3000:]

    # Another sweep of the same workload reuses it from the results tree.
    second = run_cli(["-m", *TINY, "algorithm=data_parallel", "gpus=2"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"reference: reused {added}" in second.stdout
    newest = sorted((tmp_path / "results" / "sweeps").iterdir())[-1]
    reused = newest / "references" / "reused_added_0_backprop_g1"
    assert json.loads((reused / "reference.json").read_text()) == {"reused_from": str(added)}
    table = pd.read_csv(newest / "report" / "runs.csv").set_index("run")
    assert table.loc["0_data_parallel_g2", "speedup"] > 0
    assert table.loc["reused_added_0_backprop_g1", "reference_role"] == "reused"


@pytest.mark.slow
def test_a_sweep_can_do_without_the_reference(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *TINY, "algorithm=ddg", "gpus=2", "report.add_reference=false",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (sweep / "references").exists()
    assert "no reference" in (sweep / "report" / "report.md").read_text()
