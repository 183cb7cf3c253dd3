"""`local_critic` and its baselines `critic_training` and `dgl` (docs/algorithms/local_learning.md §2-§4, §13),
float64 on CPU with gloo.

- The workers take the same updates as the one-process emulation of §4 (N = 2, 3; an MLP, a tiny
  CNN with BatchNorm, a GPT with a tied embedding).
- Loss topology, on the gradients themselves: a group learns only from its own critic (nothing from
  the group above), a critic only from the matching loss (no cross-entropy).
- The backward message is B floats per boundary; N = 1 is backprop.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from algorithms.local_learning.dgl import DecoupledGreedy, DGLSettings
from algorithms.local_learning.dni import DNISettings, SyntheticGradients
from algorithms.local_learning.exits import exit_metrics
from algorithms.local_learning.local_critic import LocalCritic, LocalCriticSettings
from algorithms.sub_model_backprop import SubModelBackprop, SubModelBackpropSettings
from models import build_model
from models.gpt import GPTSettings
from models.lc_vgg import LCVGGSettings
from models.mlp import MLPSettings
from mpbench.algorithm import BuildContext, Worker
from mpbench.config import OptimizerSpec
from mpbench.data.base import DataInfo
from mpbench.transport import Transport
from tests.by_hand import critic_losses, dni_gradients
from tests.cli import REPO, merged_weights, read_summary
from tests.cli import run_to_completion

COMMON = ["dtype=float64", "steps=8", "batch_size=8", "eval_every=4",
          "eval_batches=1", "save_weights=true", "timeout_s=60"]
MODELS = {
    "mlp": ["model=mlp", "model.hidden=[16,16,16]", "dataset=fashion_mnist"],
    "cnn": ["model=lc_vgg", "+model.width_divisor=16", "dataset=fashion_mnist", "optimizer=sgd"],
    "gpt": ["model=gpt_tiny", "dataset.seq_len=16"],
}


@pytest.fixture(scope="module")
def env(shared_data_dir):
    return {"MPBENCH_DATA_DIR": str(shared_data_dir)}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


PIPELINED = ("algorithm.pipelined=true", "algorithm.delay=2")
# LC at N = 2 and 3 on the MLP and the CNN, on GPT (tied embedding) at 2; the baselines at 3, with
# GPT's tie at N = 3 under critic training (and a one-block critic); both families pipelined.
CASES = [("local_critic", model, N, ()) for model in ("mlp", "cnn") for N in (2, 3)] + [
    ("local_critic", "gpt", 2, ()), ("critic_training", "mlp", 3, ()),
    ("critic_training", "gpt", 3, ("algorithm.critic_blocks=1",)), ("dgl", "mlp", 3, ()),
    ("local_critic", "mlp", 3, PIPELINED), ("dni", "mlp", 3, ()), ("dni", "gpt", 2, ()), ("dni", "cnn", 3, PIPELINED)]


def backward_bytes(algorithm: str, i: int, N: int, B: int, width: int) -> int:
    """Floats worker i sends backward per iteration: its per-sample losses to i-1 (cascade), from
    the last worker to every critic (critic training), none (DGL), its input gradient (DNI)."""
    if algorithm == "local_critic":
        return B if i > 0 else 0
    if algorithm == "critic_training":
        return B * (N - 1) if i == N - 1 else 0
    if algorithm == "dni":
        return B * width if i > 0 else 0
    return 0


@pytest.mark.slow
@pytest.mark.parametrize("algorithm,model,N,extra", CASES,
                         ids=[f"{a}-{m}-{n}{''.join('-' + o.split('.')[1].split('=')[0] for o in e[:1])}" for a, m, n, e in CASES])
def test_workers_equal_the_emulation(algorithm, model, N, extra, tmp_path, env):
    setup = [*COMMON, *MODELS[model], f"algorithm={algorithm}", *extra]
    emulated = run_to_completion(tmp_path, "emulated", [*setup, "gpus=1", "algorithm.runtime=emulated",
                                                f"algorithm.groups={N}"], env)
    distributed = run_to_completion(tmp_path, "distributed", [*setup, f"gpus={N}"], env)
    reference = merged_weights(emulated, 1)
    assert any(k.startswith(("critics.", "synthesizers.")) for k in reference)  # local modules compared too
    assert max_difference(merged_weights(distributed, N), reference) <= 1e-10
    final, expected = read_summary(distributed)["final"], read_summary(emulated)["final"]
    assert final["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-10)  # evaluation across workers
    if model == "mlp":  # per iteration: h_i forward (B x 16 float64) and the targets backward
        sent = read_summary(distributed)["bytes_sent_per_worker"]
        B, width, steps = 8, 16, 8
        expected = [steps * 8 * ((B * width if i < N - 1 else 0) + backward_bytes(algorithm, i, N, B, width))
                    for i in range(N)]
        assert sent == expected
    if algorithm != "dni" and model != "gpt":  # classifiers: sub-models, progressive inference, ensembles
        extras = ("sub_model_accuracy", "progressive_inference", "ensemble_accuracy")
        got = read_summary(distributed)["algorithm_facts_per_worker"][-1]
        want = read_summary(emulated)["algorithm_facts_per_worker"][0]
        assert all(got[k] == want[k] for k in extras) and len(got["sub_model_accuracy"]) == N - 1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp"])  # GPT's N=1 path is the same code; its K=1 is tested for ddg
def test_one_group_is_backprop_bit_for_bit(model, tmp_path, env):
    reference = merged_weights(run_to_completion(tmp_path, "backprop", [*COMMON, *MODELS[model], "algorithm=backprop",
                                                                "gpus=1"], env), 1)
    single = merged_weights(run_to_completion(tmp_path, "lc", [*COMMON, *MODELS[model], "algorithm=local_critic",
                                                       "gpus=1"], env), 1)
    assert all(torch.equal(single[k], reference[k]) for k in reference)


def toy_model():
    """A 3-class MLP of 4 blocks (seeded) and a batch of its inputs."""
    torch.manual_seed(0)
    info = DataInfo("toy", "classification", (6,), num_classes=3)
    return build_model("mlp", MLPSettings(hidden=(5, 5, 5)), info).double(), torch.randn(8, 6, dtype=torch.float64)


CPU64 = Worker(0, 1, torch.device("cpu"), torch.float64, Transport(0, 1, timeout_s=10))
SETTINGS = {LocalCritic: LocalCriticSettings, DecoupledGreedy: DGLSettings, SyntheticGradients: DNISettings}


def emulated(N: int, optimizer=OptimizerSpec(name="sgd", lr=0.1), algorithm=LocalCritic, **settings):
    """A one-process run of `algorithm` with N groups on the toy model, and a batch of inputs."""
    model, example = toy_model()
    algorithm_settings = SETTINGS[algorithm](groups=N, runtime="emulated", **settings)
    return algorithm(BuildContext(model, CPU64, optimizer, algorithm_settings, example)), example


def train_emulated(steps: int, algorithm=LocalCritic, N: int = 3, **settings):
    """`steps` Adam iterations on fixed batches; the run afterwards."""
    adam = OptimizerSpec(name="adam", lr=1e-2)
    run, x = emulated(N, adam, algorithm, **settings)
    labels = torch.randint(0, 3, (steps, 8), generator=torch.Generator().manual_seed(1))
    for y in labels:
        run.train_step(x, y, adam.lr)
    return run


@pytest.mark.parametrize("critic_target", ["next", "last", "none"])
def test_each_loss_reaches_only_its_own_parameters(critic_target):
    """§2 table, checked on gradients: group i < N from CE through critic i only; critic i from the
    matching loss only (to l_{i+1}; to l_N for critic training; DGL: from CE, jointly); group N
    from the true loss."""
    if critic_target == "none":  # DGL
        algorithm, x = emulated(N=3, algorithm=DecoupledGreedy)
    else:
        algorithm, x = emulated(N=3, critic_target=critic_target)
    y = torch.randint(0, 3, (8,))
    before = copy.deepcopy((algorithm.groups, algorithm.local_modules))
    algorithm.train_step(x, y, 0.1)
    groups, critics = before
    l1, l2, l3 = critic_losses(groups, critics, x, y)
    applied = {i: [p.grad for p in algorithm.groups[i].parameters()] for i in range(3)}
    critic_applied = {i: [p.grad for p in algorithm.local_modules[i].parameters()] for i in range(2)}

    def close(a, b):
        return all((u - v).abs().max() < 1e-12 for u, v in zip(a, b))

    targets = {"next": (l2, l3), "last": (l3, l3), "none": (None, None)}[critic_target]
    for i, (own, target) in enumerate(zip((l1, l2), targets)):
        theta, phi = list(groups[i].parameters()), list(critics[i].parameters())
        assert close(applied[i], torch.autograd.grad(own.mean(), theta, retain_graph=True))
        ce = torch.autograd.grad(own.mean(), phi, retain_graph=True)
        if target is None:  # DGL: the auxiliary is trained on CE with its group
            assert close(critic_applied[i], ce)
            continue
        matching = (own - target.detach()).abs().mean()
        assert close(critic_applied[i], torch.autograd.grad(matching, phi, retain_graph=True))
        # What a wrong topology would apply instead: the critic also trained on CE (DGL) ...
        with_ce = torch.autograd.grad(matching + own.mean(), phi, retain_graph=True)
        assert not close(critic_applied[i], with_ce)
    assert close(applied[2], torch.autograd.grad(l3.mean(), list(groups[2].parameters()), retain_graph=True))
    # ... or group 1 trained by the error of the groups above it (backprop).
    whole = groups[2](groups[1](groups[0](x)))
    backprop = torch.autograd.grad(F.cross_entropy(whole, y), list(groups[0].parameters()))
    assert not close(applied[0], backprop)


def test_critics_step_every_k_iterations_and_groups_every_iteration():
    adam = OptimizerSpec(name="adam", lr=1e-3)
    algorithm, x = emulated(N=2, critic_every=3, optimizer=adam)
    for _ in range(7):
        algorithm.train_step(x, torch.randint(0, 3, (8,)), adam.lr)
    critic_steps = {int(s["step"]) for s in algorithm.local_optimizers.optimizers["local0"].state.values()}
    group_steps = {int(s["step"]) for opt in algorithm.optimizers.optimizers.values() for s in opt.state.values()}
    assert critic_steps == {3} and group_steps == {7}  # critics at iterations 0, 3, 6


# Spec §7 (rule checked against Table 5): (parameters, 2 x conv and FC weights) of the sub-model
# whose critic sits after conv k, on CIFAR-10; the main network: 7,867,594 and 15,723,904.
SUB_MODEL_COUNTS = {2: (1_423_434, 2_846_080), 4: (735_818, 1_469_824), 5: (883_530, 1_764_736),
                    6: (1_080_650, 2_157_952), 8: (2_261_322, 4_517_248), 10: (6_035_786, 12_062_080)}
PRESETS = {"lc1": (2, 5), "lc3": (4, 2, 5, 8), "lc5": (6, 2, 4, 6, 8, 10)}  # groups, then critic positions


@pytest.mark.parametrize("preset", list(PRESETS))
def test_lc_vgg_presets_count_the_papers_parameters(preset):
    config = OmegaConf.load(REPO / "experiments" / "experiment" / f"{preset}.yaml")
    groups, *after_conv = PRESETS[preset]
    balance = list(config.algorithm.balance)
    assert config.gpus == groups and len(balance) == groups
    assert list(itertools.accumulate(balance))[:-1] == after_conv  # conv k is block k-1
    torch.manual_seed(0)
    info = DataInfo("cifar10", "classification", (3, 32, 32), num_classes=10)
    model = build_model("lc_vgg", LCVGGSettings(), info)
    worker = Worker(0, 1, torch.device("cpu"), torch.float32, Transport(0, 1, timeout_s=10))
    settings = LocalCriticSettings(groups=groups, balance=tuple(balance), runtime="emulated")
    algorithm = LocalCritic(BuildContext(model, worker, OptimizerSpec(name="sgd", lr=0.1), settings,
                                         torch.zeros(2, 3, 32, 32)))
    facts = algorithm.facts()
    assert facts["main_model"] == {"parameters": 7_867_594, "flop_lc_rule": 15_723_904}
    assert [(m["parameters"], m["flop_lc_rule"]) for m in facts["sub_models"]] == [SUB_MODEL_COUNTS[k] for k in after_conv]


def test_progressive_inference_exits_at_the_first_confident_sub_model():
    """Spec §10: exit at the first sub-model whose max softmax exceeds the threshold, else the
    main model; cost averaged by the exit model alone (Table 6) and cumulatively."""
    unsure = [0.1, 0.0]  # max softmax 0.525: never exits; predicts class 0
    sub1 = torch.tensor([[9.0, 0.0], unsure, unsure, [9.0, 0.0]])  # sure of class 0 for samples 0 and 3
    sub2 = torch.tensor([unsure, [0.0, 9.0], unsure, unsure])  # sure of class 1 for sample 1
    main = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    facts = exit_metrics([sub1, sub2, main], labels, exit_cost=[10, 20, 100], cumulative_cost=[10, 25, 130],
                         thresholds=(0.9,))
    assert facts["sub_model_accuracy"] == [0.25, 0.5]
    exits = facts["progressive_inference"]["0.9"]
    assert exits["exits_per_model"] == [2, 1, 1]  # samples 0, 3 at sub-model 1; 1 at sub-model 2; 2 at main
    assert exits["accuracy"] == 0.75  # sample 3 exits confidently wrong
    assert exits["flop_exit_model"] == (10 + 20 + 100 + 10) / 4
    assert exits["flop_cumulative"] == (10 + 25 + 130 + 10) / 4
    assert facts["ensemble_accuracy"] == {"sub_models": 0.5, "sub_models_and_main": 0.75}


def test_critics_can_have_more_conv_layers():
    """Table 2's knob: [LC1, LC2, LC3] conv layers; each extra layer is conv3x3 128 -> 128 with bias."""
    torch.manual_seed(0)
    info = DataInfo("cifar10", "classification", (3, 32, 32), num_classes=10)
    model = build_model("lc_vgg", LCVGGSettings(width_divisor=4), info)
    worker = Worker(0, 1, torch.device("cpu"), torch.float32, Transport(0, 1, timeout_s=10))
    counts = {}
    for convs in ((1, 1, 1), (3, 2, 1)):
        settings = LocalCriticSettings(groups=4, balance=(2, 3, 3, 4), critic_convs=convs, runtime="emulated")
        algorithm = LocalCritic(BuildContext(copy.deepcopy(model), worker, OptimizerSpec(name="sgd", lr=0.1), settings,
                                             torch.zeros(2, 3, 32, 32)))
        counts[convs] = [sum(p.numel() for p in algorithm.local_modules[i].parameters()) for i in range(3)]
    extra = 128 * 128 * 9 + 128
    assert [b - a for a, b in zip(counts[(1, 1, 1)], counts[(3, 2, 1)])] == [2 * extra, extra, 0]


