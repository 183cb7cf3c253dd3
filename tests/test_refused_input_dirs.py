"""Refused input (exit 2) leaves no empty run directory behind. Hydra creates the run's default
directory (results/runs/<time>_...) before run.py can check the config; a refused run removes it
again if it is still empty. A directory that holds anything, another run's records above all, is
never removed."""

from __future__ import annotations

import json

import pytest

from tests.cli import TINY, run_cli


@pytest.mark.parametrize("bad", [
    ["steps=0"],  # a value out of range
    ["model=resnet20"],  # a model that does not fit the data, found after the directory was locked
    ["gpus=abc"],  # a value of the wrong type
])
def test_a_refused_run_leaves_no_empty_directory(tmp_path, bad):
    result = run_cli([*TINY, *bad], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert list((tmp_path / "results" / "runs").iterdir()) == []


def test_a_refused_run_never_removes_a_directory_with_records(tmp_path):
    """Named with hydra.run.dir, a directory holding another run's records is refused (it is
    not this run's), and stays as it was."""
    run_dir = tmp_path / "earlier"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("steps: 4\n")
    (run_dir / "summary.json").write_text('{"status": "ok"}\n')
    for bad in (["steps=0"], []):
        result = run_cli([*TINY, *bad, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "summary.json"]


def test_a_refused_point_of_a_sweep_keeps_its_skipped_record(tmp_path):
    """In a sweep, a point the algorithm cannot run is recorded as skipped: a record, not an empty directory."""
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *TINY, "algorithm=backprop", "gpus=2", "report.add_reference=false",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert "skipped 0_backprop_g2" in result.stdout, result.stderr  # (exit 2: no point could run)
    assert json.loads((sweep / "0_backprop_g2" / "summary.json").read_text())["status"] == "skipped"
