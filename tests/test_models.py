"""Tests of the model zoo: shapes, block structure, tied weights, causality, parameter counts.

Reference counts:
- Basic CIFAR ResNets with option-A shortcuts: He et al. 2016 (CVPR), Table 6 (0.27M / 0.85M /
  1.7M); exact integers as computed by the widely used option-A reimplementations.
- Pre-activation bottleneck ResNet-164 / 1001: He et al. 2016 ("Identity Mappings"), Table 3
  (1.7M / 10.2M); the exact integers 1,703,258 and 10,327,706 agree with the CIFAR-10 table of
  osmr/imgclsmob (PreResNet-164(BN), PreResNet-1001).
- lc_vgg and its critics: docs/algorithms/local_learning.md §8 (reproducing the LC paper's Table 5).
- dgl_cnn: the network of the authors' released DGL-vs-DNI scripts (eugenium/DGL, dni_comparisons/):
  831,242 parameters at 128 filters, as their printed model adds up.
"""

import copy

import pytest
import torch

from algorithms.local_learning.exits import count_flop_lc_rule, count_parameters_lc_rule
from models import build_model
from models.dgl_cnn import DGLCNNSettings
from models.gpt import GPTSettings
from models.lc_vgg import LCVGGSettings, feature_shapes, make_critic
from models.mlp import MLPSettings
from models.resnet import ResNetSettings
from mpbench.blocks import partition
from mpbench.data.base import DataInfo
from mpbench.registry import MODELS

CIFAR10 = DataInfo("cifar10", "classification", (3, 32, 32), num_classes=10)
CIFAR100 = DataInfo("cifar100", "classification", (3, 32, 32), num_classes=100)
FASHION = DataInfo("fashion_mnist", "classification", (1, 28, 28), num_classes=10)
SMALL_IMAGES = DataInfo("small_images", "classification", (3, 12, 12), num_classes=5)
CHARS = DataInfo("chars", "lm", (8,), vocab_size=13, unit="char")

TINY_GPT = GPTSettings(n_layer=2, n_head=2, d_model=16, context=8)

# (name, settings, data) small enough to run forward passes in milliseconds.
SMALL_MODELS = {
    "gpt": ("gpt", TINY_GPT, CHARS),
    "resnet-basic": ("resnet", ResNetSettings(depth=8), SMALL_IMAGES),
    "resnet-preact": ("resnet", ResNetSettings(depth=11, block="preact_bottleneck"), SMALL_IMAGES),
    "lc_vgg": ("lc_vgg", LCVGGSettings(width_divisor=16), SMALL_IMAGES),
    "dgl_cnn": ("dgl_cnn", DGLCNNSettings(width=8, layers=2), SMALL_IMAGES),  # 12 -> 4 -> 1
    "mlp": ("mlp", MLPSettings(hidden=(7, 5)), SMALL_IMAGES),
}


def build(name, settings, data, seed=0):
    torch.manual_seed(seed)
    return build_model(name, settings, data)


