"""Every YAML file composes into a valid RunSpec; typed checks name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mpbench.config import run_spec_from
from mpbench.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments"
GROUPS = ["algorithm", "model", "dataset", "optimizer", "logger", "experiment"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONFIG_DIR / group).glob("*.yaml"))]
# Choices that need a matching partner to form a valid run.
PARTNERS = {"resnet20": ["dataset=cifar10"], "resnet110": ["dataset=cifar10"],
            "resnet1001": ["dataset=cifar10"], "lc_vgg": ["dataset=cifar10"], "mlp": ["dataset=fashion_mnist"],
            "data_parallel": ["gpus=2"]}


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_config_file_composes_into_a_valid_spec(group, option):
    spec = run_spec_from(composed([f"{group}={option}", *PARTNERS.get(option, [])]))
    assert spec.steps > 0 and spec.optimizer.lr > 0


@pytest.mark.parametrize("override,named", [
    ("batch_size=-4", "batch_size"), ("eval_every=0", "eval_every"), ("threads_per_worker=0", "threads_per_worker"),
    ("timeout_s=0", "timeout_s"), ("device=tpu", "device"), ("optimizer.lr=0", "lr"),
    ("optimizer.schedule=linear", "schedule"), ("dataset.seq_len=0", "seq_len"),
    ("fault={rank:5,step:1,kind:raise}", "fault.rank"), ("save_weights=3", "save_weights"),
])
def test_typed_checks_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        run_spec_from(composed([override]))
