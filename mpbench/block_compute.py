"""How a model's blocks compute: bf16 autocast and torch.compile, the two GPU options.

Both act on each block of the `BlockModel` and leave everything else alone, which is what lets
every algorithm use them unchanged:

- `autocast=true` runs each block's forward under `torch.autocast(bfloat16)` (its backward follows
  the forward's casts) and casts the block's output back to the run's dtype. Blocks therefore
  still exchange activations in that dtype (float32), so the messages an algorithm sends between
  workers keep their sizes and types; the parameters, gradients and optimizer states stay float32
  (mixed precision as torch's AMP recipe, without a loss scaler: bf16 has float32's range). The
  cast at each block boundary costs one elementwise pass over the block's output.
- `compile=true` compiles each block's forward in place (`torch.compile`): parameter names, state
  dicts and checkpoints are unchanged, and a worker compiles only the blocks it runs, on first use.
  Off by default: a compile costs tens of seconds per block shape and pays only on long runs.

Local heads an algorithm builds (critics, synthesizers) are not blocks and compute in dtype.
"""

from __future__ import annotations

import functools

import torch

from mpbench.blocks import BlockModel


def prepare_blocks(model: BlockModel, device_type: str, dtype: torch.dtype, *, autocast: bool,
                   compile: bool) -> None:
    """Apply the run's `autocast` and `compile` settings to every block of `model`, in place."""
    for block in model.blocks:
        # The block's own forward is what gets compiled, not the autocast wrapper around it: the
        # compiler keys its cache by function, and one wrapper shared by every kind of block would
        # pass its recompile limit; a compiled function traces under the autocast state it is
        # called in.
        if compile:
            block.forward = torch.compile(block.forward)
        if autocast:
            block.forward = _under_autocast(block.forward, device_type, dtype)


def _under_autocast(forward, device_type: str, dtype: torch.dtype):
    @functools.wraps(forward)
    def forward_in_bfloat16(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            output = forward(*args, **kwargs)
        return output.to(dtype) if output.is_floating_point() else output
    return forward_in_bfloat16