def sample_input(data, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    if data.task == "lm":
        return torch.randint(0, data.vocab_size, (batch, *data.input_shape), generator=g)
    return torch.randn(batch, *data.input_shape, generator=g)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- every model


@pytest.mark.parametrize("key", SMALL_MODELS)
def test_forward_shape_and_blockwise_equivalence_in_float64(key):
    name, settings, data = SMALL_MODELS[key]
    model = build(name, settings, data).double()
    x = sample_input(data)
    if data.task == "classification":
        x = x.double()
    out = model(x)
    expected = (3, *data.input_shape, data.vocab_size) if data.task == "lm" else (3, data.num_classes)
    assert out.shape == expected
    assert out.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.parameters())

    h = x
    for block in model.blocks:
        h = block(h)
    torch.testing.assert_close(h, out, rtol=0, atol=0)

    # Gradients flow to every parameter, in float64.
    y = torch.randint(0, out.size(-1), out.shape[:-1])  # token ids (B, T) or class ids (B,)
    model.loss(out, y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float64, pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("key", SMALL_MODELS)
def test_float64_agrees_with_float32(key):
    name, settings, data = SMALL_MODELS[key]
    model32 = build(name, settings, data)
    model64 = copy.deepcopy(model32).double()
    x = sample_input(data)
    out32 = model32(x)
    out64 = model64(x.double() if x.is_floating_point() else x)
    torch.testing.assert_close(out64.float(), out32, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key", SMALL_MODELS)
def test_build_is_deterministic_given_the_seed(key):
    name, settings, data = SMALL_MODELS[key]
    a, b, c = build(name, settings, data, seed=3), build(name, settings, data, seed=3), \
        build(name, settings, data, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name, settings, data, blocks", [
    ("gpt", TINY_GPT, CHARS, TINY_GPT.n_layer + 2),
    ("gpt", GPTSettings(n_layer=5, n_head=1, d_model=4, context=8), CHARS, 7),
    ("resnet", ResNetSettings(depth=20), CIFAR10, 1 + 9 + 1),
    ("resnet", ResNetSettings(depth=56), CIFAR10, 1 + 27 + 1),
    ("resnet", ResNetSettings(depth=164), CIFAR10, 1 + 54 + 1),
    ("lc_vgg", LCVGGSettings(), CIFAR10, 12),
    ("dgl_cnn", DGLCNNSettings(), CIFAR10, 3 + 1),
    ("dgl_cnn", DGLCNNSettings(layers=2), CIFAR10, 2 + 1),
    ("mlp", MLPSettings(), CIFAR10, 3),
    ("mlp", MLPSettings(hidden=(4, 4, 4, 4)), CIFAR10, 5),
    ("mlp", MLPSettings(hidden=()), CIFAR10, 1),
])
def test_block_counts(name, settings, data, blocks):
    model = build(name, settings, data)
    assert len(model.blocks) == blocks
    assert model.describe()["blocks"] == blocks


# ---------------------------------------------------------------- GPT


def test_gpt_tie_names_resolve_to_one_parameter_also_after_conversion():
    model = build("gpt", TINY_GPT, CHARS)
    (tie,) = model.ties
    assert tie.name == "token_embedding"
    assert [i for i, _ in tie.uses] == [0, TINY_GPT.n_layer + 1]
    for m in (model, model.double()):
        params = [m.blocks[i].get_parameter(pname) for i, pname in tie.uses]
        assert params[0] is params[1]
        assert dict(m.blocks[0].named_parameters())[tie.uses[0][1]] is params[0]
        assert dict(m.blocks[-1].named_parameters())[tie.uses[1][1]] is params[0]
        assert params[0].shape == (CHARS.vocab_size, TINY_GPT.d_model)


def test_gpt_tied_gradient_sums_both_uses():
    model = build("gpt", TINY_GPT, CHARS).double()
    (tie,) = model.ties
    (i_in, name_in), (i_out, name_out) = tie.uses
    # An untied copy: the head gets its own leaf with the same value.
    untied = copy.deepcopy(model)
    head = untied.blocks[i_out]
    head.proj.weight = torch.nn.Parameter(head.proj.weight.detach().clone())
    assert untied.blocks[i_in].get_parameter(name_in) is not head.get_parameter(name_out)

    x = sample_input(CHARS)
    y = sample_input(CHARS, seed=5)
    model.loss(model(x), y).backward()
    untied.loss(untied(x), y).backward()
    g_in = untied.blocks[i_in].get_parameter(name_in).grad
    g_out = untied.blocks[i_out].get_parameter(name_out).grad
    assert g_in.abs().sum() > 0 and g_out.abs().sum() > 0
    tied_grad = model.blocks[i_in].get_parameter(name_in).grad
    torch.testing.assert_close(tied_grad, g_in + g_out, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(tied_grad, g_out)


def test_gpt_is_causal():
    model = build("gpt", TINY_GPT, CHARS).double().eval()
    x = sample_input(CHARS, batch=2)
    t = 4
    x2 = x.clone()
    x2[:, t + 1:] = (x2[:, t + 1:] + 1) % CHARS.vocab_size
    out, out2 = model(x), model(x2)
    torch.testing.assert_close(out[:, :t + 1], out2[:, :t + 1], rtol=0, atol=0)
    assert not torch.allclose(out[:, t + 1:], out2[:, t + 1:])


def reference_transformer_block(block, x, n_head):
    """Pre-LN block written out with an explicit causal mask and softmax."""
    F = torch.nn.functional
    b, t, d = x.shape
    h = block.ln1(x)
    q, k, v = (F.linear(h, w, bias) for w, bias in zip(block.attn.qkv.weight.chunk(3),
                                                        block.attn.qkv.bias.chunk(3)))
    q, k, v = (z.view(b, t, n_head, d // n_head).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / (d // n_head) ** 0.5
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
    x = x + block.attn.proj(att)
    return x + block.mlp.proj(F.gelu(block.mlp.fc(block.ln2(x))))


def test_gpt_block_matches_reference_and_is_residual():
    model = build("gpt", TINY_GPT, CHARS).double()
    block = model.blocks[1]
    x = torch.randn(2, 6, TINY_GPT.d_model, dtype=torch.float64)
    torch.testing.assert_close(block(x), reference_transformer_block(block, x, TINY_GPT.n_head))
    # With both residual-branch projections zeroed the block is exactly the identity.
    with torch.no_grad():
        for linear in (block.attn.proj, block.mlp.proj):
            linear.weight.zero_()
            linear.bias.zero_()
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)


def test_gpt_sequence_longer_than_context_is_rejected():
    model = build("gpt", TINY_GPT, CHARS)
    model(torch.zeros(1, 3, dtype=torch.long))  # shorter is fine
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, TINY_GPT.context + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="context"):
        build("gpt", TINY_GPT, DataInfo("long", "lm", (TINY_GPT.context + 1,), vocab_size=13))


def test_gpt_word_level_vocabulary_and_parameter_count():
    words = DataInfo("wikitext2", "lm", (8,), vocab_size=33_278, unit="word")
    s = GPTSettings(n_layer=1, n_head=2, d_model=8, context=8, bias=False)
    model = build("gpt", s, words)
    assert model(torch.tensor([[33_277, 0, 5]])).shape == (1, 3, 33_278)
    d, v = 8, 33_278
    # tok + pos embeddings; per layer 2 LN weights + qkv + proj + fc + proj (no biases); final LN.
    expected = v * d + 8 * d + (2 * d + 3 * d * d + d * d + 4 * d * d + 4 * d * d) + d
    summary = model.describe()
    assert summary["parameters"] == expected
    assert sum(summary["block_parameters"]) == expected + v * d  # the tie appears in two blocks


def test_gpt_initialisation_scales_residual_projections():
    s = GPTSettings(n_layer=8, n_head=2, d_model=64, context=8)
    block = build("gpt", s, CHARS).blocks[1]
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual_std = 0.02 / (2 * s.n_layer) ** 0.5
    assert block.attn.proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert block.mlp.proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert torch.count_nonzero(block.attn.qkv.bias) == 0


# ---------------------------------------------------------------- ResNet


@pytest.mark.parametrize("depth, expected", [
    (20, 269_722), (56, 853_018), (110, 1_727_962),  # He et al. 2016, Table 6: 0.27M, 0.85M, 1.7M
    (164, 1_703_258), (1001, 10_327_706),  # "Identity Mappings", Table 3: 1.7M, 10.2M
])
def test_resnet_parameter_counts(depth, expected):
    model = build("resnet", ResNetSettings(depth=depth), CIFAR10)  # counted only, no forward
    assert model.describe()["parameters"] == expected


def test_resnet_block_kinds():
    assert ResNetSettings(depth=110).kind == "basic"
    assert ResNetSettings(depth=164).kind == "preact_bottleneck"
    assert ResNetSettings(depth=1001).kind == "preact_bottleneck"
    assert ResNetSettings(depth=164, block="basic").blocks_per_stage == 27
    assert ResNetSettings(depth=164).blocks_per_stage == 18


def test_resnet_on_one_channel_28x28_images():
    model = build("resnet", ResNetSettings(depth=8), FASHION).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.blocks[0].conv.in_channels == 1


def test_resnet_basic_stage_change_uses_parameter_free_shortcut():
    model = build("resnet", ResNetSettings(depth=8), SMALL_IMAGES).double().eval()
    block = model.blocks[2]  # first block of stage 2: 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 12, 12, dtype=torch.float64)
    short = block.shortcut(x)
    assert short.shape == (2, 32, 6, 6)
    torch.testing.assert_close(short[:, 8:24], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(short[:, :8]) == 0 and torch.count_nonzero(short[:, 24:]) == 0


def test_resnet_blocks_are_residual():
    basic = build("resnet", ResNetSettings(depth=8), SMALL_IMAGES).double().eval()
    preact_settings = ResNetSettings(depth=20, block="preact_bottleneck")
    preact = build("resnet", preact_settings, SMALL_IMAGES).double().eval()
    with torch.no_grad():
        basic.blocks[1].bn2.weight.zero_()  # residual branch of a basic block outputs bn2(...)
        preact.blocks[2].conv3.weight.zero_()  # second unit of stage 1: identity shortcut
    x = torch.randn(2, 16, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(basic.blocks[1](x), torch.relu(x + basic.blocks[1].bn2.bias.view(1, -1, 1, 1)))
    x = torch.randn(2, 64, 12, 12, dtype=torch.float64)
    assert preact.blocks[2].projection is None and preact.blocks[1].projection is not None
    torch.testing.assert_close(preact.blocks[2](x), x, rtol=0, atol=0)


# ---------------------------------------------------------------- lc_vgg (Local Critic paper)


def test_lc_vgg_main_network_counts_match_table5():
    model = build("lc_vgg", LCVGGSettings(), CIFAR10)
    assert count_parameters_lc_rule(model) == 7_867_594
    assert count_flop_lc_rule(model) == 15_723_904
    assert count_parameters_lc_rule(build("lc_vgg", LCVGGSettings(), CIFAR100)) == 8_604_964


def test_lc_vgg_feature_shapes():
    shapes = feature_shapes(LCVGGSettings(), CIFAR10)
    assert [s[0] for s in shapes] == [64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512]
    assert [s[1] for s in shapes] == [32, 32, 16, 16, 16, 8, 8, 8, 4, 4, 4]
    model = build("lc_vgg", LCVGGSettings(width_divisor=16), CIFAR10).eval()
    h = torch.randn(2, 3, 32, 32)
    for block, shape in zip(model.blocks[:-1], feature_shapes(LCVGGSettings(width_divisor=16), CIFAR10)):
        h = block(h)
        assert h.shape[1:] == shape


@pytest.mark.parametrize("after_conv, critic, sub_model, flop", [
    (2, 1_384_586, 1_423_434, 2_846_080),  # sub-model 1: Table 5 1.42M params, 2.85M FLOP
    (5, 475_274, 883_530, 1_764_736),  # sub-model 2: 0.88M, 1.76M
    (8, 376_970, 2_261_322, 4_517_248),  # sub-model 3: 2.26M, 4.52M
    (10, 610_442, 6_035_786, 12_062_080),  # LC(5)'s last critic (§7, not in Table 5)
])
def test_lc_vgg_critic_and_sub_model_counts(after_conv, critic, sub_model, flop):
    model = build("lc_vgg", LCVGGSettings(), CIFAR10)
    c, h, w = feature_shapes(LCVGGSettings(), CIFAR10)[after_conv - 1]
    critic_net = make_critic(c, (h, w), 10)
    assert count_parameters_lc_rule(critic_net) == critic
    sub = torch.nn.Sequential(*model.blocks[:after_conv], critic_net)
    assert count_parameters_lc_rule(sub) == sub_model
    assert count_flop_lc_rule(sub) == flop


def test_lc_vgg_critic_forward_and_structure():
    critic = make_critic(8, 4, 10).double()
    assert critic(torch.randn(2, 8, 4, 4, dtype=torch.float64)).shape == (2, 10)
    conv = critic[0]
    assert conv.out_channels == 128 and conv.bias is not None and conv.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules())


@pytest.mark.parametrize("convs", [1, 3])
def test_lc_vgg_critic_width_narrows_every_critic_conv(convs):
    """critic_width (a reduced-scale run's narrower critics) sets the filters of each critic conv
    and so the FC's inputs: (C, H, W) = (8, 32, 32), 16 filters, 10 classes."""
    model = build("lc_vgg", LCVGGSettings(width_divisor=8, critic_width=16), CIFAR10)
    critic = model.heads.critic(torch.Size([2, 8, 32, 32]), 10, convs=convs)
    convs_found = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs_found) == convs and all(c.out_channels == 16 for c in convs_found)
    expected = (8 * 16 * 9 + 16) + (convs - 1) * (16 * 16 * 9 + 16) + (16 * 32 * 32 * 10 + 10)
    assert count_parameters_lc_rule(critic) == expected
    assert critic(torch.randn(2, 8, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="critic_width"):
        LCVGGSettings(critic_width=0).validate()


def test_lc_rule_counts_trainable_only_and_excludes_bn_from_flop():
    bn = torch.nn.BatchNorm2d(4)
    assert count_parameters_lc_rule(bn) == 8 and count_flop_lc_rule(bn) == 0
    lin = torch.nn.Linear(3, 2)
    assert count_parameters_lc_rule(lin) == 8 and count_flop_lc_rule(lin) == 12
    lin.bias.requires_grad_(False)
    assert count_parameters_lc_rule(lin) == 6


# ---------------------------------------------------------------- MLP


def test_mlp_structure():
    s = MLPSettings(hidden=[6, 5], activation="relu")  # a YAML list is accepted and stored as a tuple
    assert s.hidden == (6, 5)
    model = build("mlp", s, SMALL_IMAGES)
    assert [b.linear.out_features for b in model.blocks] == [6, 5, 5]
    assert model.blocks[0].linear.in_features == 3 * 12 * 12
    assert isinstance(model.blocks[0].act, torch.nn.ReLU)
    assert isinstance(model.blocks[-1].act, torch.nn.Identity)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)) for m in model.modules())
    # The last block outputs raw logits (negative values possible, unbounded by the activation).
    assert (model(sample_input(SMALL_IMAGES, batch=16)) < 0).any()


