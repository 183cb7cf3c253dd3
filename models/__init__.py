"""The model zoo: every model is a `BlockModel` built from a settings dataclass and a `DataInfo`.

    model = build_model("gpt", GPTSettings(n_layer=6, n_head=4, d_model=256, context=128), data)

Adding a model is one new file with a frozen settings dataclass and `build(settings, data)`, plus
one line in `MODELS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass

import torch

from mpbench.data.base import DataInfo
from models import gpt, lc_vgg, mlp, resnet
from models.blocks import BlockModel, EvalTotals, TiedParameter, partition
from models.gpt import GPTSettings
from models.lc_vgg import LCVGGSettings
from models.mlp import MLPSettings
from models.resnet import ResNetSettings

MODELS = {
    "gpt": (GPTSettings, gpt.build),
    "resnet": (ResNetSettings, resnet.build),
    "lc_vgg": (LCVGGSettings, lc_vgg.build),
    "mlp": (MLPSettings, mlp.build),
}


def build_model(name: str, settings, data: DataInfo) -> BlockModel:
    """Build model `name` for dataset `data`.

    `settings` is the model's settings dataclass, or a mapping of its keyword arguments (as read
    from a config file). Parameters are drawn from torch's global generator: seed it first.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    settings_cls, build = MODELS[name]
    if isinstance(settings, Mapping):
        valid = [f.name for f in fields(settings_cls)]
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)} for model {name}; "
                             f"valid: {', '.join(valid)}")
        try:
            settings = settings_cls(**settings)
        except TypeError as e:  # a required setting is missing
            raise ValueError(f"model {name}: {e}") from None
    elif not (is_dataclass(settings) and isinstance(settings, settings_cls)):
        raise ValueError(f"model {name} needs {settings_cls.__name__}, got {type(settings).__name__}")
    return build(settings, data)


def count_blocks(name: str, settings, data: DataInfo) -> int:
    """The number of blocks of a model, without allocating it (built on the meta device)."""
    with torch.device("meta"):
        return len(build_model(name, settings, data).blocks)


def describe(model: BlockModel) -> dict:
    """Summary for run records: unique parameter count (a tied tensor once), blocks, per-block counts.

    `block_parameters[i]` counts everything block i holds, so a tied tensor appears in each block
    that uses it and the list may sum to more than `parameters`.
    """
    return {
        "task": model.task,
        "blocks": len(model.blocks),
        "parameters": sum(p.numel() for p in model.parameters()),  # parameters() deduplicates
        "block_parameters": [sum(p.numel() for p in block.parameters()) for block in model.blocks],
        "tied": [tie.name for tie in model.ties],
    }


__all__ = ["MODELS", "build_model", "describe", "BlockModel", "EvalTotals", "TiedParameter", "partition",
           "GPTSettings", "ResNetSettings", "LCVGGSettings", "MLPSettings"]
