"""Sweeps through Hydra's submitit launcher: each point a job of its own (SLURM on a cluster; the
same path as local processes here), with the same records and one report at the end."""

from __future__ import annotations

import os
import signal

import pytest
from hydra import compose, initialize_config_dir

from analysis.load import load_runs
from mpbench.preemption import forwarded_to, stop_signals
from mpbench.run_dirs import register_resolvers
from tests.cli import REPO, TINY, read_summary, run_cli, start, wait_for


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


@pytest.mark.slow
def test_sigterm_to_a_submitit_local_job_is_interrupted_and_resumes(tmp_path):
    """A scheduler's notice reaches the job process (submitit's local executor forwards SIGTERM to
    it, as SLURM signals a job): the point checkpoints and is recorded as interrupted, the job and
    the sweep end normally (report included), and the same command with resume=true finishes it
    from its checkpoint."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", *TINY, "algorithm=data_parallel", "gpus=2", "steps=1000",
            "eval_every=500", "checkpoint_every=10", "report.add_reference=false", f"hydra.sweep.dir={sweep}"]
    run_dir = sweep / "0_data_parallel_g2"
    process = start(args, tmp_path)
    wait_for(run_dir / "checkpoints", process, timeout=180)
    jobs = [d for d in (sweep / ".submitit").iterdir() if d.name.isdigit()]
    assert len(jobs) == 1
    os.kill(int(jobs[0].name), signal.SIGTERM)  # a local job's id is its controlling process
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and "resume=true" in summary["reason"], summary
    stopped_at = summary["interrupted_at_step"]
    assert 10 <= stopped_at < 1000
    assert (sweep / "report" / "report.md").exists()

    resumed = run_cli([*args, "resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["steps_completed"] == 1000
    assert summary["resumed_from_step"] == stopped_at


def test_a_submitit_job_also_takes_its_preemption_signal_as_sigterm(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert stop_signals() == [signal.SIGTERM]
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    assert stop_signals() == [signal.SIGTERM, signal.SIGUSR2]  # submitit's default: USR2 before a time-limit kill
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert stop_signals() == [signal.SIGTERM, signal.SIGUSR1]
    received = []
    with forwarded_to(lambda: received.append(True)) as state:
        os.kill(os.getpid(), signal.SIGUSR1)
    assert state.received and received == [True]