@pytest.mark.parametrize("algorithm", [LocalCritic, SyntheticGradients])
def test_pipelined_delay_zero_is_the_synchronous_run_and_delay_one_is_not(algorithm):
    """Spec §5, §14: d = 0 reproduces the synchronous run bit for bit; d >= 1 differs, and the
    local modules take one update fewer per step of delay."""
    synchronous = train_emulated(6, algorithm).model_state()
    zero = train_emulated(6, algorithm, pipelined=True, delay=0).model_state()
    delayed = train_emulated(6, algorithm, pipelined=True, delay=1)
    assert all(torch.equal(zero[k], synchronous[k]) for k in synchronous)
    assert any(not torch.equal(delayed.model_state()[k], synchronous[k]) for k in synchronous)
    steps = {int(s["step"]) for opt in delayed.local_optimizers.optimizers.values() for s in opt.state.values()}
    assert steps == {5} and delayed.facts()["schedule"] == "pipelined, delay 1"


def test_delayed_critic_takes_the_first_batchs_update_one_iteration_late():
    """Under d = 1 critic i's update of batch 0 is computed at phi^0 against l_{i+1}(0), as in
    the synchronous run, but applied after iteration 1: so after two pipelined iterations the
    critics are those of one synchronous iteration, while the groups have stepped twice."""
    synchronous = train_emulated(1).model_state()
    delayed = train_emulated(2, pipelined=True, delay=1).model_state()
    critics = [k for k in synchronous if k.startswith("critics.")]
    assert critics and all(torch.equal(delayed[k], synchronous[k]) for k in critics)
    assert not torch.equal(delayed["blocks.0.linear.weight"], synchronous["blocks.0.linear.weight"])


