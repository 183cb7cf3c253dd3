"""Bring your own model (`model=custom model.target=...`, models/custom.py, examples/char_mlp.py):
a plain nn.Sequential is wrapped with its shared parameters declared as ties, a BlockModel is kept
as it is, and the result trains with every algorithm, exactly where the algorithm is exact."""

from __future__ import annotations

import shutil

import pytest
import torch

import algorithms  # noqa: F401 (registers them)
from examples.char_mlp import build as build_char_mlp
from models.custom import as_block_model, build
from models.custom import CustomModelSettings
from mpbench.blocks import BlockModel, TiedParameter
from mpbench.data.base import DataInfo
from mpbench.registry import ALGORITHMS
from tests.cli import REPO, TINY, merged_weights, read_summary, run_cli, run_to_completion

CHARS = DataInfo("chars", "lm", (16,), vocab_size=11, unit="char")


def test_a_sequential_becomes_blocks_with_its_shared_parameters_tied():
    model = build(CustomModelSettings(target="examples.char_mlp:build", options={"depth": 3}), CHARS)
    assert isinstance(model, BlockModel) and len(model.blocks) == 5 and model.task == "lm"
    assert model.ties == (TiedParameter("blocks.0.token.weight", ((0, "token.weight"), (4, "weight"))),)
    assert model.blocks[0].token.weight is model.blocks[4].weight
    assert model.heads is not None and not model.heads.holds_blocks
    torch.manual_seed(0)
    sequential = build_char_mlp(CHARS)
    x = torch.randint(0, 11, (2, 16))
    assert torch.equal(as_block_model(sequential, "lm")(x), sequential(x))  # the same function


def test_a_block_model_is_used_as_it_is(tmp_path, monkeypatch):
    (tmp_path / "my_blocks.py").write_text(
        "from torch import nn\nfrom mpbench.blocks import BlockModel\n"
        "def build(data, width=4):\n"
        "    return BlockModel([nn.Flatten(), nn.Linear(6, width), nn.Linear(width, data.num_classes)], "
        "'classification')\n")
    monkeypatch.chdir(tmp_path)  # a user's module beside where they run
    model = build(CustomModelSettings(target="my_blocks:build", options={"width": 7}),
                  DataInfo("toy", "classification", (6,), num_classes=3))
    assert [type(b).__name__ for b in model.blocks] == ["Flatten", "Linear", "Linear"]
    assert model.blocks[1].out_features == 7 and model.ties == () and model.heads is not None


@pytest.mark.parametrize("target,message", [
    ("examples.char_mlp", "package.module:function"), ("examples.char_mlp:nope", "has no function nope"),
    ("no_such_package.models:build", "cannot import no_such_package.models"),
])
def test_a_bad_target_is_one_line(target, message):
    with pytest.raises(ValueError, match=message):
        build(CustomModelSettings(target=target), CHARS)


def test_a_broken_module_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_model.py").write_text("def build(data):\n    return (\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="cannot import broken_model .SyntaxError"):
        build(CustomModelSettings(target="broken_model:build"), CHARS)


def test_options_must_be_a_mapping():
    from mpbench.config import settings_from
    from mpbench.errors import ConfigError
    with pytest.raises(ConfigError, match="model.options must be a mapping or null, got 3"):
        settings_from(CustomModelSettings, {"target": "examples.char_mlp:build", "options": 3}, "model")


def test_a_function_returning_something_else_is_refused(tmp_path, monkeypatch):
    (tmp_path / "not_a_model.py").write_text("def build(data):\n    return 3\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="returned a int; return a mpbench.blocks.BlockModel or a torch.nn.Sequential"):
        build(CustomModelSettings(target="not_a_model:build"), CHARS)


@pytest.mark.slow
def test_a_users_model_trains_with_every_algorithm(tmp_path):
    """The example, copied beside where the user runs, through one multirun of every algorithm."""
    shutil.copy(REPO / "examples" / "char_mlp.py", tmp_path / "my_models.py")
    one_worker = {"backprop", "sub_model_backprop"}
    custom = ["model=custom", "model.target=my_models:build", "steps=2", "eval_every=2", "eval_batches=1"]
    grids = [["algorithm=" + ",".join(sorted(set(ALGORITHMS) - one_worker)), "gpus=2"],
             ["algorithm=sub_model_backprop", "gpus=1", "algorithm.groups=2"]]  # backprop: the next test
    trained = set()
    for number, grid in enumerate(grids):
        sweep = tmp_path / f"sweep{number}"
        result = run_cli(["-m", *TINY, *custom, *grid, "report.add_reference=false", f"hydra.sweep.dir={sweep}"],
                         cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stderr
        for run_dir in sorted(p for p in sweep.iterdir() if (p / "summary.json").exists()):
            summary = read_summary(run_dir)
            assert summary["status"] == "ok", (run_dir.name, summary["reason"])
            trained.add(summary["algorithm"])
    assert trained == set(ALGORITHMS) - {"backprop"}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["pipeline", "ddg"])
def test_a_users_model_split_across_workers_equals_its_reference(algorithm, tmp_path):
    """float64: the pipeline equals backprop, ddg's workers equal its one-process emulation; the
    tied embedding's copies on the first and last worker stay identical (merged_weights checks)."""
    common = [*TINY, "model=custom", "model.target=examples.char_mlp:build", "dtype=float64", "steps=4",
              "save_weights=true", "dataset.seq_len=16"]
    reference = ["algorithm=backprop", "gpus=1"] if algorithm == "pipeline" else \
        ["algorithm=ddg", "gpus=1", "algorithm.runtime=emulated", "algorithm.modules=2"]
    want = merged_weights(run_to_completion(tmp_path, "reference", [*common, *reference]), 1)
    got = merged_weights(run_to_completion(tmp_path, algorithm, [*common, f"algorithm={algorithm}", "gpus=2"]), 2)
    assert want.keys() == got.keys()
    assert max((want[k] - got[k]).abs().max().item() for k in want) <= 1e-10
