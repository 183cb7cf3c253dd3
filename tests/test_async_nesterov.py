"""`async_nesterov` (algorithms/stale_gradient/async_nesterov.py): ddg's delayed gradients with the
delay-corrected Nesterov step of Ajanthan et al. (2025, eq. 10), against a hand computation in both
one-process engines; the correction switched off is ddg bit for bit; the Adam form is NAdam;
checkpoints; and the workers against the emulation through run.py (float64)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from algorithms.stale_gradient.async_nesterov import AsyncNesterovSettings
from algorithms.stale_gradient.family import StaleGradientSettings
from algorithms.stale_gradient.worker_loop import DecoupledBackprop
from mpbench.algorithm import BuildContext
from mpbench.config import OptimizerSpec
from tests.cli import merged_weights, read_summary, run_to_completion
from tests.test_stale_gradient_rules import analytic_gradients, linear_model, one_worker, tiny_gpt

SGD = OptimizerSpec(name="sgd", lr=0.05)
ADAM = OptimizerSpec(name="adamw", lr=0.01, weight_decay=0.1)


def engines(model, settings, optimizer, example):
    """The FIFO of gradient blocks (runtime=emulated) and the workers' loop with every module on
    one worker, on copies of `model`."""
    def context():
        return BuildContext(copy.deepcopy(model), one_worker(), optimizer, settings, example)
    fifo, serial = DecoupledBackprop.create(context()), DecoupledBackprop(context())
    return {"fifo": fifo, "serialised": serial}


def batches(n, rows=6):
    torch.manual_seed(1)
    return [(torch.randn(rows, 5, dtype=torch.float64), torch.randint(0, 3, (rows,))) for _ in range(n)]


@pytest.mark.parametrize("engine", ["fifo", "serialised"])
@pytest.mark.parametrize("K", [2, 3])
def test_each_module_takes_the_damped_nesterov_step_of_its_delayed_gradient(engine, K):
    """Eq. 10 in look-ahead coordinates, by hand: module k (0-based) gets g = the gradient of
    batch s = t-(K-1-k) at the weights of iteration s; b <- gamma b + g; y <- y - lr (1-gamma) (g + gamma b)."""
    gamma = 0.6
    settings = AsyncNesterovSettings(modules=K, runtime="emulated", momentum=gamma)
    data = batches(7)
    model = linear_model([5, 4, 4, 3][:K] + [3])
    algorithm = engines(model, settings, SGD, data[0][0])[engine]
    blocks = algorithm.model.blocks
    history = []
    buffers = [None] * K
    expected = [(b.weight.detach().clone(), b.bias.detach().clone()) for b in blocks]
    for t, (x, y) in enumerate(data):
        history.append([(W.clone(), b.clone()) for W, b in expected])
        algorithm.train_step(x, y, SGD.lr)
        for k in range(K):
            s = t - (K - 1 - k)
            if s < 0:
                continue  # no gradient yet: no step
            g = analytic_gradients(history[s], *data[s])[k]
            buffers[k] = g if buffers[k] is None else tuple(gamma * b + gi for b, gi in zip(buffers[k], g))
            expected[k] = tuple(w - SGD.lr * (1 - gamma) * (gi + gamma * b)
                                for w, gi, b in zip(expected[k], g, buffers[k]))
        for block, (W, b) in zip(blocks, expected):
            torch.testing.assert_close(block.weight, W, rtol=0, atol=1e-13)
            torch.testing.assert_close(block.bias, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("engine", ["fifo", "serialised"])
@pytest.mark.parametrize("momentum, betas", [(None, (0.9, 0.999)), (0.99, (0.99, 0.999))])
def test_without_the_correction_it_is_ddg_bit_for_bit(engine, momentum, betas):
    """correction=false: the run's optimizer with beta1 = gamma on the same delayed gradients."""
    model, data = tiny_gpt(), [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(6)]
    mine = engines(model, AsyncNesterovSettings(modules=3, runtime="emulated", correction=False, momentum=momentum),
                   ADAM, data[0][0])[engine]
    ddg_adam = OptimizerSpec(name="adamw", lr=ADAM.lr, weight_decay=ADAM.weight_decay, betas=betas)
    reference = engines(model, StaleGradientSettings(modules=3, runtime="emulated"), ddg_adam, data[0][0])[engine]
    corrected = engines(model, AsyncNesterovSettings(modules=3, runtime="emulated", momentum=momentum),
                        ADAM, data[0][0])[engine]
    for x, y in data:
        assert mine.train_step(x, y, ADAM.lr) == reference.train_step(x, y, ADAM.lr)
        corrected.train_step(x, y, ADAM.lr)
    for (name, a), b in zip(mine.model.state_dict().items(), reference.model.state_dict().values()):
        assert torch.equal(a, b), name
    # ... and the correction does change the trajectory
    assert any(not torch.equal(a, b) for a, b in zip(corrected.model.state_dict().values(),
                                                     reference.model.state_dict().values()))


