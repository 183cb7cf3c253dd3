"""Long sweeps survive faults: checkpoints and resume, preemption (SIGTERM), Ctrl-C (SIGINT).

- A run killed mid-way and started again with resume=true continues from its last checkpoint and
  ends with the uninterrupted run's weights and losses, bit for bit (float64; backprop,
  data_parallel, pipeline, local_critic, ddg, diloco, pipedream_2bw; hypar shares pipeline's state code, features_replay
  and ouroboros ddg's, and their one-process engines are checked in test_stale_gradient_rules.py).
- A multirun started again with resume=true leaves finished runs alone and re-runs the others.
- SIGTERM: the workers agree on a step, checkpoint there and exit; the run is `interrupted` and
  resumable. (Ctrl-C is tested in test_run.py.)
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mpbench.run_dirs import finished_ok, same_run
from tests.cli import (
    TINY,
    merged_weights,
    read_metrics,
    read_summary,
    run_cli,
    start,
    wait_for,
)

pytestmark = pytest.mark.slow  # real processes: CI runs it, `pytest -m "not slow"` skips it

EXACT = ["dtype=float64", "steps=8", "eval_every=4", "save_weights=true"]
ALGORITHMS = {"backprop": ["gpus=1"], "data_parallel": ["algorithm=data_parallel", "gpus=2"],
              "pipeline": ["algorithm=pipeline", "algorithm.schedule=1f1b", "gpus=2"],
              "local_critic": ["algorithm=local_critic", "gpus=2"],
              # dropout: the batches still owed a backward are rebuilt with their masks
              "ddg": ["algorithm=ddg", "model.dropout=0.1", "gpus=2"],
              # a checkpoint (step 3) between two synchronisations (steps 2 and 4)
              "diloco": ["algorithm=diloco", "algorithm.inner_steps=2", "algorithm.microbatches=2", "gpus=2"],
              # the checkpoint finishes the batch in flight first (stage 0 owes backwards between steps)
              "pipedream_2bw": ["algorithm=pipedream_2bw", "algorithm.microbatches=2", "gpus=2"]}


def losses(run_dir: Path) -> list:
    return [(r["step"], r["train_loss"], r.get("eval_loss")) for r in read_metrics(run_dir)]


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_killed_run_resumes_from_its_checkpoint_to_the_same_result(algorithm, tmp_path):
    setup = [*TINY, *EXACT, *ALGORITHMS[algorithm]]
    gpus = int(ALGORITHMS[algorithm][-1].split("=")[1])
    reference = tmp_path / "reference"
    assert run_cli([*setup, f"hydra.run.dir={reference}"], cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "run"
    killed = run_cli([*setup, "checkpoint_every=3", f"fault={{rank:{gpus - 1},step:5,kind:exit}}",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert killed.returncode == 1 and read_summary(run_dir)["status"] == "failed"
    assert (run_dir / "checkpoints" / "step3" / "complete").exists()
    resumed = run_cli([*setup, "checkpoint_every=3", "resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "from its checkpoint at step 3" in resumed.stdout
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["resumed_from_step"] == 3 and summary["steps_completed"] == 8
    want, got = merged_weights(reference, gpus), merged_weights(run_dir, gpus)
    assert want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert losses(run_dir) == losses(reference)  # the metrics of steps 1-3 came back with the checkpoint
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step6"]  # the latest only


def test_resumed_multirun_keeps_finished_runs_and_reruns_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    grid = ["-m", *TINY, "algorithm=backprop,data_parallel", "gpus=1", f"hydra.sweep.dir={sweep}"]
    assert run_cli(grid, cwd=tmp_path).returncode == 0
    finished, lost = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "summary.json").exists())
    kept = (finished / "summary.json").read_text()
    (lost / "summary.json").unlink()  # as if the machine died during that run
    again = run_cli([*grid, "resume=true"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (finished / "summary.json").read_text() == kept  # not run again
    assert f"resume: {finished} already finished ok" in again.stdout
    assert read_summary(lost)["status"] == "ok"
    assert "2 ok" in again.stdout  # the sweep's report lists both


def test_a_run_recorded_before_a_setting_existed_is_a_run_of_the_value_it_ran_with(tmp_path):
    """Upgrading the suite keeps finished runs: a config.yaml without simulator.profile_rows,
    worker_speed and profile (added later) is a run of its old behaviour, 256, 1 and null, and of
    no other value."""
    old = {"steps": 4, "simulator": {"link": "measured"}}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(old))
    now = {"link": "measured", "profile_rows": 256, "worker_speed": 1.0, "profile": None}
    assert same_run(tmp_path, {"steps": 4, "simulator": now})
    assert not same_run(tmp_path, {"steps": 4, "simulator": {**now, "profile": "shared.json"}})
    assert not same_run(tmp_path, {"steps": 4, "simulator": {**now, "profile_rows": 16}})
    assert not same_run(tmp_path, {"steps": 4, "simulator": {**now, "worker_speed": 32.0}})
    assert not same_run(tmp_path, {"steps": 5, "simulator": now})


def test_a_run_is_the_same_run_whatever_its_run_control_keys(tmp_path):
    """resume compares resolved configs without resume, fault, timeout_s, checkpoint_every and
    save_weights; anything else (here the learning rate) makes another run, which starts over."""
    config = {"steps": 4, "optimizer": {"lr": 0.1}, "resume": False, "fault": None, "timeout_s": 60}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(config))
    (tmp_path / "summary.json").write_text(json.dumps({"status": "ok"}))
    assert finished_ok(tmp_path, {**config, "resume": True, "fault": {"rank": 0}, "timeout_s": 9})
    assert not same_run(tmp_path, {**config, "optimizer": {"lr": 0.01}})
    (tmp_path / "summary.json").write_text(json.dumps({"status": "failed"}))
    assert same_run(tmp_path, config) and not finished_ok(tmp_path, config)
    (tmp_path / "summary.json").write_text("{ half a fi")
    assert not finished_ok(tmp_path, config)


LONG = [*TINY, "steps=200", "eval_every=2", "algorithm=data_parallel", "gpus=2"]


def test_sigterm_checkpoints_and_stops_then_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    process = start([*LONG, f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(run_dir / "metrics.jsonl", process)
    process.send_signal(signal.SIGTERM)  # to the launcher, as a scheduler's preemption notice
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    summary = read_summary(run_dir)
    assert "interrupted_at_step" in summary, summary
    step = summary["interrupted_at_step"]
    assert summary["status"] == "interrupted" and "resume=true" in summary["reason"]
    assert (run_dir / "checkpoints" / f"step{step}" / "complete").exists()
    resumed = run_cli([*LONG, "resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["resumed_from_step"] == step
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 201))
