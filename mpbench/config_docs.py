"""docs/configuration.md, generated from the settings classes' field docstrings (one source).

    make docs    (python -c "import algorithms, models, mpbench.config_docs as d; d.write()")

The registries must be filled first (importing the plugin packages does it); tests/test_config.py
fails when the committed page differs from what this module writes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from mpbench.config import LoggerSpec, OptimizerSpec, RunSettings
from mpbench.data.registry import DATASETS
from mpbench.registry import ALGORITHMS, MODELS
from mpbench.settings import field_docs

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
HEADER = """# Configuration reference

Every key a run takes, with its default and meaning. Generated from the settings classes
(`make docs`); do not edit by hand. Any key can be set on the command line (`key=value`,
`group.key=value`) and swept with Hydra (`-m key=a,b`); `experiments/` holds the YAML files that
set the defaults and the presets. Bad values are rejected before any worker starts, in one line
naming the key.
"""


def _type(hint) -> str:
    """A type as a reader says it: "integer or null", "one of l1, mse", "list of integers"."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    words = []
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is typing.Literal:
            words.append("one of " + ", ".join(map(str, typing.get_args(option))))
        elif origin is tuple:
            words.append(f"list of {NAMES.get(typing.get_args(option)[0], 'values')}s")
        elif dataclasses.is_dataclass(origin):
            words.append("mapping")
        else:
            words.append(NAMES.get(origin, getattr(origin, "__name__", str(option))))
    return " or ".join(words)


NAMES = {int: "integer", float: "number", bool: "true/false", str: "string", dict: "mapping", type(None): "null",
         typing.Any: "any"}


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see below"
    if isinstance(value, tuple):
        value = list(value)
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def table(cls: type, prefix: str = "") -> list[str]:
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        doc = docs[f.name].replace("|", "\\|")
        lines.append(f"| `{prefix}{f.name}` | {_type(hints[f.name])} | `{_default(f)}` | {doc} |")
    return lines


def render() -> str:
    sections = [HEADER, "## Top level (experiments/config.yaml)", "", *table(RunSettings), ""]
    for name in ("report", "simulator", "fault"):
        section = typing.get_type_hints(RunSettings)[name]
        section = next(o for o in (typing.get_args(section) or (section,)) if dataclasses.is_dataclass(o))
        sections += [f"### `{name}`", "", section.__doc__.strip(), "", *table(section, f"{name}."), ""]
    sections += ["## `optimizer` (experiments/optimizer/)", "", *table(OptimizerSpec, "optimizer."), "",
                 "## `logger` (experiments/logger/)", "", *table(LoggerSpec, "logger."), ""]
    for group, registry in (("algorithm", {n: e.settings for n, e in ALGORITHMS.items()}),
                            ("model", {n: e.settings for n, e in MODELS.items()}),
                            ("dataset", {n: spec[0] for n, spec in DATASETS.items()})):
        sections += [f"## `{group}` (experiments/{group}/)", "",
                     f"A file of experiments/{group}/ chooses one of these by its `name` and sets its keys.", ""]
        for name, cls in registry.items():
            sections += [f"### {group}: `{name}`", ""]
            sections += [*table(cls, f"{group}."), ""] if dataclasses.fields(cls) else ["No settings.", ""]
    return "\n".join(sections).rstrip() + "\n"


def write(path: Path = PAGE) -> None:
    path.write_text(render())
