"""DiLoCo (algorithms/diloco.py, docs/algorithms/diloco.md): the rule against a hand computation,
the degenerate setting against data parallelism, checkpoints, and the workers (partitions x
replicas) against the one-process emulation in float64."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from algorithms.backprop import Backprop
from algorithms.diloco import DiLoCo, DiLoCoEmulation, DiLoCoSettings
from mpbench.algorithm import BuildContext, NoSettings
from mpbench.config import OptimizerSpec
from tests.cli import merged_weights, read_summary, run_cli, run_to_completion
from tests.test_stale_gradient_rules import analytic_gradients, linear_model, one_worker

SGD = OptimizerSpec(name="sgd", lr=0.1)
ADAM = OptimizerSpec(name="adamw", lr=0.01, weight_decay=0.1)


def emulation(model, optimizer, **settings):
    settings = DiLoCoSettings(runtime="emulated", **settings)
    return DiLoCo.create(BuildContext(model, one_worker(), optimizer, settings, None))


def batches(n, rows=8):
    torch.manual_seed(1)
    return [(torch.randn(rows, 5, dtype=torch.float64), torch.randint(0, 3, (rows,))) for _ in range(n)]


def weights(model):
    return [(b.weight.detach().clone(), b.bias.detach().clone()) for b in model.blocks]


@pytest.mark.parametrize("nesterov", [True, False])
def test_replicas_step_alone_and_the_outer_step_moves_theta_every_H_steps(nesterov):
    """DiLoCo Alg. 1 by hand: R=2 replicas, H=3 inner SGD steps on their shards, then
    Delta = theta - mean(theta_r) and one outer SGD step with (Nesterov) momentum."""
    H, R, outer_lr, mu = 3, 2, 0.7, 0.5
    model = linear_model([5, 4, 3])
    algorithm = emulation(model, SGD, replicas=R, inner_steps=H, outer_lr=outer_lr, outer_momentum=mu,
                          outer_nesterov=nesterov)
    theta = weights(model)
    local = [weights(model) for _ in range(R)]
    momentum = None
    for t, (x, y) in enumerate(batches(7), start=1):
        for r in range(R):
            shard = slice(r * len(y) // R, (r + 1) * len(y) // R)
            grads = analytic_gradients(local[r], x[shard], y[shard])
            local[r] = [(W - SGD.lr * gW, b - SGD.lr * gb) for (W, b), (gW, gb) in zip(local[r], grads)]
        algorithm.train_step(x, y, SGD.lr)
        if t % H == 0:
            delta = [[th - sum(loc[i][j] for loc in local) / R for j, th in enumerate(pair)]
                     for i, pair in enumerate(theta)]
            momentum = delta if momentum is None else [[mu * m + d for m, d in zip(ms, ds)]
                                                       for ms, ds in zip(momentum, delta)]
            step = [[d + mu * m for d, m in zip(ds, ms)] for ds, ms in zip(delta, momentum)] if nesterov else momentum
            theta = [tuple(th - outer_lr * s for th, s in zip(pair, steps)) for pair, steps in zip(theta, step)]
            local = [list(theta) for _ in range(R)]
        recorded = algorithm.model_state()  # theta, also between synchronisations
        for i, (W, b) in enumerate(theta):
            torch.testing.assert_close(recorded[f"blocks.{i}.weight"], W, rtol=0, atol=1e-13)
            torch.testing.assert_close(recorded[f"blocks.{i}.bias"], b, rtol=0, atol=1e-13)
        for replica, mine in zip(algorithm.replicas, local):
            for block, (W, b) in zip(replica.blocks, mine):
                torch.testing.assert_close(block.weight, W, rtol=0, atol=1e-13)
    assert algorithm.facts()["inner_steps"] == H


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_one_inner_step_and_an_outer_step_of_one_is_data_parallel(momentum):
    """H=1, outer SGD lr 1 without momentum: theta = the replicas' average after one step. With
    an inner optimizer linear in the gradient that is the step of the averaged gradient:
    data_parallel's, which equals backprop's (up to rounding: parameters, not gradients, are averaged)."""
    inner = OptimizerSpec(name="sgd", lr=0.1, momentum=momentum, weight_decay=0.01)
    model = linear_model([5, 4, 4, 3])
    mine = emulation(copy.deepcopy(model), inner, replicas=4, inner_steps=1, outer_lr=1.0, outer_momentum=0.0,
                     outer_nesterov=False)
    reference = Backprop(BuildContext(copy.deepcopy(model), one_worker(), inner, NoSettings(), None))
    for x, y in batches(5):
        assert mine.train_step(x, y, inner.lr).mean == pytest.approx(reference.train_step(x, y, inner.lr).mean,
                                                                      abs=1e-12)
    for (name, a), b in zip(mine.model.state_dict().items(), reference.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13, msg=name)


def test_adam_replicas_are_not_data_parallel_even_at_H_1():
    """Each replica's Adam normalises its own shard's gradient: the average of R Adam steps is not
    the Adam step of the averaged gradient, so DiLoCo differs from data_parallel with Adam."""
    model = linear_model([5, 4, 3])
    mine = emulation(copy.deepcopy(model), ADAM, replicas=2, inner_steps=1, outer_lr=1.0, outer_momentum=0.0,
                     outer_nesterov=False)
    reference = Backprop(BuildContext(copy.deepcopy(model), one_worker(), ADAM, NoSettings(), None))
    for x, y in batches(3):
        mine.train_step(x, y, ADAM.lr), reference.train_step(x, y, ADAM.lr)
    worst = max((a - b).abs().max().item() for a, b in zip(mine.model.state_dict().values(),
                                                          reference.model.state_dict().values()))
    assert worst > 1e-6


def test_a_checkpoint_between_synchronisations_continues_exactly():
    data = batches(8)

    def fresh():
        return emulation(linear_model([5, 4, 3]), ADAM, replicas=2, inner_steps=3)
    whole = fresh()
    for x, y in data:
        whole.train_step(x, y, ADAM.lr)
    first = fresh()
    for x, y in data[:4]:  # one synchronisation (step 3) and one step into the next round
        first.train_step(x, y, ADAM.lr)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = fresh()
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    for x, y in data[4:]:
        resumed.train_step(x, y, ADAM.lr)
    for name, value in whole.model_state().items():
        assert torch.equal(resumed.model_state()[name], value), name
    for a, b in zip(whole.replicas, resumed.replicas):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_the_emulation_is_chosen_by_runtime():
    algorithm = emulation(linear_model([5, 3]), SGD, replicas=2)
    assert isinstance(algorithm, DiLoCoEmulation) and algorithm.facts()["replicas"] == 2


# The workers through run.py, float64 (real processes).

COMMON = ["dtype=float64", "steps=6", "batch_size=8", "eval_every=3", "eval_batches=1", "save_weights=true",
          "timeout_s=60", "model=gpt_tiny", "dataset.seq_len=16", "optimizer=adamw", "optimizer.warmup_steps=2",
          "algorithm=diloco", "algorithm.inner_steps=2", "algorithm.microbatches=2"]


def assert_same_model(reference_dir, run_dir, workers, tolerance=1e-10):
    reference, got = merged_weights(reference_dir, 1), merged_weights(run_dir, workers)
    assert got.keys() == reference.keys()
    worst = max((got[k] - reference[k]).abs().max().item() for k in reference)
    assert worst <= tolerance, worst
    expected, final = read_summary(reference_dir)["final"], read_summary(run_dir)["final"]
    for metric, value in expected.items():
        assert final[metric] == pytest.approx(value, abs=tolerance), metric


@pytest.mark.slow
@pytest.mark.parametrize("partitions,replicas", [(1, 2), (2, 2)])
def test_the_workers_take_the_emulations_updates(partitions, replicas, tmp_path, shared_data_dir):
    env = {"MPBENCH_DATA_DIR": str(shared_data_dir)}
    reference = run_to_completion(tmp_path, "emulated", [*COMMON, "gpus=1", "algorithm.runtime=emulated",
                                                         f"algorithm.replicas={replicas}"], env)
    workers = partitions * replicas
    run_dir = run_to_completion(tmp_path, "workers", [*COMMON, f"gpus={workers}",
                                                      f"algorithm.partitions={partitions}"], env)
    assert_same_model(reference, run_dir, workers)
    summary = read_summary(run_dir)
    facts = summary["algorithm_facts_per_worker"]
    assert [f["replicas"] for f in facts] == [replicas] * workers
    # Communication: 3 synchronisations (steps 2, 4, 6), each a ring all-reduce of the worker's
    # parameters over the replicas; no gradient is exchanged between replicas.
    for f, sent in zip(facts, summary["bytes_sent_per_worker"]):
        ring = 2 * (replicas - 1) * f["sync_payload_bytes"] // replicas
        assert f["sync_bytes_per_step"] == pytest.approx(ring / 2)
        assert sent - f["pipeline_bytes_sent"] >= 3 * ring  # plus the tied tensor's parts within a pipeline
        if partitions == 1:
            assert sent == 3 * ring


@pytest.mark.slow
def test_one_inner_step_with_an_outer_sgd_step_of_one_is_data_parallel_on_workers(tmp_path, shared_data_dir):
    env = {"MPBENCH_DATA_DIR": str(shared_data_dir)}
    sgd = ["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.lr=0.1"]
    common = [c for c in COMMON if not c.startswith(("optimizer", "algorithm"))] + sgd
    reference = run_to_completion(tmp_path, "dp", [*common, "algorithm=data_parallel", "gpus=2"], env)
    run_dir = run_to_completion(tmp_path, "diloco", [*common, "algorithm=diloco", "gpus=2", "algorithm.inner_steps=1",
                                                     "algorithm.outer_lr=1", "algorithm.outer_momentum=0",
                                                     "algorithm.outer_nesterov=false", "algorithm.microbatches=1"], env)
    a, b = merged_weights(reference, 2), merged_weights(run_dir, 2)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-12
