"""Reference computations of the local-learning rules on a 3-group model, written out by hand
(independent of the engine), for the tests of the rules and of clipping."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def critic_losses(groups, critics, x, y):
    """Per-sample losses l_1, l_2 (of the critics on h_1, h_2) and l_3 (the model's), each group
    on its detached input; with their graphs."""
    h1 = groups[0](x)
    h2 = groups[1](h1.detach())
    out = groups[2](h2.detach())
    return (F.cross_entropy(critics[0](h1), y, reduction="none"), F.cross_entropy(critics[1](h2), y, reduction="none"),
            F.cross_entropy(out, y, reduction="none"))


def dni_gradients(groups, modules, x, y):
    """DNI by hand: each group's gradients (from its synthetic gradient, the last from the loss),
    and each module's (prediction ghat_i, target delta_i), delta_i being the next group's input gradient."""
    theta = [list(groups[i].parameters()) for i in range(3)]
    h1 = groups[0](x)
    x2 = h1.detach().requires_grad_()
    h2 = groups[1](x2)
    x3 = h2.detach().requires_grad_()
    loss = F.cross_entropy(groups[2](x3), y)
    ghat1, ghat2 = modules[0](h1.detach(), y), modules[1](h2.detach(), y)
    grads = {0: torch.autograd.grad(h1, theta[0], ghat1.detach(), retain_graph=True)}
    *grads[1], delta1 = torch.autograd.grad(h2, theta[1] + [x2], ghat2.detach())
    *grads[2], delta2 = torch.autograd.grad(loss, theta[2] + [x3])
    return grads, [(ghat1, delta1), (ghat2, delta2)], h1
