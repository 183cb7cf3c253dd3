"""`simulate=true` as a user runs it: records marked simulated, no training, bad input in one line."""

from __future__ import annotations

import json

import pytest

from tests.cli import read_summary, run_cli

TINY = ["model=gpt_tiny", "simulator.link=pcie4"]  # a preset link: no ping-pong processes in tests
ALGORITHMS = "backprop,data_parallel,pipeline,hypar,diloco,async_nesterov,pipedream_2bw,ddg,features_replay,ouroboros,local_critic,critic_training,dgl,dni"


@pytest.fixture(scope="module")
def simulated_sweep(tmp_path_factory):
    """Every simulable algorithm at 2 workers, in one multirun (one process)."""
    tmp = tmp_path_factory.mktemp("simulated")
    result = run_cli(["-m", f"algorithm={ALGORITHMS}", "gpus=2", "simulate=true", *TINY,
                      f"hydra.sweep.dir={tmp / 'sweep'}"], cwd=tmp, timeout=600)
    return tmp / "sweep", result


def test_every_algorithm_is_simulated_and_marked(simulated_sweep):
    sweep, result = simulated_sweep
    assert result.returncode == 0, result.stderr
    runs = sorted(p for p in sweep.iterdir() if (p / "summary.json").exists() and p.name[0].isdigit())
    skipped = {p.name: read_summary(p)["reason"] for p in runs if read_summary(p)["status"] == "skipped"}
    assert set(skipped) <= {p.name for p in runs if "backprop_g2" in p.name}, skipped  # backprop runs on one worker
    simulated = [p for p in runs if p.name not in skipped]
    assert len(simulated) == len(ALGORITHMS.split(",")) - 1
    for run_dir in simulated:
        summary = read_summary(run_dir)
        assert summary["status"] == "ok" and summary["simulated"] is True, run_dir.name
        assert "time_per_iter_median_s" not in summary and "final" not in summary  # nothing measured
        assert not (run_dir / "metrics.jsonl").exists() and (run_dir / "gantt.png").stat().st_size > 0
        sim = summary["simulation"]
        assert sim["step_s"] > 0 and sim["speedup"] == pytest.approx(sim["reference_step_s"] / sim["step_s"])
        assert len(sim["idle_fraction_per_worker"]) == 2 and all(m > 0 for m in sim["peak_memory_bytes_per_worker"])
        assert sim["link"]["source"].startswith("preset pcie4")
        assert "simulated" in next(line for line in result.stdout.splitlines() if str(run_dir) in line)


def test_simulated_runs_are_not_limited_by_the_cores(tmp_path):
    # 64 workers of data parallelism on a 2-core machine: refused for training (worker_limit), fine simulated
    run_dir = tmp_path / "dp64"
    result = run_cli(["algorithm=data_parallel", "gpus=64", "batch_size=64", "simulate=true", *TINY,
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "oversubscribed" not in result.stdout
    sim = read_summary(run_dir)["simulation"]
    assert len(sim["busy_s_per_worker"]) == 64


@pytest.mark.parametrize("args,needle", [
    (["algorithm=ddg", "algorithm.runtime=emulated", "gpus=1"], "algorithm.runtime=emulated"),
    (["algorithm=local_critic", "algorithm.runtime=emulated", "gpus=1"], "set algorithm.runtime=distributed"),
    (["simulator.link=infiniband"], "simulator.link"),
    (["device=cuda"], "device=cuda"),  # a profile needs the device it is taken on
])
def test_what_cannot_be_simulated_is_one_error_line(tmp_path, args, needle):
    result = run_cli([*TINY, *args, "simulate=true", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_measured_oversubscribed_run_gets_a_simulated_twin(tmp_path):
    run_dir = tmp_path / "over"
    result = run_cli(["experiment=smoke", "algorithm=ddg", "gpus=2", "threads_per_worker=2", "simulator.link=pcie4",
                      "simulator.alongside=oversubscribed",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = read_summary(run_dir)
    assert summary["oversubscribed"] is True and summary.get("simulated") is None
    assert summary["time_per_iter_median_s"] > 0 and summary["simulation"]["simulated"] is True
    assert summary["simulation"]["step_s"] > 0
    assert "simulated:" in result.stdout
    json.dumps(summary)  # still plain JSON