def test_dni_group_follows_its_synthetic_gradient_and_the_module_the_next_input_gradient():
    """DNI, checked on gradients: group i < N backpropagates ghat_i = M_i(h_i); M_i regresses
    delta_i, the gradient at group i+1's input under ghat_{i+1} (the true one from group N)."""
    run, x = emulated(N=3, algorithm=SyntheticGradients)
    for module in run.local_modules.values():
        assert torch.count_nonzero(module(torch.randn(8, 5, dtype=torch.float64), None)) == 0  # zero at first
        torch.nn.init.normal_(module.out.weight)  # so that the synthetic gradients are not zero
    y = torch.randint(0, 3, (8,))
    groups, modules = copy.deepcopy((run.groups, run.local_modules))
    run.train_step(x, y, 0.1)
    expected, targets, h1 = dni_gradients(groups, modules, x, y)
    for i in range(3):
        assert all(torch.allclose(p.grad, g, atol=1e-12) for p, g in zip(run.groups[i].parameters(), expected[i]))
    for i, (ghat, delta) in enumerate(targets):
        phi = list(modules[i].parameters())
        want = torch.autograd.grad((ghat - delta).pow(2).sum() / 8, phi)
        assert all(torch.allclose(p.grad, g, atol=1e-12) for p, g in zip(run.local_modules[i].parameters(), want))
    # Not backprop: the true gradient would have reached group 1 through groups 2 and 3.
    true = torch.autograd.grad(F.cross_entropy(groups[2](groups[1](h1)), y), list(groups[0].parameters()))
    assert not all(torch.allclose(p.grad, g) for p, g in zip(run.groups[0].parameters(), true))


