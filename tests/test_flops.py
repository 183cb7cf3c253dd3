"""MFU's ingredients: the training FLOPs of a GPT token, the peak table, and the arithmetic."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mpbench.data.base import DataInfo
from mpbench.flops import peak_flops, training_flops_per_token, utilisation
from models.gpt import GPTSettings, build


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
