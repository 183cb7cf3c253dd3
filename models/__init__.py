"""The model zoo: every model is a `mpbench.blocks.BlockModel` built from a settings dataclass and
the dataset's `DataInfo`, registered here under the name the `model` config group uses.

    gpt.py      GPT-2-style causal Transformer (tied embedding), char or word level
    resnet.py   CIFAR ResNets: basic (20, 56, 110) and pre-activation bottleneck (164, 1001)
    lc_vgg.py   the Local Critic paper's 11-conv VGG-like network
    dgl_cnn.py  the 3-layer conv5x5 CIFAR CNN of DGL's comparison with DNI, and its heads
    mlp.py      a small multilayer perceptron, for fast equivalence tests
    custom.py   your own model: a function returning a BlockModel or an nn.Sequential
    heads.py    local heads on a block's output (critics, synthetic-gradient modules), by shape

Adding a model family is one new file with a settings dataclass and `build(settings, data)`, plus
one `register_model` line below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass

from mpbench.blocks import BlockModel
from mpbench.data.base import DataInfo
from mpbench.registry import MODELS, register_model
from models import custom, dgl_cnn, gpt, lc_vgg, mlp, resnet

register_model("gpt", gpt.GPTSettings, gpt.build)
register_model("resnet", resnet.ResNetSettings, resnet.build)
register_model("lc_vgg", lc_vgg.LCVGGSettings, lc_vgg.build)
register_model("dgl_cnn", dgl_cnn.DGLCNNSettings, dgl_cnn.build)
register_model("mlp", mlp.MLPSettings, mlp.build)
register_model("custom", custom.CustomModelSettings, custom.build)


def build_model(name: str, settings, data: DataInfo) -> BlockModel:
    """Build model `name` for dataset `data` (a convenience for code and notebooks; runs resolve
    the name once, in the config).

    `settings` is the model's settings dataclass, or a mapping of its keyword arguments.
    Parameters are drawn from torch's global generator: seed it first.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    entry = MODELS[name]
    if isinstance(settings, Mapping):
        valid = [f.name for f in fields(entry.settings)]
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)} for model {name}; "
                             f"valid: {', '.join(valid)}")
        try:
            settings = entry.settings(**settings)
        except TypeError as e:  # a required setting is missing
            raise ValueError(f"model {name}: {e}") from None
    elif not (is_dataclass(settings) and isinstance(settings, entry.settings)):
        raise ValueError(f"model {name} needs {entry.settings.__name__}, got {type(settings).__name__}")
    return entry.build(settings, data)
