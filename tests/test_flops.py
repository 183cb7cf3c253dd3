"""MFU's ingredients: the training FLOPs of a GPT token, the peak table, and the arithmetic; and the
CPU side of the GPU check that measures it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mpbench.data.base import DataInfo
from mpbench.flops import peak_flops, training_flops_per_token, utilisation
from models.gpt import GPTSettings, build
from tests.cli import REPO


def test_the_count_matches_torchs_flop_counter_on_a_training_step():
    settings = GPTSettings(n_layer=2, n_head=2, d_model=64, context=32, dropout=0.0)
    info = DataInfo(name="chars", task="lm", input_shape=(32,), num_classes=None, vocab_size=50)
    torch.manual_seed(0)
    model = build(settings, info)
    tokens = torch.randint(0, 50, (4, 32))
    with FlopCounterMode(display=False) as counter:
        model.loss(model(tokens), tokens).backward()
    # torch counts the matrix multiplies (its CPU attention kernel not among them), not norms and biases
    counted = counter.get_total_flops() / tokens.numel()
    ours = training_flops_per_token(model, settings.n_layer, settings.d_model, 32)
    attention = 12 * settings.n_layer * settings.d_model * 32
    assert ours - attention == pytest.approx(counted, rel=0.03)
    assert training_flops_per_token(model, 2, 64, 16) == ours - 12 * 2 * 64 * 16  # attention grows with T


def test_peaks_by_device_name_and_dtype():
    assert peak_flops("NVIDIA H200", "bfloat16") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA A100-SXM4-80GB", "float32") == pytest.approx(19.5e12)
    assert peak_flops("NVIDIA H200", "float64") is None and peak_flops("Some GPU", "bfloat16") is None


def test_mfu_is_achieved_over_every_devices_peak():
    one = utilisation(1e9, 1e5, 989.4e12, devices=1)
    assert one["model_tflops_per_s"] == pytest.approx(100.0) and one["mfu"] == pytest.approx(100 / 989.4)
    assert utilisation(1e9, 1e5, 989.4e12, devices=2)["mfu"] == pytest.approx(50 / 989.4)
    assert utilisation(1e9, 1e5, None, devices=1)["mfu"] is None


@pytest.mark.slow
def test_the_gpu_check_refuses_without_a_gpu_and_its_equivalence_part_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py is run on a GPU machine; here, its CPU side: one clear line without
    CUDA, and its equivalence spot-checks (data_parallel and a one-stage pipeline vs backprop)."""
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path)]
    refused = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "no CUDA device" in refused.stderr
    dry = subprocess.run([*command, "--part", "equivalence", "--cpu"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["equivalence"]
    assert [r["algorithm"] for r in rows] == ["data_parallel", "pipeline, 1 stage"]
    assert all(r["equal"] and r["max_abs_difference"] <= 1e-10 for r in rows)
