"""autocast and compile (mpbench/block_compute.py): what each changes in a block, and that every
algorithm family still runs with them. The GPU side (MFU, bf16 speed) is benchmarks/gpu_check.sh."""

from __future__ import annotations

import copy

import pytest
import torch

from models import build_model
from models.gpt import GPTSettings
from models.mlp import MLPSettings
from mpbench.block_compute import prepare_blocks
from mpbench.data.base import DataInfo
from tests.cli import TINY, read_summary, run_cli

CHARS = DataInfo("chars", "lm", (8,), vocab_size=13, unit="char")
IMAGES = DataInfo("small_images", "classification", (3, 6, 6), num_classes=5)


def _gpt(dtype=torch.float32):
    torch.manual_seed(0)
    return build_model("gpt", GPTSettings(n_layer=2, n_head=2, d_model=32, context=8), CHARS).to(dtype)


def _tokens():
    return torch.randint(0, 13, (4, 8), generator=torch.Generator().manual_seed(1))


def test_autocast_computes_blocks_in_bfloat16_and_hands_on_float32():
    plain, mixed = _gpt(), _gpt()
    prepare_blocks(mixed, "cpu", torch.float32, autocast=True, compile=False)
    x = _tokens()
    reference, outputs = plain(x), []
    hooks = [b.register_forward_hook(lambda m, i, o: outputs.append(o.dtype)) for b in mixed.blocks]
    y = mixed(x)
    for h in hooks:
        h.remove()
    # Inside, the matrix multiplies ran in bfloat16 (about 3 significant digits)...
    assert not torch.equal(y, reference)
    torch.testing.assert_close(y, reference, rtol=0.05, atol=0.05)
    # ...but every block hands on float32, so the activations workers exchange keep their type.
    assert y.dtype == torch.float32
    mixed.loss(y, x).backward()
    assert all(p.grad.dtype == torch.float32 for p in mixed.parameters())
    assert mixed.state_dict().keys() == plain.state_dict().keys()


def test_autocast_is_off_by_default_and_leaves_blocks_untouched():
    plain, same = _gpt(torch.float64), _gpt(torch.float64)
    prepare_blocks(same, "cpu", torch.float64, autocast=False, compile=False)
    x = _tokens()
    assert torch.equal(plain(x), same(x))


@pytest.mark.slow
def test_compile_keeps_the_function_and_the_names():
    torch.manual_seed(0)
    eager = build_model("mlp", MLPSettings(hidden=(7, 5)), IMAGES).double()
    compiled = copy.deepcopy(eager)
    prepare_blocks(compiled, "cpu", torch.float64, autocast=False, compile=True)
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    target = torch.tensor([0, 3, 4])
    for model in (eager, compiled):
        model.loss(model(x), target).backward()
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-12, atol=1e-12)
    for (name, p), (other, q) in zip(eager.named_parameters(), compiled.named_parameters()):
        assert name == other
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-12)
    assert compiled.state_dict().keys() == eager.state_dict().keys()


@pytest.mark.slow
def test_every_family_runs_under_autocast(tmp_path):
    """Activations cross workers between blocks (pipeline, ddg, local_critic) and gradients are
    all-reduced (data_parallel): with autocast each still runs, and the record says autocast."""
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *TINY, "gpus=2", "autocast=true", "algorithm=data_parallel,pipeline,ddg,local_critic",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summaries = [read_summary(d) for d in sorted(sweep.iterdir()) if (d / "summary.json").exists()]
    assert len(summaries) == 4
    for summary in summaries:
        assert summary["status"] == "ok", summary["reason"]
        assert summary["autocast"] is True and summary["compile"] is False