def test_conditioned_dni_module_reads_the_labels():
    """cDNI: M(h, y) = out(relu(hidden([h, onehot(y)]))); plain DNI's module has no label inputs."""
    run, _ = emulated(N=2, algorithm=SyntheticGradients, conditioned=True)
    module = run.local_modules[0]
    torch.nn.init.normal_(module.out.weight)
    h, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
    by_hand = module.out(torch.relu(module.hidden(torch.cat([h, F.one_hot(y, 3).double()], dim=1))))
    assert torch.equal(module(h, y), by_hand)
    assert not torch.equal(module(h, y), module(h, (y + 1) % 3))
    plain, _ = emulated(N=2, algorithm=SyntheticGradients)
    assert plain.local_modules[0].hidden.in_features == 5 and module.hidden.in_features == 5 + 3


def test_backprop_sub_model_is_local_critics_sub_model_trained_end_to_end():
    """Table 4's comparison: the same structure (and initial weights) as LC's sub-model 2 of 3
    groups (blocks 2 + 1 + 1), every parameter updated by the backpropagated CE of critic 2."""
    local_critic, _ = emulated(N=3)
    model, x = toy_model()
    sub = SubModelBackprop(BuildContext(model, CPU64, OptimizerSpec(name="sgd", lr=0.1),
                                        SubModelBackpropSettings(sub_model=2, groups=3), x))
    assert sub.facts()["sub_models"] == [local_critic.facts()["sub_models"][1]]
    assert all(torch.equal(a, b) for a, b in zip(sub.critic.parameters(), local_critic.all_local_modules[1].parameters()))
    net, y = copy.deepcopy(sub.net), torch.randint(0, 3, (8,))
    want = torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters()))
    sub.train_step(x, y, 0.1)
    assert all(torch.allclose(p.grad, g, atol=1e-12) for p, g in zip(sub.net.parameters(), want))
    assert set(sub.model_state()) == {*(f"blocks.{b}.linear.{w}" for b in (0, 1, 2) for w in ("weight", "bias")),
                                      "critics.1.1.weight", "critics.1.1.bias"}