# ---------------------------------------------------------------- dgl_cnn (DGL's comparison with DNI)


def test_dgl_cnn_shapes_width_and_parameter_count():
    model = build("dgl_cnn", DGLCNNSettings(), CIFAR10).eval()
    h, shapes = torch.zeros(2, 3, 32, 32), []
    for block in model.blocks:
        h = block(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(128, 10, 10), (128, 3, 3), (128, 1, 1), (10,)]  # 3x3 pooling, stride 3
    assert n_params(model) == 831_242
    narrow = build("dgl_cnn", DGLCNNSettings(width=32), CIFAR10)
    assert [b.conv.out_channels for b in narrow.blocks[:-1]] == [32, 32, 32]
    assert narrow.blocks[-1].fc.in_features == 32
    assert [type(b.pool).__name__ for b in narrow.blocks[:-1]] == ["MaxPool2d", "AvgPool2d", "AvgPool2d"]
    with pytest.raises(ValueError, match="layers=4 pools 32x32 images down to nothing"):
        build_model("dgl_cnn", DGLCNNSettings(layers=4), CIFAR10)


def test_dgl_cnn_heads_are_the_authors_shapes_at_the_model_width():
    heads = build("dgl_cnn", DGLCNNSettings(width=16), CIFAR10).heads
    aux = heads.critic(torch.Size([2, 16, 10, 10]), 10)
    assert aux(torch.randn(2, 16, 10, 10)).shape == (2, 10)
    assert [m.out_channels for m in aux.modules() if isinstance(m, torch.nn.Conv2d)] == [16, 16, 16]
    assert heads.critic(torch.Size([2, 10]), 10)(torch.randn(2, 10)).shape == (2, 10)  # a vector: the generic head
    with pytest.raises(ValueError, match="critic_convs must be 1"):
        heads.critic(torch.Size([2, 16, 10, 10]), 10, convs=2)
    labels = torch.tensor([1, 7])
    for conditioned in (False, True):
        synthesizer = heads.synthesizer(torch.Size([2, 16, 3, 3]), 10, conditioned, width=12)
        h = torch.randn(2, 16, 3, 3)
        assert not synthesizer(h, labels).any()  # zero at the start: the first synthetic gradients are zero
        torch.nn.init.normal_(synthesizer.out.weight)
        assert synthesizer(h, labels).shape == h.shape
        other_labels = synthesizer(h, torch.tensor([2, 3]))
        assert torch.equal(other_labels, synthesizer(h, labels)) != conditioned  # cDNI reads the labels


