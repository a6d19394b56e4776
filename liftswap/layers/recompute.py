"""Memory-lean autograd for the lifting layers: keep the inputs, recompute the rest in backward.

A lifting layer makes a dozen cheap intermediates (pads, convolutions, tanh) that autograd
would keep for backward: several times the input's bytes. :func:`recompute` saves only the
input tensors and parameters (visible to ``saved_tensors_hooks``, so memory tools see the true
cost) and re-runs the forward under ``enable_grad`` in backward. Under torch.compile and
torch.export the plain function runs instead, so the compiler plans memory itself.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .._compat import is_exporting

__all__ = ["recompute"]


class _Recompute(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn: Callable, *tensors: Tensor):
        ctx.fn = fn
        # backward must recompute under the same autocast state (as torch.utils.checkpoint does)
        device = tensors[0].device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.save_for_backward(*tensors)
        with torch.no_grad():
            return fn(*tensors)

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        saved = ctx.saved_tensors
        inputs = [t.detach().requires_grad_(needs) for t, needs in zip(saved, ctx.needs_input_grad[1:])]
        device, enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
            outs = ctx.fn(*inputs)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        wanted = [t for t in inputs if t.requires_grad]
        got = iter(
            torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
            if pairs and wanted
            else [None] * len(wanted)
        )
        return (None,) + tuple(next(got) if t.requires_grad else None for t in inputs)


def recompute(fn: Callable[..., tuple[Tensor, ...]], tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """``fn(*tensors)``, saving only ``tensors`` for backward when a graph is being recorded."""
    recording = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if not recording or torch.compiler.is_compiling() or is_exporting():
        return fn(*tensors)
    return _Recompute.apply(fn, *tensors)
