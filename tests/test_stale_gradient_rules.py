"""The update rule of the stale-gradient family, checked in one process against hand computations
(docs/algorithms/stale_gradient.md §1, §3, §4 and §7: the delay map, the tied tensor,
the start-up and clipping rules).

Both single-process engines are checked: the FIFO of gradient blocks (`runtime=emulated`, S) and
the serialised per-module loop that the distributed workers run (every module on one worker).
After `train_step`, a parameter's `.grad` is the gradient its optimizer applied (None: no step).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.stale_gradient.family import StaleGradientSettings
from algorithms.stale_gradient.gradient_fifo import GradientFifo
from algorithms.stale_gradient.worker_loop import DecoupledBackprop
from models import build_model
from models.gpt import GPTSettings
from mpbench.algorithm import BuildContext, Worker
from mpbench.blocks import BlockModel
from mpbench.config import OptimizerSpec
from mpbench.data.base import DataInfo
from mpbench.transport import Transport

SGD = OptimizerSpec(name="sgd", lr=0.05)


def one_worker() -> Worker:
    return Worker(0, 1, torch.device("cpu"), torch.float64, Transport(0, 1, timeout_s=10))


def engines(model: BlockModel, K: int, optimizer: OptimizerSpec, example: torch.Tensor, semantics="S"):
    """The two single-process engines on identical copies of `model`: the FIFO of gradient blocks
    (what runtime=emulated runs for S) and the workers' loop with every module on one worker."""
    settings = StaleGradientSettings(semantics=semantics, modules=K, runtime="emulated")

    def context():
        return BuildContext(copy.deepcopy(model), one_worker(), optimizer, settings, example)
    fifo = DecoupledBackprop.create(context())
    assert isinstance(fifo, GradientFifo) == (semantics == "S")  # H and R: the serialised loop
    serial = DecoupledBackprop(context())
    return {"fifo": (fifo, fifo.model), "serialised": (serial, serial.model)}


def linear_model(widths: list[int]) -> BlockModel:
    torch.manual_seed(0)
    return BlockModel([nn.Linear(a, b) for a, b in zip(widths, widths[1:])], task="classification").double()


def analytic_gradients(weights: list[tuple[torch.Tensor, torch.Tensor]], x, y):
    """dL/dW_k and dL/db_k of the mean cross-entropy of a stack of affine maps, by hand."""
    activations = [x]
    for W, b in weights:
        activations.append(activations[-1] @ W.T + b)
    delta = (torch.softmax(activations[-1], dim=1) - F.one_hot(y, activations[-1].size(1))) / len(y)
    grads = [None] * len(weights)
    for k in reversed(range(len(weights))):
        grads[k] = (delta.T @ activations[k], delta.sum(0))
        delta = delta @ weights[k][0]
    return grads


@pytest.mark.parametrize("engine", ["fifo", "serialised"])
@pytest.mark.parametrize("K", [2, 3, 4])
def test_module_k_applies_the_gradient_of_batch_t_minus_K_plus_k(engine, K):
    """Spec §11 c: g_k^t = grad_{w_k} f_{x(t-K+k)}(w^{t-K+k}) (1-based k), no step before."""
    torch.manual_seed(1)
    batches = [(torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))) for _ in range(7)]
    algorithm, model = engines(linear_model([5, 4, 4, 4, 3][:K] + [3]), K, SGD, batches[0][0])[engine]
    history = []
    for t, (x, y) in enumerate(batches):
        history.append([(b.weight.detach().clone(), b.bias.detach().clone()) for b in model.blocks])
        algorithm.train_step(x, y, SGD.lr)
        for k, block in enumerate(model.blocks):  # 0-based k: batch s = t - (K-1-k)
            s = t - (K - 1 - k)
            if s < 0:
                assert block.weight.grad is None and block.bias.grad is None
                assert torch.equal(block.weight, history[0][k][0])  # no step yet
                continue
            dW, db = analytic_gradients(history[s], *batches[s])[k]
            assert (block.weight.grad - dW).abs().max() < 1e-12 and (block.bias.grad - db).abs().max() < 1e-12


