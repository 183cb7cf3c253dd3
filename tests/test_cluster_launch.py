"""Sweeps through Hydra's submitit launcher: each point a job of its own (SLURM on a cluster; the
same path as local processes here), with the same records and one report at the end."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from analysis.load import load_runs
from mpbench.run_dirs import register_resolvers
from tests.cli import REPO, TINY, run_cli


def test_a_submitit_local_sweep_of_two_points_records_both_and_one_report(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "hydra/launcher=submitit_local", *TINY, "algorithm=backprop", "seed=0,1",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = load_runs(sweep)
    assert sorted(runs["seed"].tolist()) == [0, 1] and runs["status"].tolist() == ["ok", "ok"]
    assert all((sweep / name / "metrics.jsonl").exists() for name in runs["run"])  # each job trained its point
    assert (sweep / "report" / "report.md").exists()


def test_the_slurm_launcher_config_composes_with_the_documented_keys():
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "experiments"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "gpus=4",
                                           "hydra.launcher.timeout_min=30"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == ("gpu", 1, 1, 4)
    assert launcher.timeout_min == 30 and launcher.signal_delay_s > 0  # SIGTERM before the kill: time to checkpoint
