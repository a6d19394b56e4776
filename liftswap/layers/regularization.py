"""The paper's lifting regulariser, collected from the LiftDownPool layers of a model (SPEC 4)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .lift_pool import _LiftDownPoolNd

__all__ = ["regularization_loss", "clear_regularization"]


def regularization_loss(model: nn.Module) -> Tensor:
    """Sum of ``lambda_u * sum c_u + lambda_p * sum c_p`` over the layers run in the last forward.

    Each :class:`LiftDownPool2d` (1d, 3d) keeps the value of its last training-mode forward and
    drops it on an eval-mode forward, so this never holds a graph from an earlier step or from
    eval mode. Models converted by :func:`liftswap.patch` also forget, at the start of each
    forward, the values of layers that the new forward does not run. Works on DDP-wrapped and
    ``torch.compile``-d models alike (it only walks ``model.modules()``).

    Returns:
        A scalar tensor, float32 (float64 where the layers ran in float64; bfloat16 and float16
        inputs, autocast's too, keep the costs in float32); a zero tensor on the model's device
        when no layer contributed.

    Example:
        >>> import liftswap
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), liftswap.LiftDownPool2d(8))
        >>> x = torch.randn(2, 3, 16, 16)
        >>> loss = net(x).mean() + liftswap.regularization_loss(net)  # training mode: recorded
        >>> bool(liftswap.regularization_loss(net) > 0)
        True
        >>> _ = net.eval()(x)  # an eval-mode forward records nothing
        >>> liftswap.regularization_loss(net).item()
        0.0
    """
    total = None
    for m in model.modules():
        if isinstance(m, _LiftDownPoolNd) and m.last_regularization is not None:
            total = m.last_regularization if total is None else total + m.last_regularization
    if total is None:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return total


def clear_regularization(model: nn.Module) -> None:
    """Forget the recorded regulariser of every LiftDownPool layer in ``model``."""
    # (patched models call this before each forward: a walk of the children dicts costs less than half
    # of model.modules()' recursive generators, which build each module's name: 42 against 96 us for
    # resnet50's 158 modules)
    stack, seen = [model], set()
    while stack:
        m = stack.pop()
        if m is None or id(m) in seen:  # (a child set to None; a module shared by two parents)
            continue
        seen.add(id(m))
        if isinstance(m, _LiftDownPoolNd) and m.last_regularization is not None:
            m.last_regularization = None
        stack.extend(m._modules.values())
