"""End to end through run.py: records of single runs and multiruns, failures, divergence, torchrun."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from analysis.load import ResultsError, load_runs
from mpbench.trainer import LossSpikes
from tests.cli import REPO, TINY, read_metrics, read_summary, run_cli


@pytest.mark.slow
def test_single_run_writes_complete_records(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(run_dir) in result.stdout  # says where the results are

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["n_layer"] == 2 and config["steps"] == 4  # fully resolved

    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["train_loss"] > 0 and r["step_time_s"] > 0 for r in rows)
    assert [("eval_loss" in r) for r in rows] == [False, True, False, True]
    assert rows[-1]["eval_bits_per_char"] == pytest.approx(rows[-1]["eval_loss"] / 0.6931471805599453)

    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["steps_completed"] == 4
    assert summary["final"]["eval_loss"] == rows[-1]["eval_loss"]
    assert summary["device_type"] == "cpu" and summary["threads_per_worker"] == 1
    assert summary["oversubscribed"] is False
    assert summary["time_per_iter_median_s"] > 0 and summary["tokens_per_s"] > 0
    assert len(summary["peak_memory_bytes_per_worker"]) == 1
    assert summary["peak_memory_bytes_per_worker"][0] > 10 * 2**20
    assert summary["environment"]["torch"].startswith("2.13.0")
    assert summary["environment"]["git"]["commit"]
    assert summary["environment"]["host_allocator"].startswith("glibc, freed memory kept")


@pytest.mark.slow
def test_multirun_grid_records_every_point(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *TINY, "algorithm=backprop,data_parallel", "gpus=1,2",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = load_runs(sweep).set_index(["algorithm", "gpus"])
    assert len(runs) == 4
    assert runs.loc[("backprop", 2), "status"] == "skipped"
    assert "data_parallel" in runs.loc[("backprop", 2), "reason"]
    for point in [("backprop", 1), ("data_parallel", 1), ("data_parallel", 2)]:
        run = runs.loc[point]
        assert run["status"] == "ok"
        assert len(read_metrics(sweep / run["run"])) == 4
    dp2 = read_summary(sweep / runs.loc[("data_parallel", 2), "run"])
    assert len(dp2["bytes_sent_per_worker"]) == 2 and min(dp2["bytes_sent_per_worker"]) > 0
    assert "3 ok, 1 skipped" in result.stdout  # the sweep-end summary


@pytest.mark.slow
def test_failed_worker_is_recorded_and_sweep_continues(tmp_path):
    sweep = tmp_path / "sweep"
    # Worker 1 raises at step 3 in the first run; the second run has no fault.
    result = run_cli(["-m", *TINY, "algorithm=data_parallel", "gpus=2",
                      "fault={rank:1,step:3,kind:raise},null", "report.add_reference=false",
                      f"hydra.sweep.dir={sweep}"],
                     cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the sweep says that something failed
    runs = load_runs(sweep).sort_values("run")
    assert list(runs["status"]) == ["failed", "ok"]
    failed = read_summary(sweep / runs.iloc[0]["run"])
    assert failed["failed_rank"] == 1 and failed["failed_step"] == 3
    assert "injected fault" in failed["reason"] and "rank 1" in failed["reason"]
    assert len(read_metrics(sweep / runs.iloc[1]["run"])) == 4


@pytest.mark.slow
def test_hard_exit_of_a_worker_fails_the_run_without_hanging(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "algorithm=data_parallel", "gpus=2", "fault={rank:1,step:2,kind:exit}",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and summary["failed_rank"] == 1
    assert "exited with code 3" in summary["reason"]


@pytest.mark.slow
def test_non_finite_loss_is_recorded_as_diverged(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "fault={rank:0,step:2,kind:nan_loss}", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = read_summary(run_dir)
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 2
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]
    assert summary["reason"] == "non-finite training loss at step 2"


@pytest.mark.slow
def test_non_finite_gradient_is_recorded_as_diverged_at_its_step(tmp_path):
    """A NaN gradient applied by rank 0 (module 1 of ddg, delay 1) at step 3: the loss of step 3
    is still finite, the weights after it are not; the run stops there, naming the rank."""
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "steps=6", "algorithm=ddg", "gpus=2", "fault={rank:0,step:3,kind:nan_gradient}",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = read_summary(run_dir)
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 3
    assert summary["reason"].startswith("non-finite weights on rank 0 after step 3"), summary["reason"]
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3] and math.isfinite(rows[-1]["train_loss"])


def test_loss_spikes_count_steps_in_a_row_above_factor_times_the_lowest():
    spikes = LossSpikes(patience=2, factor=2.0)
    verdicts = [spikes.diverged(loss) for loss in [4.0, 3.0, 2.0, 5.0, 3.9, 4.1, 4.5]]
    assert verdicts == [False, False, False, False, False, False, True]  # 5.0 alone; then 4.1, 4.5
    assert not any(LossSpikes(patience=0).diverged(loss) for loss in [1.0, 100.0, 100.0])  # off


@pytest.mark.slow
def test_a_loss_spike_past_its_patience_is_recorded_as_diverged(tmp_path):
    run_dir = tmp_path / "run"
    # A factor this close to 1 makes the first step whose loss exceeds the lowest one a spike.
    result = run_cli([*TINY, "steps=20", "divergence_patience=1", "divergence_factor=1.000001",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = read_summary(run_dir)
    losses = [r["train_loss"] for r in read_metrics(run_dir)]
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == len(losses) < 20
    assert losses[-1] > min(losses[:-1]) * 1.000001 and losses[:-1] == sorted(losses[:-1], reverse=True)
    assert "divergence_patience=1" in summary["reason"]


@pytest.mark.slow
def test_torchrun_gives_one_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                "--master-port=0", "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0"]
    result = run_cli([*TINY, "algorithm=data_parallel", "gpus=2", f"hydra.run.dir={run_dir}"],
                     cwd=tmp_path, launcher=launcher)
    assert result.returncode == 0, result.stderr
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["launched_by"] == "torchrun"
    assert len(summary["bytes_sent_per_worker"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no stray per-rank directories


def test_loader_rejects_a_missing_directory_and_lists_a_corrupt_run(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load_runs(tmp_path / "nothing")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text("{not json")
    runs = load_runs(tmp_path)
    assert list(runs["status"]) == ["unreadable"] and "summary.json is not valid JSON" in runs.iloc[0]["reason"]


@pytest.mark.slow
def test_wandb_logger_writes_an_offline_run_inside_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "logger=wandb", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                     env={"WANDB_MODE": "offline", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert read_summary(run_dir)["status"] == "ok"
    logs = list((run_dir / "wandb").rglob("offline-run-*/run-*.wandb"))
    assert len(logs) == 1 and b"eval_bits_per_char" in logs[0].read_bytes()
    assert not (tmp_path / ".config" / "wandb").exists()  # nothing written outside the run


def _processes_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # not a process, or it just ended
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_ctrl_c_leaves_no_worker_behind(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(REPO / "run.py"), *TINY, "steps=100000", "eval_every=100000",
               "algorithm=data_parallel", "gpus=2", f"hydra.run.dir={run_dir}"]
    # A session of its own, so that leftovers can be found by process group. The SIGINT goes to
    # the launcher only (harder than a terminal's Ctrl-C, which reaches the workers too): the
    # launcher itself must take its workers down.
    # SIGINT back to its default in the child: a shell's background job (nohup ... &, a CI runner)
    # starts with SIGINT ignored, and an ignored SIGINT is inherited and never becomes a Ctrl-C.
    process = subprocess.Popen(command, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while len(_processes_in_group(process.pid)) < 3 and time.time() < deadline:
        time.sleep(0.2)
    assert len(_processes_in_group(process.pid)) >= 3  # the launcher and its two workers
    time.sleep(3)  # let the workers reach the training loop
    os.kill(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    deadline = time.time() + 10
    while _processes_in_group(process.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _processes_in_group(process.pid) == []
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and "SIGINT" in summary["reason"]


def test_ctrl_c_while_the_workers_are_starting_leaves_none_behind(tmp_path, monkeypatch):
    """A Ctrl-C that lands inside torch's start_processes, after it started a worker but before it
    returned them: the launcher still ends that worker (else it trains on, and the launcher waits
    for it at exit) and records the run as interrupted."""
    from mpbench import launch
    from mpbench.config import run_spec_from
    from mpbench.machine_load import snapshot
    from mpbench.topology import resolve_topology
    from tests.test_config import composed

    spec = run_spec_from(composed([*TINY, "algorithm=data_parallel", "gpus=2"]))
    started = []

    def interrupted_start(*args, **kwargs):
        worker = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(120,))
        worker.start()
        started.append(worker)
        raise KeyboardInterrupt

    monkeypatch.setattr(launch.mp, "start_processes", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        launch._spawn(spec, resolve_topology(2, "cpu", 1), tmp_path, {}, snapshot())
    assert started and not started[0].is_alive()
    assert read_summary(tmp_path)["status"] == "interrupted"


def _worker_pids(launcher: int) -> list[int]:
    """The launcher's spawned workers, in start order (rank order)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    return sorted(int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes())


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_fails_its_run_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, str(REPO / "run.py"), "-m", *TINY, "steps=100000", "eval_every=1",
               "algorithm=data_parallel", "gpus=2,1", "timeout_s=30", f"hydra.sweep.dir={sweep}"]
    process = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = sweep / "0_data_parallel_g2"
    deadline = time.time() + 60
    while not (first / "metrics.jsonl").exists():  # both workers are in the training loop
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.1)
    os.kill(_worker_pids(process.pid)[1], signal.SIGKILL)
    # The second point of the grid must not run 100000 steps: stop it once it has started.
    second = sweep / "1_data_parallel_g1"
    deadline = time.time() + 60
    while not (second / "metrics.jsonl").exists():
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    summary = read_summary(first)
    assert summary["status"] == "failed" and summary["failed_rank"] == 1, summary["reason"]
    assert summary["reason"] == "rank 1 ended without a report (rank 1 was killed by SIGKILL)"
    assert read_summary(second)["status"] == "interrupted"  # the sweep went on to the next run
