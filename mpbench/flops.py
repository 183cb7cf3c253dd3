"""How well a run uses its GPUs: model FLOPs per second and model FLOPs utilisation (MFU).

Training FLOPs per token of a decoder-only Transformer, as PaLM counts them (Chowdhery et al.
2022, appendix B; Kaplan et al. 2020, §2.1): 6N for the matrix multiplies of the forward (2N) and
backward (4N) passes, plus 12·L·d·T for attention's scores and weighted sums (L layers, width
d, sequence length T). N is every parameter the token passes through as a matrix multiply: the
position table is a lookup and is left out; the token embedding, tied to the output projection,
is counted once, for the projection's multiply. MFU is the model FLOPs a second achieved over
the peak of every worker's device at the run's dtype. Only GPT models have a count; on a CPU
there is no peak to compare with, so nothing is reported.
"""

from __future__ import annotations

import torch

# Dense peak TFLOP/s by device name (the vendor's data sheets, SXM parts, no sparsity). float32 is the
# plain FP32 pipe: torch does not use TF32 for matrix multiplies unless asked.
PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.4, "float32": 66.9},
    "H100": {"bfloat16": 989.4, "float32": 66.9},
    "A100": {"bfloat16": 312.0, "float32": 19.5},
}


def peak_flops(device_name: str, dtype: str) -> float | None:
    """The device's dense peak FLOP/s at `dtype`, or None if the table does not know it."""
    for name, peaks in PEAK_TFLOPS.items():
        if name in device_name and dtype in peaks:
            return peaks[dtype] * 1e12
    return None


def training_flops_per_token(model: torch.nn.Module, n_layer: int, d_model: int, seq_len: int) -> float:
    """6N + 12·L·d·T (PaLM, appendix B), N without the position table."""
    position = sum(m.weight.numel() for name, m in model.named_modules() if name.endswith("position"))
    n = sum(p.numel() for p in model.parameters()) - position
    return 6 * n + 12 * n_layer * d_model * seq_len


def utilisation(flops_per_token: float, tokens_per_s: float, peak_per_device: float | None, devices: int) -> dict:
    """Achieved model TFLOP/s, and MFU against `devices` x the peak (None where the peak is unknown)."""
    achieved = flops_per_token * tokens_per_s
    return {"model_tflops_per_s": achieved / 1e12,
            "mfu": None if peak_per_device is None else achieved / (peak_per_device * devices)}