def tiny_gpt() -> BlockModel:
    torch.manual_seed(0)
    info = DataInfo("toy", "lm", (8,), vocab_size=11, unit="char")
    return build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=16, context=8), info).double()


def tie_parts(model: BlockModel, state: dict, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """(output-projection part, input-lookup part) of V's gradient, on an untied copy."""
    untied = copy.deepcopy(model)
    untied.load_state_dict(state)
    head = untied.blocks[-1]
    head.proj.weight = nn.Parameter(head.proj.weight.detach().clone())
    loss = untied.loss(untied(x), y)
    out_part, in_part = torch.autograd.grad(loss, [head.proj.weight, untied.blocks[0].token.weight])
    return out_part, in_part


@pytest.mark.parametrize("engine", ["fifo", "serialised"])
@pytest.mark.parametrize("K", [2, 3])
def test_tied_gradient_is_fresh_output_part_plus_stale_input_part(engine, K):
    """Spec §11 d: g_V^t = out-part of batch t at w^t + in-part of batch t-K+1 at w^{t-K+1}."""
    batches = [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(6)]
    algorithm, model = engines(tiny_gpt(), K, SGD, batches[0][0])[engine]
    V = model.blocks[0].token.weight
    assert V is model.blocks[-1].proj.weight  # one tensor, one optimizer
    history = []
    for t, (x, y) in enumerate(batches):
        history.append(copy.deepcopy(model.state_dict()))
        algorithm.train_step(x, y, SGD.lr)
        expected = tie_parts(model, history[t], x, y)[0]
        if t >= K - 1:
            expected = expected + tie_parts(model, history[t - K + 1], *batches[t - K + 1])[1]
        assert (V.grad - expected).abs().max() < 1e-12


def test_no_module_steps_before_its_first_gradient():
    """Spec §4.1: no zero-gradient steps, so Adam's step count and weight decay do not move."""
    adamw = OptimizerSpec(name="adamw", lr=0.01, weight_decay=0.1)
    K, T = 3, 5
    batches = [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(T)]
    algorithm, model = engines(tiny_gpt(), K, adamw, batches[0][0])["serialised"]
    first_layer = model.blocks[1].attn.qkv.weight  # module 0 (blocks 0-1), delay 2
    initial = first_layer.detach().clone()
    for t, (x, y) in enumerate(batches):
        algorithm.train_step(x, y, adamw.lr)
        if t < K - 1:
            assert torch.equal(first_layer, initial)
    optimizers = algorithm.optimizers.optimizers
    steps = {int(name[6:]): max(int(s["step"]) for s in opt.state.values())
             for name, opt in optimizers.items() if name.startswith("module")}
    assert steps == {k: T - (K - 1 - k) for k in range(K)}
    assert [int(s["step"]) for s in optimizers["tie:token_embedding"].state.values()] == [T]  # V: every step


def test_clipping_is_per_module_and_per_tied_tensor():
    clipped = OptimizerSpec(name="sgd", lr=0.05, clip_norm=1e-3)
    batches = [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(4)]
    algorithm, model = engines(tiny_gpt(), 3, clipped, batches[0][0])["serialised"]
    for x, y in batches:
        algorithm.train_step(x, y, clipped.lr)
    groups = algorithm.optimizers.clip_groups
    assert len(groups) == 3 + 1  # three modules' own parameters, and V
    norms = [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in g])).item() for g in groups]
    assert all(0.999e-3 < n <= 1e-3 for n in norms)  # every group was over the limit (torch adds eps 1e-6)
    total = torch.linalg.vector_norm(torch.tensor(norms)).item()
    assert total > 1.5e-3  # a global clip would have left less