def test_the_adam_form_is_nadam_with_beta1_gamma():
    """One module (no delay): each step is torch's NAdam (decoupled weight decay for adamw) with
    beta1 = gamma, the optimizer the authors' code runs."""
    model = tiny_gpt()
    data = [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(4)]
    mine = engines(model, AsyncNesterovSettings(modules=1, runtime="emulated", momentum=0.95), ADAM, data[0][0])["fifo"]
    reference = copy.deepcopy(model)
    params = [p for p in reference.parameters()]
    nadam = torch.optim.NAdam([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                               {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                              lr=ADAM.lr, betas=(0.95, 0.999), decoupled_weight_decay=True)
    for x, y in data:
        mine.train_step(x, y, ADAM.lr)
        nadam.zero_grad()
        reference.loss(reference(x), y).backward()
        nadam.step()
    for (name, a), b in zip(mine.model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("engine", ["fifo", "serialised"])
def test_a_checkpoint_continues_exactly(engine):
    model = tiny_gpt()
    data = [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(6)]
    settings = AsyncNesterovSettings(modules=3, runtime="emulated")

    def fresh():
        return engines(model, settings, ADAM, data[0][0])[engine]
    whole, first, second = fresh(), fresh(), fresh()
    for x, y in data:
        whole.train_step(x, y, ADAM.lr)
    for x, y in data[:3]:
        first.train_step(x, y, ADAM.lr)
    saved = io.BytesIO()
    torch.save(first.state_dict(), saved)
    saved.seek(0)
    second.load_state_dict(torch.load(saved, weights_only=True))
    for x, y in data[3:]:
        second.train_step(x, y, ADAM.lr)
    for (name, a), b in zip(second.model.state_dict().items(), whole.model.state_dict().values()):
        assert torch.equal(a, b), name


# The workers through run.py (real processes).

COMMON = ["dtype=float64", "steps=8", "batch_size=8", "eval_every=4", "eval_batches=1", "save_weights=true",
          "timeout_s=60", "model=gpt_tiny", "dataset.seq_len=16", "algorithm=async_nesterov"]


@pytest.mark.slow
@pytest.mark.parametrize("K, optimizer", [(2, ["optimizer=adamw", "optimizer.warmup_steps=2"]),
                                          (3, ["optimizer=sgd", "optimizer.lr=0.1"])])
def test_the_workers_take_the_emulations_updates(K, optimizer, tmp_path, shared_data_dir):
    env = {"MPBENCH_DATA_DIR": str(shared_data_dir)}
    emulated = run_to_completion(tmp_path, "emulated", [*COMMON, *optimizer, "gpus=1", "algorithm.runtime=emulated",
                                                        f"algorithm.modules={K}"], env)
    workers = run_to_completion(tmp_path, "workers", [*COMMON, *optimizer, f"gpus={K}"], env)
    reference, got = merged_weights(emulated, 1), merged_weights(workers, K)
    assert got.keys() == reference.keys()
    worst = max((got[k] - reference[k]).abs().max().item() for k in reference)
    assert worst <= 1e-10, worst
    assert read_summary(workers)["final"]["eval_loss"] == pytest.approx(read_summary(emulated)["final"]["eval_loss"],
                                                                        abs=1e-10)
    facts = read_summary(workers)["algorithm_facts_per_worker"][0]
    delays = list(range(K - 1, -1, -1))
    assert (facts["correction"], facts["momentum"], facts["delay_of_module"]) == (True, 0.99, delays)
