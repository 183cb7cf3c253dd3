"""Your own model, chosen from the command line, trained by every algorithm.

    python run.py model=custom model.target=mypackage.mymodule:build [model.options={width:64}] algorithm=...

`target` names a function `build(data, **options)` that takes the dataset's `DataInfo` (task,
input shape, vocabulary or class count) and returns either

- a `mpbench.blocks.BlockModel` (blocks, task, declared ties, optionally its local heads), or
- a plain `torch.nn.Sequential`, wrapped here: each child is one block (an algorithm may cut
  between any two), the task is the dataset's, and a parameter shared by several children (a
  tied embedding) is declared as a tied tensor automatically.

The module is imported by name: it must be importable from the directory you run in (added to
the path) or from PYTHONPATH. Example: examples/char_mlp.py; docs/extending.md.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections import defaultdict
from dataclasses import dataclass

from torch import nn

from mpbench.blocks import BlockModel, TiedParameter
from mpbench.data.base import DataInfo
from mpbench.settings import Settings
from models.heads import ShapedHeads


@dataclass(frozen=True)
class CustomModelSettings(Settings):
    """A model built by a function of yours."""

    target: str = "???"
    """The function that builds it, as `package.module:function`."""
    options: dict | None = None
    """Keyword arguments for that function (null: none)."""

    def validate(self):
        module, _, function = self.target.partition(":")
        if not module or not function.isidentifier():
            raise ValueError(f"target must name a function as 'package.module:function', got {self.target!r}")


def resolve(target: str):
    """The function `target` names ('package.module:function'), imported; ValueError (one line) if not."""
    module_name, _, function = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # a user's module beside where they run; spawned workers inherit the path
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - not found, or broken (a SyntaxError in the user's file): one line
        raise ValueError(f"model.target={target}: cannot import {module_name} "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if not callable(getattr(module, function, None)):
        raise ValueError(f"model.target={target}: {module_name} has no function {function}")
    return getattr(module, function)


def build(settings: CustomModelSettings, data: DataInfo) -> BlockModel:
    function, options = resolve(settings.target), settings.options or {}
    try:
        inspect.signature(function).bind(data, **options)
    except TypeError as err:
        raise ValueError(f"model.options={options} do not fit {settings.target}: {err}") from None
    made = function(data, **options)
    if isinstance(made, BlockModel):
        if made.heads is None:
            made.heads = ShapedHeads()
        return made
    if isinstance(made, nn.Sequential):
        return as_block_model(made, data.task)
    raise ValueError(f"model.target={settings.target} returned a {type(made).__name__}; return a "
                     f"mpbench.blocks.BlockModel or a torch.nn.Sequential")


def as_block_model(sequential: nn.Sequential, task: str) -> BlockModel:
    """`sequential` as a BlockModel: one block per child; each parameter object that several
    children hold becomes a TiedParameter listing every (block, name) that uses it."""
    blocks = list(sequential)
    uses: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for index, block in enumerate(blocks):
        for name, parameter in block.named_parameters(remove_duplicate=False):
            uses[id(parameter)].append((index, name))
    ties = tuple(TiedParameter(f"blocks.{places[0][0]}.{places[0][1]}", tuple(places))
                 for places in uses.values() if len({b for b, _ in places}) > 1)
    return BlockModel(blocks, task=task, ties=ties, heads=ShapedHeads())
