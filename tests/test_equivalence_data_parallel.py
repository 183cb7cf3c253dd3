"""data_parallel on 2 workers equals backprop on 1 worker on the same global batches (float64)."""

from __future__ import annotations

import pytest

import torch

from tests.cli import run_cli

pytestmark = pytest.mark.slow  # real processes: CI runs it, `pytest -m "not slow"` skips it

COMMON = ["dtype=float64", "steps=5", "batch_size=8", "eval_every=5", "eval_batches=1",
          "save_weights=true", "timeout_s=60", "optimizer=adamw", "optimizer.warmup_steps=2"]


def final_weights(run_dir, rank=0):
    return torch.load(run_dir / "weights" / f"rank{rank}.pt", weights_only=True)


def train(tmp_path, name, overrides, env=None):
    run_dir = tmp_path / name
    result = run_cli([*COMMON, *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return run_dir


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def assert_same_trajectory(tmp_path, setup, env=None):
    reference = final_weights(train(tmp_path, "backprop", [*setup, "algorithm=backprop", "gpus=1"], env))
    parallel = train(tmp_path, "data_parallel", [*setup, "algorithm=data_parallel", "gpus=2"], env)
    assert all(v.dtype == torch.float64 for v in reference.values() if v.is_floating_point())
    for rank in (0, 1):  # both replicas
        assert max_difference(final_weights(parallel, rank), reference) <= 1e-10
    # The comparison can fail: one step fewer already moves the weights far beyond the tolerance.
    shorter = final_weights(train(tmp_path, "shorter", [*setup, "algorithm=backprop", "steps=4"], env))
    assert max_difference(shorter, reference) > 1e-6


def test_gpt_with_tied_embedding(tmp_path):
    assert_same_trajectory(tmp_path, ["model=gpt_tiny", "dataset.seq_len=32"])


def test_mlp_on_fashion_mnist(tmp_path, shared_data_dir):
    assert_same_trajectory(tmp_path, ["model=mlp", "dataset=fashion_mnist"],
                           env={"MPBENCH_DATA_DIR": str(shared_data_dir)})
