"""Evaluation of a model whose stages live on different workers.

Forward only, one held-out batch at a time, in stage order: a worker runs the stages it owns and
passes the activation to the owner of the next stage. Activations travel with a small shape
header, so any batch size works (training schedules, by contrast, fix their shapes). This is
harness traffic, not counted in the algorithm's bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models.blocks import BlockModel, EvalTotals
from mpbench.transport import Transport

MAX_DIMS = 8


def send_activation(transport: Transport, tensor: torch.Tensor, dst: int) -> None:
    header = torch.zeros(MAX_DIMS + 1, dtype=torch.int64, device=tensor.device)
    header[0] = tensor.dim()
    header[1:tensor.dim() + 1] = torch.tensor(tensor.shape)
    transport.send(header, dst, count=False)
    transport.send(tensor.contiguous(), dst, count=False)


def recv_activation(transport: Transport, src: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    header = transport.recv(torch.zeros(MAX_DIMS + 1, dtype=torch.int64, device=device), src)
    shape = header[1:header[0].item() + 1].tolist()
    return transport.recv(torch.empty(shape, dtype=dtype, device=device), src)


@torch.no_grad()
def evaluate_stages(model: BlockModel, stages: dict[int, nn.Module], owner: Callable[[int], int],
                    num_stages: int, batches, transport: Transport) -> EvalTotals:
    """Held-out totals for `batches`, computed on the owner of the last stage (zero elsewhere).

    `stages` maps the stage indices this worker owns to their modules; `owner(s)` is the global
    rank holding stage s. Every worker of the pipeline calls this with the same batches.
    """
    me, totals = transport.rank, EvalTotals()
    modes = {s: module.training for s, module in stages.items()}
    for module in stages.values():
        module.eval()
    for inputs, targets in batches:
        h = inputs
        for s in range(num_stages):
            if owner(s) != me:
                continue
            if s > 0 and owner(s - 1) != me:
                h = recv_activation(transport, owner(s - 1), model_dtype(stages[s]), inputs.device)
            h = stages[s](h)
            if s == num_stages - 1:
                totals += model.eval_totals(h, targets)
            elif owner(s + 1) != me:
                send_activation(transport, h, owner(s + 1))
    for s, module in stages.items():
        module.train(modes[s])
    return totals


def model_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of a module's parameters: that of the activations it receives."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point())