# ---------------------------------------------------------------- registry and summary


def test_registry_and_build_from_mapping():
    assert set(MODELS) == {"gpt", "resnet", "lc_vgg", "dgl_cnn", "mlp", "custom"}
    model = build("gpt", {"n_layer": 1, "n_head": 2, "d_model": 8, "context": 8}, CHARS)
    assert len(model.blocks) == 3
    with pytest.raises(ValueError, match="unknown setting.*n_layers.*valid: n_layer"):
        build_model("gpt", {"n_layers": 1, "n_head": 2, "d_model": 8, "context": 8}, CHARS)
    with pytest.raises(ValueError, match="needs GPTSettings"):
        build_model("gpt", ResNetSettings(depth=20), CHARS)
    with pytest.raises(ValueError, match="missing"):
        build_model("gpt", {"n_layer": 1}, CHARS)


def test_describe_counts_a_tied_tensor_once():
    model = build("gpt", TINY_GPT, CHARS)
    summary = model.describe()
    tied = CHARS.vocab_size * TINY_GPT.d_model
    assert summary["parameters"] == sum(summary["block_parameters"]) - tied
    assert summary["tied"] == ["token_embedding"]
    assert summary["task"] == "lm"


# ---------------------------------------------------------------- partition


def test_partition_even_and_explicit():
    assert partition(11, 3) == [range(0, 4), range(4, 8), range(8, 11)]
    assert partition(8, 4) == [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    assert partition(5, 1) == [range(0, 5)]
    assert partition(12, 4, sizes=[2, 3, 3, 4]) == [range(0, 2), range(2, 5), range(5, 8), range(8, 12)]
    ranges = partition(len(build("resnet", ResNetSettings(depth=20), CIFAR10).blocks), 4)
    assert [i for r in ranges for i in r] == list(range(11))


@pytest.mark.parametrize("num_blocks, parts, sizes, message", [
    (3, 4, None, "at most 3 parts"),
    (5, 0, None, "at least 1"),
    (6, 2, [3, 2], "summing to 6"),
    (6, 2, [6, 0], "positive"),
    (6, 3, [3, 3], "3 positive numbers"),
])
def test_partition_errors(num_blocks, parts, sizes, message):
    with pytest.raises(ValueError, match=message):
        partition(num_blocks, parts, sizes)


# ---------------------------------------------------------------- errors


def test_wrong_task_is_rejected():
    with pytest.raises(ValueError, match="model gpt needs a language-modelling dataset; cifar10 is a "
                                         "classification dataset"):
        build_model("gpt", TINY_GPT, CIFAR10)
    for name, settings in [("resnet", ResNetSettings(depth=20)), ("lc_vgg", LCVGGSettings()),
                           ("mlp", MLPSettings())]:
        with pytest.raises(ValueError, match=f"model {name} needs a classification dataset; chars"):
            build_model(name, settings, CHARS)


@pytest.mark.parametrize("make, message", [
    (lambda: GPTSettings(n_layer=2, n_head=3, d_model=16, context=8), "d_model must be divisible by n_head"),
    (lambda: GPTSettings(n_layer=0, n_head=2, d_model=16, context=8), "n_layer must be a positive integer"),
    (lambda: GPTSettings(n_layer=2, n_head=2, d_model=16, context=8, dropout=1.0), "dropout"),
    (lambda: ResNetSettings(depth=21), "6n \\+ 2"),
    (lambda: ResNetSettings(depth=2), "6n \\+ 2"),
    (lambda: ResNetSettings(depth=22, block="preact_bottleneck"), "9n \\+ 2"),
    (lambda: ResNetSettings(depth=20, block="wide"), "block must be one of"),
    (lambda: LCVGGSettings(width_divisor=3), "width_divisor"),
    (lambda: DGLCNNSettings(width=0), "dgl_cnn width must be a positive integer"),
    (lambda: DGLCNNSettings(layers=0), "dgl_cnn layers must be a positive integer"),
    (lambda: MLPSettings(hidden=(4, 0)), "hidden"),
    (lambda: MLPSettings(activation="swish"), "activation must be one of tanh"),
])
def test_invalid_settings_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError,
                       match="unknown model 'vgg'; valid models: gpt, resnet, lc_vgg, dgl_cnn, mlp, custom"):
        build_model("vgg", MLPSettings(), CIFAR10)
