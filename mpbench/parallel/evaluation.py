"""Evaluation of a model whose parts live on different workers.

Forward only, in eval mode, one held-out batch at a time, in part order: a worker runs the parts
it owns and passes the activation to the owner of the next part. Activations travel with a small
shape header, so any batch size works (training schedules, by contrast, fix their shapes). This is
harness traffic, not counted in the algorithm's bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from mpbench.blocks import BlockModel, EvalTotals, eval_mode
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


def forward_parts(parts: dict[int, nn.Module], owner: Callable[[int], int], num_parts: int, batches,
                  transport: Transport, heads: dict[int, nn.Module] | None = None,
                  headed: Iterable[int] = ()) -> Iterator[list[torch.Tensor | None] | None]:
    """The outputs of a split model, batch by batch, where the last part is.

    `parts` maps the part indices this worker owns to their modules; `owner(p)` is the rank
    holding part p. `headed` lists every part (of any worker) with a head, a side output on the
    part's output such as a local critic, and `heads` holds this worker's heads. For each batch
    the owner of the last part gets [head output of part 0, ..., of part n-2, the model's output]
    (None for a part without a head); every other worker gets None. Every worker must consume
    every batch.
    """
    me, last, heads, headed = transport.rank, num_parts - 1, heads or {}, set(headed)
    with torch.no_grad(), eval_mode(*parts.values(), *heads.values()):
        for inputs, _ in batches:
            outputs: list[torch.Tensor | None] = [None] * num_parts
            h = inputs
            for p in (p for p in range(num_parts) if owner(p) == me):
                if p > 0 and owner(p - 1) != me:
                    h = recv_activation(transport, owner(p - 1), model_dtype(parts[p]), inputs.device)
                h = parts[p](h)
                if p == last:
                    outputs[last] = h
                    for q in sorted(q for q in headed if owner(q) != me):  # heads elsewhere, in part order
                        outputs[q] = recv_activation(transport, owner(q), h.dtype, h.device)
                    continue
                if owner(p + 1) != me:  # the activation first: the next part's owner may be the last's
                    send_activation(transport, h, owner(p + 1))
                if p in heads:
                    outputs[p] = heads[p](h)
                    if owner(last) != me:
                        send_activation(transport, outputs[p], owner(last))
            yield outputs if owner(last) == me else None


def evaluate_parts(model: BlockModel, parts: dict[int, nn.Module], owner: Callable[[int], int], num_parts: int,
                   batches, transport: Transport) -> EvalTotals:
    """Held-out totals for `batches`, computed on the owner of the last part (zero elsewhere).
    Every worker of the split model calls this with the same batches."""
    totals = EvalTotals()
    for outputs, (_, targets) in zip(forward_parts(parts, owner, num_parts, batches, transport), batches):
        if outputs is not None:
            totals += model.eval_totals(outputs[-1], targets)
    return totals


def model_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of a module's parameters: that of the activations it receives."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point())