def test_replay_restores_the_forward_rng_so_dropout_masks_match():
    """R with dropout and frozen weights (lr=0) gives the gradients S gives (docs/algorithms/stale_gradient.md §2)."""
    torch.manual_seed(0)
    info = DataInfo("toy", "lm", (8,), vocab_size=11, unit="char")
    model = build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=16, context=8, dropout=0.3), info).double()
    frozen = OptimizerSpec(name="sgd", lr=1e-300)  # lr must be positive; this one moves nothing
    batches = [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(4)]
    runs = {}
    for semantics in ("S", "R"):
        torch.manual_seed(5)
        algorithm = engines(model, 3, frozen, batches[0][0], semantics)["serialised"][0]
        grads = []
        for x, y in batches:
            algorithm.train_step(x, y, frozen.lr)
            grads.append([p.grad.clone() if p.grad is not None else None for p in algorithm.optimizers.params])
        runs[semantics] = grads
    for s_grads, r_grads in zip(runs["S"], runs["R"]):
        for a, b in zip(s_grads, r_grads):
            assert (a is None) == (b is None)
            if a is not None:
                assert (a - b).abs().max() < 1e-12



@pytest.mark.parametrize("engine,semantics", [("fifo", "S"), ("serialised", "S"), ("serialised", "R")])
def test_a_checkpoint_between_steps_continues_the_same_trajectory(engine, semantics):
    """A fresh engine loading the state saved after step 3 (through torch.save and a weights_only
    load) takes the same steps 4-6 as the uninterrupted one, bit for bit: the kept batches are
    rebuilt with their dropout masks, and the errors in flight and Adam's moments come back."""
    torch.manual_seed(0)
    info = DataInfo("toy", "lm", (8,), vocab_size=11, unit="char")
    model = build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=16, context=8, dropout=0.3), info).double()
    adam = OptimizerSpec(name="adam", lr=0.01)
    batches = [(torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))) for _ in range(6)]

    def fresh():
        return engines(copy.deepcopy(model), 3, adam, batches[0][0], semantics)[engine]

    def train(algorithm, steps):
        for x, y in steps:
            algorithm.train_step(x, y, adam.lr)

    (uninterrupted, reference), (first, _), (second, resumed) = fresh(), fresh(), fresh()
    torch.manual_seed(5)
    train(uninterrupted, batches)
    torch.manual_seed(5)
    train(first, batches[:3])
    saved, rng = io.BytesIO(), torch.get_rng_state()  # the trainer saves and restores the global RNG
    torch.save(first.state_dict(), saved)
    saved.seek(0)
    torch.manual_seed(123)  # rebuilding the kept batches must not depend on the global RNG
    second.load_state_dict(torch.load(saved, weights_only=True))
    torch.set_rng_state(rng)
    train(second, batches[3:])
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), reference.state_dict().values()))
    state = first.state_dict()  # the checkpoint did hold batches owed a backward
    if engine == "serialised":
        assert any(module["pending"] for module in state["modules"].values())
    else:
        assert any(state["queues"])


def test_replay_through_batchnorm_gives_the_stashed_gradients():
    """R on a model with BatchNorm: the replayed forward leaves the running statistics as they were
    without breaking the replayed graph (a resnet under features_replay failed on this), and with
    frozen weights its gradients are S's."""
    torch.manual_seed(0)

    def block(n_in, n_out):
        return nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU())

    model = BlockModel([block(6, 8), block(8, 8), block(8, 8), nn.Linear(8, 3)], task="classification").double()
    frozen = OptimizerSpec(name="sgd", lr=1e-300)
    batches = [(torch.randn(5, 6, dtype=torch.float64), torch.randint(0, 3, (5,))) for _ in range(4)]
    runs = {}
    for semantics in ("S", "R"):
        algorithm = engines(copy.deepcopy(model), 3, frozen, batches[0][0], semantics)["serialised"][0]
        grads = []
        for x, y in batches:
            algorithm.train_step(x, y, frozen.lr)
            grads.append([p.grad.clone() if p.grad is not None else None for p in algorithm.optimizers.params])
        runs[semantics] = (grads, [b.clone() for b in algorithm.model.buffers()])
    for s_grads, r_grads in zip(runs["S"][0], runs["R"][0]):
        for a, b in zip(s_grads, r_grads):
            assert (a is None) == (b is None)
            if a is not None:
                assert (a - b).abs().max() < 1e-12
    for s_stat, r_stat in zip(runs["S"][1], runs["R"][1]):  # each batch counted once in the statistics
        assert torch.equal(s_stat, r_stat)
