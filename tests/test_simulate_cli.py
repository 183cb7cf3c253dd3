"""`simulate=true` as a user runs it: records marked simulated, no training, bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_every_point_of_a_sweep_is_simulated_from_one_profile_kept_in_the_sweep(simulated_sweep):
    sweep, result = simulated_sweep
    assert result.returncode == 0, result.stderr
    simulations = [summary["simulation"] for summary in map(read_summary, sorted(sweep.glob("*_g2")))
                   if summary["status"] == "ok"]
    profiles = {(s["profile"]["id"], s["profile"]["kept_in"], s["profile"]["taken_at"]) for s in simulations}
    assert len(simulations) > 10 and len(profiles) == 1, profiles
    (_, kept_in, _), = profiles
    assert Path(kept_in).parent == (sweep / "simulator").resolve() and Path(kept_in).exists()
    assert len({s["reference_step_s"] for s in simulations}) == 1  # the one-worker reference: the same step
    assert len({s["compute_scale"] for s in simulations}) == 1 and len({s["step_overhead_s"] for s in simulations}) == 1
    sizes = {name for s in simulations for name in s["profile"]["entries"] if name.startswith("rows ")}
    assert len(sizes) >= 3  # the points needed several row sizes (shards, microbatches), all of one profile
    kept = json.loads(Path(kept_in).read_text())
    assert sizes <= set(kept["entries"]) and kept["id"] == simulations[0]["profile"]["id"]


def test_the_per_step_overhead_is_measured_and_kept_apart_from_the_compute(simulated_sweep):
    sweep, _ = simulated_sweep
    for run_dir in sorted(sweep.glob("*_g2")):
        summary = read_summary(run_dir)
        if summary["status"] != "ok":
            continue
        sim = summary["simulation"]
        assert sim["step_overhead_s"] > 0 and "Trainer" in sim["step_overhead_note"], run_dir.name
        assert len(sim["overhead_s_per_worker"]) == 2 and all(o >= sim["step_overhead_s"] * 0.999
                                                                for o in sim["overhead_s_per_worker"])
        for busy, overhead, idle in zip(sim["busy_s_per_worker"], sim["overhead_s_per_worker"], sim["idle_s_per_worker"]):
            assert busy + overhead + idle == pytest.approx(sim["step_s"], rel=1e-6, abs=1e-12), run_dir.name


@pytest.mark.slow  # three runs, ~25 s
def test_runs_that_name_one_profile_file_share_it_and_another_workload_is_refused(tmp_path):
    profile = tmp_path / "shared" / "profile.json"
    ids = []
    for gpus in (2, 4):
        run_dir = tmp_path / f"dp{gpus}"
        result = run_cli(["algorithm=data_parallel", f"gpus={gpus}", "simulate=true", *TINY, f"simulator.profile={profile}",
                          f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        sim = read_summary(run_dir)["simulation"]
        assert sim["profile"]["kept_in"] == str(profile) and not (run_dir / "simulator").exists()
        ids.append((sim["profile"]["id"], sim["reference_step_s"]))
    assert ids[0] == ids[1]
    result = run_cli(["algorithm=data_parallel", "gpus=2", "batch_size=16", "simulate=true", *TINY,
                      f"simulator.profile={profile}", f"hydra.run.dir={tmp_path / 'other'}"], cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "another workload" in lines[0] and "batch_size" in lines[0], lines


def test_a_named_profile_that_cannot_be_read_is_one_error_line(tmp_path):
    damaged = tmp_path / "profile.json"
    damaged.write_text("{not a profile")
    result = run_cli(["simulate=true", *TINY, f"simulator.profile={damaged}", f"hydra.run.dir={tmp_path / 'run'}"],
                     cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "cannot be read" in lines[0] and str(damaged) in lines[0] and damaged.read_text() == "{not a profile"


def test_simulated_runs_are_not_limited_by_the_cores(tmp_path):
    # 64 workers of data parallelism on a 2-core machine: refused for training (worker_limit), fine simulated
    run_dir = tmp_path / "dp64"
    result = run_cli(["algorithm=data_parallel", "gpus=64", "batch_size=64", "simulate=true", *TINY,
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "oversubscribed" not in result.stdout
    sim = read_summary(run_dir)["simulation"]
    assert len(sim["busy_s_per_worker"]) == 64 and len(sim["overhead_s_per_worker"]) == 64
    assert (run_dir / "simulator").is_dir()  # a single run keeps its own profile


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


@pytest.mark.slow  # four simulated points, ~30 s
def test_a_sweep_over_seeds_and_learning_rates_is_simulated_from_one_profile(tmp_path):
    # The seed and the learning rate change values, not costs: one profile, one reference step.
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "algorithm=ddg", "gpus=2", "seed=0,1", "optimizer.lr=0.001,0.003", "simulate=true", *TINY,
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    simulations = [read_summary(run_dir)["simulation"] for run_dir in sorted(sweep.glob("*_ddg_g2"))]
    assert len(simulations) == 4
    assert len({(s["profile"]["id"], s["profile"]["kept_in"], s["reference_step_s"], s["step_s"])
                for s in simulations}) == 1
