"""Running a module's forward again exactly as it first ran, and measuring what a forward keeps.

Recomputation (Features Replay's backward, or rebuilding a batch's graph when a run resumes from
a checkpoint) must see the same random draws (dropout masks) as the original forward and must
not update BatchNorm's running statistics a second time. Memory accounting counts the elements
autograd saves for a backward, besides the weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

RngState = tuple  # (CPU generator state, CUDA generator state or None)


def rng_state(device: torch.device) -> RngState:
    """The random-number state a forward on `device` is about to use."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def rerun_as_before(module: nn.Module, rng: RngState, device: torch.device,
                    forward: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`forward()` with the random state `rng` (the same dropout masks as the forward that
    recorded it), leaving `module`'s buffers (BatchNorm statistics) as they were, so that they are
    updated once per batch; the caller's own random state is untouched."""
    buffers = [b.clone() for b in module.buffers()]
    cpu_state, cuda_state = rng
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)
        out = forward()
    # Through .data: the replayed graph saved the statistics as inputs of batch_norm (their values
    # are not used by its training-mode backward), and an in-place copy on the tensors themselves
    # would bump the version autograd checks when that backward runs.
    with torch.no_grad():
        for live, before in zip(module.buffers(), buffers):
            live.data.copy_(before)
    return out


def count_saved_elements(forward: Callable[[], torch.Tensor],
                         weights: dict[str, torch.Tensor]) -> tuple[int, torch.Tensor]:
    """Run `forward()` and count the elements autograd saves for its backward besides `weights`
    (the activations a delayed backward keeps alive); returns (count, output)."""
    weight_storage = {t.data_ptr() for t in weights.values()}
    count = 0

    def pack(tensor):
        nonlocal count
        if tensor.data_ptr() not in weight_storage:
            count += tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = forward()
    return count, out
