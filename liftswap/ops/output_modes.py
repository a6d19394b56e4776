"""SPEC 2's output modes as the kernel backends (cpu.py, cuda.py) use them: one
coefficient per band and channel, y = sum_b coef[b] * band_b, and the up pool's way back."""

from __future__ import annotations

import torch
from torch import Tensor

# The registry of output modes (SPEC 2): the layers, the recipe schema and the operators read it.
OUTPUTS = ("LL", "sum", "gated")


def coefficients(output: str, gamma: Tensor | None, nb: int, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """(nb, C) coefficients of ``output`` ("LL", "sum" or "gated" with gamma (nb - 1, C)), in ``dtype`` (default like's)."""
    c = like.shape[1]
    dtype = like.dtype if dtype is None else dtype
    if output == "sum":
        return torch.ones((nb, c), dtype=dtype, device=like.device)
    if output == "LL":
        coef = torch.zeros((nb, c), dtype=dtype, device=like.device)
        coef[0] = 1
        return coef
    return torch.cat((torch.ones((1, c), dtype=dtype, device=like.device), gamma.detach().to(dtype)))


def up_bands(y: Tensor, details: Tensor, output: str, gamma: Tensor | None) -> Tensor:
    """(nb, N, C, ...): the bands an up pool inverts, the approximation recovered from y
    (y - sum_b coef_b det_b) then the details (N, nb - 1, C, ...), written into one buffer: a
    copy of the details and one op per detail band (not a product and a sum per band and a
    concatenation)."""
    det = details.movedim(1, 0)
    bands = y.new_empty((det.shape[0] + 1,) + tuple(y.shape))
    bands[1:].copy_(det)
    approx, src = bands[0], y
    if output == "LL":
        approx.copy_(y)
        return bands
    for b in range(det.shape[0]):
        if output == "sum":
            torch.sub(src, det[b], out=approx)
        else:
            torch.addcmul(src, gamma[b].detach().view((-1,) + (1,) * (y.dim() - 2)), det[b], value=-1, out=approx)
        src = approx
    return bands


def up_bands_backward(
    g_bands: Tensor, det: Tensor, output: str, gamma: Tensor | None, want_gamma: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Gradients of an up pool's y, details and gamma from those of the bands it recovers.

    The up pool recovers the approximation band as y - sum_b coef_b det_b. ``g_bands``: (nb, N, C, ...),
    approximation band first; ``det``: the details band first, (nb - 1, N, C, ...). Returns the
    gradients of y, of the details (N, nb - 1, C, ...; contiguous except for "LL") and of gamma
    (None unless ``want_gamma``).
    """
    g_approx, g_det = g_bands[0], g_bands[1:]
    g_gamma = None
    if output != "LL":  # g_det - coef g_approx, written in the details' layout (one pass, no transposing copy)
        out = g_det.new_empty((g_det.shape[1], g_det.shape[0]) + tuple(g_det.shape[2:]))
        if output == "sum":
            torch.sub(g_det, g_approx, out=out.movedim(1, 0))
        else:
            view = gamma.view(gamma.shape + (1,) * (g_approx.dim() - 2)).unsqueeze(1)  # (nd, 1, C, 1...)
            torch.addcmul(g_det, view, g_approx, value=-1, out=out.movedim(1, 0))
            if want_gamma:
                g_gamma = -(det * g_approx).sum(dim=[1] + list(range(3, det.dim())))
        return g_approx, out, g_gamma
    return g_approx, g_det.movedim(0, 1), g_gamma