def test_gpt_critic_may_hold_a_transformer_block():
    """The optional one-block head: a fresh block shaped like the model's, then LayerNorm + linear."""
    torch.manual_seed(0)
    info = DataInfo("toy", "lm", (16,), vocab_size=11)
    model = build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=8, context=16), info)
    example = torch.zeros(2, 16, dtype=torch.long)
    plain, one_block = (LocalCritic(BuildContext(copy.deepcopy(model), CPU64, OptimizerSpec(name="adam", lr=1e-3),
                                                 LocalCriticSettings(groups=2, runtime="emulated", critic_blocks=b),
                                                 example)) for b in (0, 1))
    block = model.blocks[1]
    assert isinstance(one_block.local_modules[0][0], type(block))
    extra = sum(p.numel() for p in block.parameters())
    assert sum(p.numel() for p in one_block.local_modules[0].parameters()) == \
        sum(p.numel() for p in plain.local_modules[0].parameters()) + extra


@pytest.mark.parametrize("algorithm", [LocalCritic, SyntheticGradients])
def test_the_order_of_the_optimizer_steps_does_not_matter(algorithm):
    """Spec §14, pre-update semantics: every gradient of an iteration is taken before any step,
    so stepping the groups and the local modules in another order changes nothing."""
    reference = train_emulated(4, algorithm).model_state()
    adam = OptimizerSpec(name="adam", lr=1e-2)
    run, x = emulated(3, adam, algorithm)
    run.optimizers.optimizers = dict(reversed(run.optimizers.optimizers.items()))
    run.local_optimizers.optimizers = dict(reversed(run.local_optimizers.optimizers.items()))
    for y in torch.randint(0, 3, (4, 8), generator=torch.Generator().manual_seed(1)):
        run.train_step(x, y, adam.lr)
    assert all(torch.equal(run.model_state()[k], reference[k]) for k in reference)


def test_critic_blocks_need_a_transformer():
    """critic_blocks on a CNN or MLP is one line naming the key, before any worker starts: the
    model says whether its heads can hold blocks (the check sees the meta-device model)."""
    from types import SimpleNamespace

    from mpbench.errors import ConfigError

    run = SimpleNamespace(algorithm="local_critic", algorithm_settings=LocalCriticSettings(critic_blocks=1),
                          gpus=2, model="mlp")
    with torch.device("meta"):
        mlp, _ = toy_model()
        gpt = build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=8, context=16),
                          DataInfo("toy", "lm", (16,), vocab_size=11))
    with pytest.raises(ConfigError, match="critic_blocks=1 .* needs model gpt .got mlp"):
        LocalCritic.check(run, mlp)
    LocalCritic.check(SimpleNamespace(**{**vars(run), "model": "gpt"}), gpt)  # fine
