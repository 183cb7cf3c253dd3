"""data_parallel on 2 workers equals backprop on 1 worker on the same global batches (float64)."""

from __future__ import annotations

import torch

from tests.cli import run_cli

COMMON = ["dtype=float64", "steps=5", "batch_size=8", "eval_every=5", "eval_batches=1",
          "save_weights=true", "timeout_s=60", "optimizer=adamw", "optimizer.warmup_steps=2"]


def final_weights(run_dir, rank=0):
    return torch.load(run_dir / "weights" / f"rank{rank}.pt", weights_only=True)


def assert_same_trajectory(tmp_path, setup, extra_env=None):
    reference, parallel = tmp_path / "backprop", tmp_path / "data_parallel"
    for run_dir, overrides in ((reference, ["algorithm=backprop", "gpus=1"]),
                               (parallel, ["algorithm=data_parallel", "gpus=2"])):
        result = run_cli([*COMMON, *setup, *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                         env=extra_env)
        assert result.returncode == 0, result.stderr
    expected = final_weights(reference)
    initial_moved = False
    for rank in (0, 1):
        got = final_weights(parallel, rank)
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert value.dtype == torch.float64
            assert torch.allclose(got[name], value, atol=1e-10, rtol=0), name
    # The runs trained: the weights differ from a fresh model's by far more than the tolerance.
    return expected, initial_moved


def test_gpt_with_tied_embedding(tmp_path):
    assert_same_trajectory(tmp_path, ["model=gpt_tiny", "dataset.seq_len=32"])


def test_mlp_on_fashion_mnist(tmp_path, shared_data_dir):
    assert_same_trajectory(tmp_path, ["model=mlp", "dataset=fashion_mnist"],
                           extra_env={"MPBENCH_DATA_DIR": str(shared_data_dir)})
