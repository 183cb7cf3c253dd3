"""`optimizer.clip_norm` for the local-learning family, checked in float64 against hand computations.

What one norm covers (docs/algorithms/local_learning.md §10): each layer group's gradient (for DGL
the group and its auxiliary classifier together), and each tensor tied across groups; the local
modules' own Adam is not clipped. With one group it is `backprop`'s global clip, bit for bit.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from algorithms.backprop import Backprop
from algorithms.local_learning.dgl import DecoupledGreedy, DGLSettings
from algorithms.local_learning.dni import DNISettings, SyntheticGradients
from algorithms.local_learning.local_critic import LocalCritic, LocalCriticSettings
from models import build_model
from models.gpt import GPTSettings
from models.mlp import MLPSettings
from mpbench.algorithm import BuildContext, NoSettings, Worker
from mpbench.config import OptimizerSpec
from mpbench.data.base import DataInfo
from mpbench.transport import Transport
from tests.by_hand import critic_losses, dni_gradients

CLIP = 1e-3  # far below every gradient here, so every clip group is scaled
SGD = OptimizerSpec(name="sgd", lr=0.1, clip_norm=CLIP)
SETTINGS = {LocalCritic: LocalCriticSettings, DecoupledGreedy: DGLSettings, SyntheticGradients: DNISettings}


def cpu64() -> Worker:
    return Worker(0, 1, torch.device("cpu"), torch.float64, Transport(0, 1, timeout_s=10))


def mlp():
    torch.manual_seed(0)
    info = DataInfo("toy", "classification", (6,), num_classes=3)
    return build_model("mlp", MLPSettings(hidden=(5, 5, 5)), info).double(), torch.randn(8, 6, dtype=torch.float64)


def emulated(algorithm, model, example, N=3, optimizer=SGD, **settings):
    return algorithm(BuildContext(model, cpu64(), optimizer, SETTINGS[algorithm](groups=N, runtime="emulated",
                                                                             **settings), example))


def clipped(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """torch's clip_grad_norm_ by hand: scale by CLIP / (norm + 1e-6) when that is below 1."""
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, CLIP / (norm.item() + 1e-6))
    return [g * scale for g in grads]


def assert_applied(run, params, expected, before):
    """Each parameter's .grad is its clipped gradient and SGD moved it by lr times that."""
    for p, g, old in zip(params, expected, before):
        assert (p.grad - g).abs().max() < 1e-15
        assert (p.detach() - (old - SGD.lr * g)).abs().max() < 1e-15


def test_local_critic_clips_each_group_and_leaves_the_critics_alone():
    model, x = mlp()
    run = emulated(LocalCritic, model, x)
    y = torch.randint(0, 3, (8,))
    groups, critics = copy.deepcopy((run.groups, run.local_modules))
    before = [[p.detach().clone() for p in run.groups[i].parameters()] for i in range(3)]
    run.train_step(x, y, SGD.lr)
    l1, l2, l3 = critic_losses(groups, critics, x, y)
    for i, loss in enumerate((l1, l2, l3)):
        grads = torch.autograd.grad(loss.mean(), list(groups[i].parameters()), retain_graph=True)
        assert torch.sqrt(sum((g ** 2).sum() for g in grads)) > 10 * CLIP  # the clip is active
        assert_applied(run, list(run.groups[i].parameters()), clipped(grads), before[i])
    for i, (own, target) in enumerate(((l1, l2), (l2, l3))):  # critics: their plain gradient
        want = torch.autograd.grad((own - target.detach()).abs().mean(), list(critics[i].parameters()), retain_graph=True)
        assert all((p.grad - g).abs().max() < 1e-15 for p, g in zip(run.local_modules[i].parameters(), want))


def test_dgl_clips_each_group_with_its_auxiliary_classifier():
    model, x = mlp()
    run = emulated(DecoupledGreedy, model, x)
    y = torch.randint(0, 3, (8,))
    groups, heads = copy.deepcopy((run.groups, run.local_modules))
    parts = [[*run.groups[i].parameters(), *(run.local_modules[i].parameters() if i < 2 else [])] for i in range(3)]
    before = [[p.detach().clone() for p in params] for params in parts]
    run.train_step(x, y, SGD.lr)
    h1 = groups[0](x)
    h2 = groups[1](h1.detach())
    losses = [F.cross_entropy(heads[0](h1), y), F.cross_entropy(heads[1](h2), y), F.cross_entropy(groups[2](h2.detach()), y)]
    for i, loss in enumerate(losses):
        params = [*groups[i].parameters(), *(heads[i].parameters() if i < 2 else [])]
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        assert_applied(run, parts[i], clipped(grads), before[i])  # one norm over group and classifier


