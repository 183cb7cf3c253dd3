"""One config schema: every YAML file composes into a RunSpec carrying what the file says; the YAML
defaults are the settings classes' defaults; every field is documented; typed checks name the key."""

from __future__ import annotations

import dataclasses
import re
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
            "resnet1001": ["dataset=cifar10"], "lc_vgg": ["dataset=cifar10"], "dgl_cnn": ["dataset=cifar10"],
            "mlp": ["dataset=fashion_mnist"],
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


def test_top_level_yaml_defaults_are_the_settings_defaults(monkeypatch):
    for name in ("MPBENCH_SIMULATE_ALONGSIDE", "MPBENCH_RETIME_STEPS"):  # tests set them; a user's shell does not
        monkeypatch.delenv(name, raising=False)
    raw = OmegaConf.load(CONFIG_DIR / "config.yaml")
    values = {k: v for k, v in OmegaConf.to_container(raw).items() if k in ("defaults", "hydra")}
    values |= OmegaConf.to_container(OmegaConf.masked_copy(raw, [k for k in raw if k not in ("defaults", "hydra")]),
                                     resolve=True)
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


# ---- range checks: NaN never passes, infinities only where they mean something (nowhere yet) ----

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("value,low,high,opens,ok", [
    (0.5, 0, 1, (False, True), True), (0, 0, 1, (False, True), True), (1, 0, 1, (False, True), False),
    (0, 0, None, (True, False), False), (1e300, 0, None, (True, False), True), (NAN, 0, 1, (False, False), False),
    (NAN, None, None, (False, False), False), (INF, 0, None, (True, False), False),
    (-INF, None, 0, (False, False), False), (True, 0, 1, (False, False), False), ("1", 0, 1, (False, False), False),
])
def test_check_range(value, low, high, opens, ok):
    from mpbench.settings import check_range
    if ok:
        check_range("key", value, low, high, low_open=opens[0], high_open=opens[1])
    else:
        with pytest.raises(ValueError, match=r"^key must be a finite number"):
            check_range("key", value, low, high, low_open=opens[0], high_open=opens[1])


@pytest.mark.parametrize("values,named", [
    ({"lr": NAN}, "lr"), ({"lr": INF}, "lr"), ({"lr": -1e-3}, "lr"), ({"lr": 0}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"weight_decay": NAN}, "weight_decay"), ({"weight_decay": INF}, "weight_decay"),
    ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"), ({"momentum": NAN}, "momentum"),
    ({"betas": (0.9, 1.0)}, "betas"), ({"betas": (-0.1, 0.9)}, "betas"), ({"betas": (NAN, 0.9)}, "betas"),
    ({"betas": (0.9, 0.99, 0.999)}, "betas"), ({"betas": (0.9,)}, "betas"),
    ({"eps": 0}, "eps"), ({"eps": -1e-8}, "eps"), ({"eps": NAN}, "eps"), ({"eps": INF}, "eps"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"min_lr_ratio": 1.5}, "min_lr_ratio"), ({"min_lr_ratio": NAN}, "min_lr_ratio"),
    ({"decay_factor": 0}, "decay_factor"), ({"decay_factor": 1.5}, "decay_factor"), ({"decay_factor": NAN}, "decay_factor"),
    ({"milestones": (0, 5)}, "milestones"), ({"milestones": (5, 3)}, "milestones"),
    ({"clip_norm": 0}, "clip_norm"), ({"clip_norm": NAN}, "clip_norm"), ({"clip_norm": INF}, "clip_norm"),
])
def test_optimizer_ranges_name_the_key(values, named):
    with pytest.raises(ValueError, match=rf"^{named} must"):
        OptimizerSpec(**values)


def test_optimizer_edges_that_are_valid():
    OptimizerSpec(momentum=0.0, betas=(0.0, 0.999), weight_decay=0.0, decay_factor=1.0, min_lr_ratio=1.0,
                  milestones=(3, 5), lr=1e6)


@pytest.mark.parametrize("values,named", [
    ({"timeout_s": NAN}, "timeout_s"), ({"timeout_s": INF}, "timeout_s"), ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": -5}, "timeout_s"), ({"timeout_s": 1e9}, "timeout_s"),
    ({"seed": -1}, "seed"), ({"seed": 2**63}, "seed"), ({"seed": 10**30}, "seed"),
    ({"divergence_factor": INF}, "divergence_factor"), ({"divergence_factor": NAN}, "divergence_factor"),
    ({"divergence_factor": 1.0}, "divergence_factor"),
    ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"), ({"eval_every": -1}, "eval_every"),
    ({"eval_batches": 0}, "eval_batches"), ({"threads_per_worker": 0}, "threads_per_worker"), ({"gpus": -2}, "gpus"),
    ({"worker_limit": 0}, "worker_limit"), ({"worker_limit": "many"}, "worker_limit"),
    ({"divergence_patience": -1}, "divergence_patience"), ({"checkpoint_every": -1}, "checkpoint_every"),
])
def test_run_settings_ranges_name_the_key(values, named):
    with pytest.raises(ValueError, match=rf"^{named} must"):
        RunSettings(**values)


def test_run_settings_edges_that_are_valid():
    RunSettings(seed=2**63 - 1, timeout_s=7 * 24 * 3600, worker_limit=1, divergence_factor=1.0001)


