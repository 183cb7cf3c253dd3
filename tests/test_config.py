"""One config schema: every YAML file composes into a RunSpec carrying what the file says; the YAML
defaults are the settings classes' defaults; every field is documented; typed checks name the key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import algorithms  # noqa: F401 (registers the algorithms)
import models  # noqa: F401 (registers the models)
from mpbench.config import GROUPS, LoggerSpec, OptimizerSpec, RunSettings, run_spec_from
from mpbench.data import DATASETS
from mpbench.errors import ConfigError
from mpbench.registry import ALGORITHMS, MODELS
from mpbench.settings import Settings, field_docs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments"
OPTIONS = [(group, path.stem) for group in [*GROUPS, "experiment"] for path in sorted((CONFIG_DIR / group).glob("*.yaml"))]
# Choices that need a matching partner to form a valid run.
PARTNERS = {"resnet20": ["dataset=cifar10"], "resnet110": ["dataset=cifar10"],
            "resnet1001": ["dataset=cifar10"], "lc_vgg": ["dataset=cifar10"], "mlp": ["dataset=fashion_mnist"],
            "data_parallel": ["gpus=2"], "custom": ["model.target=examples.char_mlp:build"]}


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def group_settings(spec, group: str):
    return {"algorithm": spec.algorithm_settings, "model": spec.model_settings, "dataset": spec.dataset_settings,
            "optimizer": spec.optimizer, "logger": spec.logger}[group]


def plain(value):
    return tuple(plain(v) for v in value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_config_file_composes_into_a_spec_that_carries_it(group, option):
    cfg = composed([f"{group}={option}", *PARTNERS.get(option, [])])
    spec = run_spec_from(cfg)
    values = OmegaConf.to_container(cfg, resolve=True)
    if group == "experiment":  # a preset: every top-level key it sets reached the spec
        preset = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml"))
        assert {k for k in preset if k not in ("defaults", "hydra")} <= {f.name for f in dataclasses.fields(RunSettings)} | set(GROUPS)
        for key in {f.name for f in dataclasses.fields(RunSettings)} & set(preset):
            assert plain(getattr(spec, key)) == plain(values[key]), key
        for section in set(GROUPS) & set(preset):
            for key, value in preset[section].items():
                assert plain(getattr(group_settings(spec, section), key)) == plain(value), f"{section}.{key}"
        return
    settings = group_settings(spec, group)
    chosen = values[group]
    assert (settings.name if group in ("optimizer", "logger") else getattr(spec, group)) == chosen["name"]
    for key, value in chosen.items():
        if key != "name":
            assert plain(getattr(settings, key)) == plain(value), f"{group}={option}: {key}"


def settings_classes() -> dict[str, type]:
    classes = {"top level": RunSettings, "optimizer": OptimizerSpec, "logger": LoggerSpec}
    classes.update({f"algorithm {name}": entry.settings for name, entry in ALGORITHMS.items()})
    classes.update({f"model {name}": entry.settings for name, entry in MODELS.items()})
    classes.update({f"dataset {name}": spec[0] for name, spec in DATASETS.items()})
    return classes


@pytest.mark.parametrize("where,cls", list(settings_classes().items()), ids=list(settings_classes()))
def test_every_setting_is_typed_and_documented(where, cls):
    assert issubclass(cls, Settings), f"{where}: {cls.__name__} does not use the settings schema"
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        assert f.name in hints and docs[f.name], f"{where}: field {f.name} has no docstring"


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "algorithm").glob("*.yaml")), ids=lambda p: p.stem)
def test_algorithm_yaml_defaults_are_the_settings_defaults(path):
    """The YAML files show the defaults a user sees; the dataclasses must hold the same ones."""
    values = OmegaConf.to_container(composed([f"algorithm={path.stem}"]).algorithm, resolve=True)
    defaults = ALGORITHMS[values.pop("name")].settings()
    assert {k: plain(v) for k, v in values.items()} == {f.name: plain(getattr(defaults, f.name))
                                                        for f in dataclasses.fields(defaults)}


def test_top_level_yaml_defaults_are_the_settings_defaults():
    values = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "config.yaml"))
    defaults = RunSettings()
    for f in dataclasses.fields(RunSettings):
        expected = getattr(defaults, f.name)
        expected = dataclasses.asdict(expected) if dataclasses.is_dataclass(expected) else expected
        assert values[f.name] == expected, f.name
    assert set(values) - {"defaults", "hydra"} == {f.name for f in dataclasses.fields(RunSettings)}


@pytest.mark.parametrize("override,named", [
    ("batch_size=-4", "batch_size"), ("eval_every=0", "eval_every"), ("threads_per_worker=0", "threads_per_worker"),
    ("timeout_s=0", "timeout_s"), ("device=tpu", "device"), ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.schedule=linear", "optimizer.schedule"), ("dataset.seq_len=0", "seq_len"),
    ("fault={rank:5,step:1,kind:raise}", "fault.rank"), ("save_weights=3", "save_weights"),
    ("algorithm=ddg algorithm.semantics=X", "algorithm.semantics must be one of S, H, R"),
])
def test_typed_checks_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        run_spec_from(composed(override.split()))


def test_the_configuration_reference_is_the_settings_docstrings():
    from mpbench.config_docs import PAGE, render
    assert PAGE.read_text() == render(), "docs/configuration.md is stale: run `make docs`"
