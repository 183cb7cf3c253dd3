"""The names a config may choose: algorithms and models, registered by the plugins themselves.

The core owns these two registries and starts them empty; it never imports a plugin. A module
under `algorithms/` or `models/` registers what it defines, and `run.py` (the composition root)
imports those packages, which fills the registries before the config is read:

    @register_algorithm("backprop", NoSettings)
    class Backprop(Algorithm): ...

    register_model("gpt", GPTSettings, gpt.build)

`run_spec_from` turns the chosen names into the registered classes and functions, which travel
to the workers by reference: a worker never looks a name up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpbench.errors import ConfigError


@dataclass(frozen=True)
class AlgorithmEntry:
    """One registered algorithm: its config name, its settings class and the class that runs it
    (an `mpbench.algorithm.Algorithm`; the same class may serve several names)."""

    name: str
    settings: type
    cls: type


@dataclass(frozen=True)
class ModelEntry:
    """One registered model family: its config name, its settings class and
    `build(settings, data_info) -> BlockModel`."""

    name: str
    settings: type
    build: Callable[[Any, Any], Any]


ALGORITHMS: dict[str, AlgorithmEntry] = {}
MODELS: dict[str, ModelEntry] = {}


def register_algorithm(name: str, settings: type) -> Callable[[type], type]:
    """Class decorator: make `algorithm=<name>` run the class with `settings`."""
    def register(cls: type) -> type:
        _add(ALGORITHMS, name, AlgorithmEntry(name, settings, cls))
        return cls
    return register


def register_model(name: str, settings: type, build: Callable[[Any, Any], Any]) -> None:
    """Make `model.name=<name>` build models with `build(settings, data_info)`."""
    _add(MODELS, name, ModelEntry(name, settings, build))


def _add(registry: dict, name: str, entry) -> None:
    known = registry.get(name)
    if known is not None and known != entry:
        raise ValueError(f"{name!r} is registered twice: {known} and {entry}")
    registry[name] = entry


def lookup(registry: dict, kind: str, name: str):
    """The entry of `name`, or a ConfigError listing the valid names."""
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(registry))}")
    return registry[name]