@pytest.mark.parametrize("override,named", [
    ("fault={rank:0,step:0,kind:raise}", "fault.step"), ("fault={rank:0,step:301,kind:raise}", "fault.step"),
    ("fault={rank:-1,step:1,kind:raise}", "fault.rank"), ("report.target=nan", "report.target"),
    ("report.target=inf", "report.target"), ("report.target_margin=nan", "report.target_margin"),
    ("optimizer.lr=inf", "optimizer.lr"), ("optimizer.betas=[0.9,1.5]", "optimizer.betas"),
    ("timeout_s=inf", "timeout_s"), ("seed=9223372036854775808", "seed"),
    ("algorithm=data_parallel gpus=2 algorithm.bucket_cap_mb=inf", "algorithm.bucket_cap_mb"),
    ("algorithm=local_critic gpus=2 algorithm.critic_lr=inf", "algorithm.critic_lr"),
    ("algorithm=dni gpus=2 algorithm.synthesizer_lr=nan", "algorithm.synthesizer_lr"),
    ("model=lc_vgg dataset=cifar10 +model.bn_eps=inf", "model.bn_eps"),
    ("model.dropout=nan", "dropout"),
    ("gpus=1000 device=cpu", "worker_limit"), ("gpus=9 device=cpu worker_limit=8", "worker_limit=8"),
    ("~steps", "steps is a required key"), ("~model.n_layer", "model.n_layer is required"),
])
def test_range_checks_through_the_config_name_the_key(override, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        run_spec_from(composed(override.split()))


def test_an_explicit_worker_limit_allows_more_workers():
    assert run_spec_from(composed(["gpus=9", "device=cpu", "worker_limit=9", "algorithm=data_parallel"])).gpus == 9


def test_auto_worker_limit_is_four_per_core_and_at_least_eight(monkeypatch):
    from mpbench import topology
    monkeypatch.setattr(topology, "available_cores", lambda: 1)
    assert topology.cpu_worker_limit("auto") == 8
    monkeypatch.setattr(topology, "available_cores", lambda: 16)
    assert topology.cpu_worker_limit("auto") == 64
    assert topology.cpu_worker_limit(3) == 3
    topology.check_worker_limit(64, "cpu", "auto")
    with pytest.raises(ConfigError, match="gpus=65.*worker_limit=auto allows 64.*worker_limit=65"):
        topology.check_worker_limit(65, "cpu", "auto")


def test_a_key_of_another_option_says_which_option_has_it():
    with pytest.raises(ConfigError) as error:
        run_spec_from(composed(["dataset=cifar10", "+dataset.seq_len=32"]))  # as a preset for text would set it
    assert str(error.value) == ("dataset.seq_len is a key of dataset ptb, tinyshakespeare, wikitext2, not of cifar10 "
                                "(the chosen one); valid keys of dataset cifar10: augment, format")


@pytest.mark.parametrize("task,ok", [
    (["algorithm=backprop"], True), (["algorithm=[backprop,data_parallel]"], False), (["model=[gpt_tiny]"], False),
    (["+experiment=[smoke,lc1]"], False), (["optimizer.betas=[0.9,0.99]"], True), (["dataset=[ptb,cifar10]"], False),
])
def test_a_list_for_a_config_group_is_refused(task, ok):
    from types import SimpleNamespace

    from mpbench.config import check_group_choices
    hydra_cfg = SimpleNamespace(overrides=SimpleNamespace(task=task))
    if ok:
        check_group_choices(hydra_cfg)
    else:
        with pytest.raises(ConfigError, match=r"takes one option, not a list.*-m "):
            check_group_choices(hydra_cfg)


@pytest.mark.parametrize("args,expected", [
    (["hydra.run.dir=/tmp/résumé/run"], ["hydra.run.dir='/tmp/résumé/run'"]),
    (["data_dir='/tmp/ü'"], ["data_dir='/tmp/ü'"]), (["-m", "gpus=1,2"], ["-m", "gpus=1,2"]),
    (["-cn", "config", "steps=3"], ["-cn", "config", "steps=3"]),
    (["hydra.run.dir=/tmp/it's-é"], ['hydra.run.dir="/tmp/it\'s-é"']),
])
def test_non_ascii_values_are_quoted_for_hydra(args, expected):
    from mpbench.user_errors import check_overrides
    assert check_overrides(args) == expected


@pytest.mark.parametrize("arg,named", [
    ("gpus＝2", "'＝' (U+FF1D); use '='"), ("steps=１０", "'１' (U+FF11); use '1'"),
    ("algorithm=data–parallel", "'–' (U+2013); use '-'"), ("algorithm.balance=[1,2", "unbalanced brackets"),
    ("model.options={a:1", "unbalanced brackets"), ("report.target=1]", "unbalanced brackets"),
    ("x='abc", "unbalanced quotes"), ("stéps=3", "the key 'stéps'"),
])
def test_bad_overrides_are_named(arg, named):
    from mpbench.user_errors import check_overrides
    with pytest.raises(ConfigError, match=re.escape(named)) as error:
        check_overrides([arg])
    assert arg in str(error.value)


def test_a_batch_larger_than_the_data_names_both():
    from mpbench.data import DataInfo, DatasetError, check_batch_fits
    info = DataInfo("toy", "classification", (1, 4, 4), num_classes=2, train_samples=100)
    check_batch_fits(info, 100)
    with pytest.raises(DatasetError, match="batch_size=101 is larger than the 100 training samples of toy"):
        check_batch_fits(info, 101)
    check_batch_fits(DataInfo("unknown size", "lm", (8,), vocab_size=3), 10**9)
