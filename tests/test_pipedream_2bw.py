"""PipeDream-2BW's update rule, w(t+1) = w(t) - lr grad f_{x(t)}(w(t-1)) (algorithms/stale_gradient/
pipedream_2bw.py), in one process against hand computations: the version policy on a stack of
affine maps, the degenerate single stage (backprop, bit for bit), checkpoints, and a run."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from algorithms.backprop import Backprop
from algorithms.stale_gradient.pipedream_2bw import PipeDream2BW, PipeDream2BWSettings
from models import build_model
from models.gpt import GPTSettings
from mpbench.algorithm import BuildContext, NoSettings
from mpbench.config import OptimizerSpec
from mpbench.data.base import DataInfo
from tests.cli import TINY, merged_weights, read_metrics, read_summary, run_cli, run_to_completion
from tests.test_stale_gradient_rules import analytic_gradients, linear_model, one_worker

SGD = OptimizerSpec(name="sgd", lr=0.05)
ADAM = OptimizerSpec(name="adam", lr=0.01)


def two_bw(model, optimizer, stages, microbatches=None, example=None):
    settings = PipeDream2BWSettings(stages=stages, microbatches=microbatches, runtime="emulated")
    return PipeDream2BW(BuildContext(model, one_worker(), optimizer, settings, example))


def batches(n, rows=8):
    torch.manual_seed(1)
    return [(torch.randn(rows, 5, dtype=torch.float64), torch.randint(0, 3, (rows,))) for _ in range(n)]


@pytest.mark.parametrize("stages, microbatches", [(2, 2), (3, 4), (4, None)])
def test_every_update_applies_the_gradient_taken_at_the_version_before(stages, microbatches):
    """2BW §3.1: batch t runs at w(t-1) (w(0) for the first), its gradient is applied to w(t)."""
    model = linear_model([5, 4, 4, 4, 3][:stages] + [3])
    algorithm = two_bw(model, SGD, stages, microbatches)
    versions = [[(b.weight.detach().clone(), b.bias.detach().clone()) for b in model.blocks]]
    for t, (x, y) in enumerate(batches(6)):
        algorithm.train_step(x, y, SGD.lr)
        ran_at = versions[max(t - 1, 0)]
        expected = [(W - SGD.lr * gW, b - SGD.lr * gb)
                    for (W, b), (gW, gb) in zip(versions[t], analytic_gradients(ran_at, x, y))]
        for block, (W, b) in zip(model.blocks, expected):
            torch.testing.assert_close(block.weight, W, rtol=0, atol=1e-13)
            torch.testing.assert_close(block.bias, b, rtol=0, atol=1e-13)
        versions.append([(b.weight.detach().clone(), b.bias.detach().clone()) for b in model.blocks])
    # A fresh gradient would differ: the rule is not backprop's.
    assert algorithm.facts()["version_delay"] == 1 and algorithm.facts()["weight_versions"] == 2


def _gpt():
    torch.manual_seed(0)
    info = DataInfo("chars", "lm", (8,), vocab_size=13, unit="char")
    return build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=16, context=8), info).double()


def _tokens(n):
    g = torch.Generator().manual_seed(2)
    return [(torch.randint(0, 13, (4, 8), generator=g), torch.randint(0, 13, (4, 8), generator=g)) for _ in range(n)]


def test_one_stage_is_backprop_bit_for_bit():
    model = _gpt()
    mine, reference = two_bw(copy.deepcopy(model), ADAM, stages=1, microbatches=1), \
        Backprop(BuildContext(copy.deepcopy(model), one_worker(), ADAM, NoSettings(), None))
    for x, y in _tokens(4):
        assert mine.train_step(x, y, ADAM.lr) == reference.train_step(x, y, ADAM.lr)
    for (name, a), b in zip(mine.model.state_dict().items(), reference.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_one_stage_of_several_microbatches_is_backprop_with_gradient_accumulation():
    model = linear_model([5, 4, 3])
    algorithm = two_bw(model, SGD, stages=1, microbatches=4)
    for x, y in batches(3):
        before = [(b.weight.detach().clone(), b.bias.detach().clone()) for b in model.blocks]
        algorithm.train_step(x, y, SGD.lr)
        for block, (W, b), (gW, gb) in zip(model.blocks, before, analytic_gradients(before, x, y)):
            torch.testing.assert_close(block.weight, W - SGD.lr * gW, rtol=0, atol=1e-13)
            torch.testing.assert_close(block.bias, b - SGD.lr * gb, rtol=0, atol=1e-13)


def test_a_checkpoint_continues_exactly():
    data = _tokens(6)
    whole = two_bw(_gpt(), ADAM, stages=2, microbatches=2)
    for x, y in data:
        whole.train_step(x, y, ADAM.lr)
    first = two_bw(_gpt(), ADAM, stages=2, microbatches=2)
    for x, y in data[:3]:
        first.train_step(x, y, ADAM.lr)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = two_bw(_gpt(), ADAM, stages=2, microbatches=2)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    for x, y in data[3:]:
        resumed.train_step(x, y, ADAM.lr)
    for (name, a), b in zip(resumed.model.state_dict().items(), whole.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_run_through_run_py_records_the_rule(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "algorithm=pipedream_2bw", "algorithm.stages=4", "algorithm.runtime=emulated",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "ok"
    assert summary["algorithm_facts_per_worker"][0] == {"stages": 4, "microbatches": 4, "version_delay": 1,
                                                        "weight_versions": 2, "runtime": "emulated"}


# The workers (runtime=distributed: stage s on worker s, 1F1B never flushed) through run.py, float64.

WORKERS = ["dtype=float64", "steps=8", "batch_size=8", "eval_batches=1", "save_weights=true", "timeout_s=60",
           "model=gpt_tiny", "dataset.seq_len=16", "algorithm=pipedream_2bw"]


@pytest.mark.slow
@pytest.mark.parametrize("stages, extra", [
    (2, ["algorithm.microbatches=2", "eval_every=8", "optimizer=adamw", "optimizer.warmup_steps=2"]),
    (3, ["algorithm.microbatches=4", "eval_every=8", "optimizer=adamw", "optimizer.clip_norm=0.05"]),
    # evaluations every 3 steps finish the batch in flight and refill the pipeline
    (4, ["algorithm.microbatches=4", "eval_every=3", "optimizer=sgd", "optimizer.lr=0.5", "optimizer.momentum=0.9"]),
])
def test_the_workers_take_the_emulations_updates(stages, extra, tmp_path, shared_data_dir):
    env = {"MPBENCH_DATA_DIR": str(shared_data_dir)}
    emulated = run_to_completion(tmp_path, "emulated", [*WORKERS, *extra, "gpus=1", "algorithm.runtime=emulated",
                                                        f"algorithm.stages={stages}"], env)
    workers = run_to_completion(tmp_path, "workers", [*WORKERS, *extra, f"gpus={stages}"], env)
    reference, got = merged_weights(emulated, 1), merged_weights(workers, stages)  # tied copies agree exactly
    assert got.keys() == reference.keys()
    worst = max((got[k] - reference[k]).abs().max().item() for k in reference)
    assert worst <= 1e-10, worst
    expected = [(r["step"], r["train_loss"], r.get("eval_loss")) for r in read_metrics(emulated)]
    for (step, train, evaluation), row in zip(expected, read_metrics(workers)):
        assert row["step"] == step and row["train_loss"] == pytest.approx(train, abs=1e-10)
        assert row.get("eval_loss") == (None if evaluation is None else pytest.approx(evaluation, abs=1e-10))
    facts = read_summary(workers)["algorithm_facts_per_worker"]
    assert [f["backward_lag"] for f in facts] == list(range(stages - 1, -1, -1))