def test_dni_clips_each_group_and_leaves_the_synthesizers_alone():
    model, x = mlp()
    run = emulated(SyntheticGradients, model, x)
    for module in run.local_modules.values():
        torch.nn.init.normal_(module.out.weight)  # non-zero synthetic gradients
    y = torch.randint(0, 3, (8,))
    groups, modules = copy.deepcopy((run.groups, run.local_modules))
    before = [[p.detach().clone() for p in run.groups[i].parameters()] for i in range(3)]
    run.train_step(x, y, SGD.lr)
    grads, targets, _ = dni_gradients(groups, modules, x, y)
    for i in range(3):
        assert_applied(run, list(run.groups[i].parameters()), clipped(grads[i]), before[i])
    for i, (ghat, delta) in enumerate(targets):
        want = torch.autograd.grad((ghat - delta).pow(2).sum() / 8, list(modules[i].parameters()))
        assert all((p.grad - g).abs().max() < 1e-15 for p, g in zip(run.local_modules[i].parameters(), want))


def test_a_tensor_tied_across_groups_is_its_own_clip_group():
    """GPT's embedding is used by group 1 (lookup) and group 2 (output projection): its gradient
    is the sum of the two parts, clipped on its own; each group's other parameters by themselves."""
    torch.manual_seed(0)
    info = DataInfo("toy", "lm", (8,), vocab_size=11, unit="char")
    model = build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=16, context=8), info).double()
    x, y = torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8))
    run = emulated(LocalCritic, model, x, N=2)
    V = run.groups[0][0].token.weight
    assert V is run.groups[1][-1].proj.weight
    groups, critic = copy.deepcopy((run.groups, run.local_modules[0]))
    own = [[p for p in run.groups[i].parameters() if p is not V] for i in range(2)]
    before = [[p.detach().clone() for p in params] for params in own]
    v_before = V.detach().clone()
    run.train_step(x, y, SGD.lr)
    V0 = groups[0][0].token.weight  # the copy's tensor, shared by both copied groups
    h1 = groups[0](x)
    l1 = F.cross_entropy(critic(h1).reshape(-1, 11), y.reshape(-1), reduction="none").reshape(4, -1).mean(1)
    loss = F.cross_entropy(groups[1](h1.detach()).reshape(-1, 11), y.reshape(-1))
    for i, objective in enumerate((l1.mean(), loss)):
        params = [p for p in groups[i].parameters() if p is not V0]
        grads = torch.autograd.grad(objective, params + [V0], retain_graph=True)
        assert_applied(run, own[i], clipped(list(grads[:-1])), before[i])
        if i == 0:
            lookup_part = grads[-1]
        else:
            projection_part = grads[-1]
    (want,) = clipped([projection_part + lookup_part])
    assert_applied(run, [V], [want], [v_before])


@pytest.mark.parametrize("algorithm", [LocalCritic, DecoupledGreedy, SyntheticGradients])
def test_one_group_clips_like_backprop_bit_for_bit(algorithm):
    """N = 1: one clip group over every parameter, in the model's order: backprop's global clip."""
    model, x = mlp()
    adam = OptimizerSpec(name="adam", lr=1e-2, clip_norm=CLIP)
    reference = Backprop(BuildContext(copy.deepcopy(model), cpu64(), adam, NoSettings(), x))
    local = emulated(algorithm, copy.deepcopy(model), x, N=1, optimizer=adam)
    for y in torch.randint(0, 3, (4, 8), generator=torch.Generator().manual_seed(1)):
        reference.train_step(x, y, adam.lr)
        local.train_step(x, y, adam.lr)
    want, got = reference.model_state(), local.model_state()
    assert want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)
    unclipped = Backprop(BuildContext(copy.deepcopy(model), cpu64(), OptimizerSpec(name="adam", lr=1e-2), NoSettings(), x))
    for y in torch.randint(0, 3, (4, 8), generator=torch.Generator().manual_seed(1)):
        unclipped.train_step(x, y, adam.lr)
    assert any(not torch.equal(unclipped.model_state()[k], want[k]) for k in want)  # the clip mattered

