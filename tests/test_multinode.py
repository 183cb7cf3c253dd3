"""gpus=N over several nodes with torchrun's c10d rendezvous: two torchrun launchers on this machine
act as two nodes of one worker each. The run is one record, and in float64 its metrics and weights
equal the same run's on one node (workers spawned by run.py) bit for bit, for one algorithm of
each way of exchanging data: gradients (data_parallel), pipelined activations (pipeline),
stale-gradient modules (ddg) and local critics (local_critic)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.cli import REPO, TINY, merged_weights, read_metrics, read_summary, run_cli

pytestmark = pytest.mark.slow

ALGORITHMS = ("data_parallel", "pipeline", "ddg", "local_critic")
EXACT = [*TINY, "dtype=float64", "gpus=2", "steps=6", "eval_every=3", "save_weights=true"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_node_run(run_dir, cwd, overrides: list[str]) -> None:
    """One run over two torchrun 'nodes' (launchers) of one worker each, joined at one endpoint."""
    port = free_port()
    launchers = []
    for node in range(2):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                   f"--node-rank={node}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                   "--rdzv-id=mpbench-test", "--rdzv-conf=join_timeout=120", "--max-restarts=0",
                   str(REPO / "run.py"), *EXACT, *overrides, f"hydra.run.dir={run_dir}"]
        launchers.append(subprocess.Popen(command, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env={**os.environ, "OMP_NUM_THREADS": "1"}))
    outputs = [p.communicate(timeout=300) for p in launchers]
    for p, (_, stderr) in zip(launchers, outputs):
        assert p.returncode == 0, stderr[-3000:]


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "step_time_s"} for row in rows]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    """The four runs on one node: one multirun, workers spawned by run.py."""
    sweep = tmp_path_factory.mktemp("one_node")
    result = run_cli(["-m", *EXACT, f"algorithm={','.join(ALGORITHMS)}", "report.add_reference=false",
                      f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${algorithm.name}"], cwd=sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_torchrun_nodes_equal_one_node_bit_for_bit(tmp_path, one_node, algorithm):
    run_dir = tmp_path / "run"
    two_node_run(run_dir, tmp_path, [f"algorithm={algorithm}"])
    summary, reference = read_summary(run_dir), read_summary(one_node / algorithm)
    assert summary["status"] == reference["status"] == "ok", summary["reason"]
    assert summary["launched_by"] == "torchrun" and reference["launched_by"] == "spawn"
    assert len(summary["bytes_sent_per_worker"]) == 2 and summary["bytes_sent_per_worker"] == reference["bytes_sent_per_worker"]
    assert without_times(read_metrics(run_dir)) == without_times(read_metrics(one_node / algorithm))
    mine, theirs = merged_weights(run_dir, 2), merged_weights(one_node / algorithm, 2)
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # one record: no per-node directories


def test_a_submitit_job_of_two_tasks_is_one_run_equal_to_one_node(tmp_path, one_node):
    """hydra/launcher=submitit_local with tasks_per_node=2: each task is one worker (the path a SLURM
    job of nodes x tasks_per_node takes), and the point is one record equal to the spawned run."""
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", *EXACT,
                      "algorithm=data_parallel", "report.add_reference=false", f"hydra.sweep.dir={sweep}",
                      "hydra.sweep.subdir=run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, reference = sweep / "run", one_node / "data_parallel"
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["launched_by"] == "submitit", summary.get("reason")
    assert without_times(read_metrics(run_dir)) == without_times(read_metrics(reference))
    mine, theirs = merged_weights(run_dir, 2), merged_weights(reference, 2)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
