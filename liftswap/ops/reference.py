"""The PyTorch reference of the operators: the math of SPEC 1-4 in plain PyTorch ops.

One lifting step along one axis::

    split    x_e = x[0::2], x_o = x[1::2]     (an odd axis repeats its last sample)
    predict  d = x_o - P(x_e)                 detail, high-pass
    update   s = x_e + U(d)                   approximation, low-pass

P and U are ``base * t + tanh(pw(relu(dw_K(pad(t)))))``. Undoing the step needs no property of
P or U, so the inverse is exact for any weights.

This is what the operators (:mod:`.operators`) run where no kernel serves a tensor, what the
layers run under functorch transforms and forward-mode AD (autograd goes through these ops),
and, in :func:`down_pool_for_export`, what torch.export and torch.jit.trace record: graphs
of standard ops that run without liftswap. Nothing here branches in Python on a tensor's size,
so exported graphs keep odd-size handling for every input size.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .output_modes import OUTPUTS

__all__ = ["OperatorWeights", "apply_operator", "lift", "unlift", "down_pool", "down_pool_for_export", "polyphase", "polyphase_split",
           "lay_out_bands", "up_pool",
           "max_pool_stride1", "max_pool_winners", "max_pool_stride1_backward", "OUTPUTS"]  # fmt: skip

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class OperatorWeights(NamedTuple):
    """The tensors of one lifting operator (P or U), as the functional forms take them."""

    base: float
    dw_weight: Tensor  # (C, 1, K)
    dw_bias: Tensor | None  # (C,)
    pw_weight: Tensor  # (C,)
    pw_bias: Tensor | None  # (C,)


def _along(t: Tensor, dim: int, index: slice) -> Tensor:
    idx = [slice(None)] * t.dim()
    idx[dim] = index
    return t[tuple(idx)]


def replicate_pad(t: Tensor, dim: int, before: int, after: int, export: bool = False) -> Tensor:
    """``t`` padded along ``dim`` by repeating its first and last samples."""
    if export:  # one ONNX Pad(edge); the size may be symbolic (odd-length padding)
        pads = [0, 0] * (t.dim() - 2)
        pads[2 * (-dim - 1)], pads[2 * (-dim - 1) + 1] = before, after
        return F.pad(t, pads, mode="replicate")
    # Edge slices concatenated, not F.pad(mode="replicate"): the cat backward is cheap and
    # inductor mis-strides replication_pad's backward (torch 2.14).
    parts = []
    if before:
        first = _along(t, dim, slice(0, 1))
        parts.append(first if before == 1 else torch.cat([first] * before, dim=dim))
    parts.append(t)
    if after:
        last = _along(t, dim, slice(-1, None))
        parts.append(last if after == 1 else torch.cat([last] * after, dim=dim))
    return torch.cat(parts, dim=dim) if len(parts) > 1 else t


def _channel_view(v: Tensor, spatial_dims: int) -> Tensor:
    return v.view((1, -1) + (1,) * spatial_dims)


def _residual(t: Tensor, dim: int, w: OperatorWeights, export: bool = False) -> Tensor:
    """r(t) = tanh(pw(relu(dw_K(pad(t))))) along ``dim``: the learned part of P or U."""
    spatial = t.dim() - 2
    k = w.dw_weight.shape[-1]
    shape = [1] * spatial
    shape[spatial + dim] = k
    kernel = w.dw_weight.reshape([w.dw_weight.shape[0], 1] + shape)
    if export:
        # For onnxruntime: Pad(edge) + Conv + Relu + Conv(1x1) + Tanh, which it fuses into two
        # convolutions (activations inside); the eager tricks below become Transposes and
        # ScatterNDs in ONNX, and its Tanh is as fast as its Sigmoid.
        h = torch.relu(_CONV[spatial](replicate_pad(t, dim, k // 2, k // 2, True), kernel, w.dw_bias, groups=t.shape[1]))
        pointwise = w.pw_weight.reshape([-1, 1] + [1] * spatial)
        return torch.tanh(_CONV[spatial](h, pointwise, w.pw_bias, groups=t.shape[1]))
    if k == 3:
        # Zero-padded convolution plus the two edge taps that replicate padding adds back:
        # no padded copy of t.
        padding = [0] * spatial
        padding[spatial + dim] = 1
        h = _CONV[spatial](t, kernel, w.dw_bias, padding=padding, groups=t.shape[1])
        taps = w.dw_weight.reshape(-1, 3)
        n = t.shape[dim]
        edges = torch.cat(
            (t.narrow(dim, 0, 1) * _channel_view(taps[:, 0], spatial), t.narrow(dim, n - 1, 1) * _channel_view(taps[:, 2], spatial)),
            dim=dim,
        ).to(h.dtype)  # autocast runs the convolution in lower precision
        if torch.compiler.is_compiling():
            # inductor mis-compiles the in-place form's backward (torch 2.14)
            index = torch.stack((torch.zeros((), dtype=torch.long), torch.full((), n - 1, dtype=torch.long))).to(t.device)
            h = h.index_add(t.dim() + dim, index, edges)
        else:  # in place (h is fresh), and no index tensor: on CUDA its copy to the device would wait
            h.narrow(dim, 0, 1).add_(edges.narrow(dim, 0, 1))
            h.narrow(dim, n - 1, 1).add_(edges.narrow(dim, 1, 1))
    else:
        h = _CONV[spatial](replicate_pad(t, dim, k // 2, k // 2), kernel, w.dw_bias, groups=t.shape[1])
    h = torch.relu(h)
    # tanh(z) = 2 sigmoid(2z) - 1: PyTorch's CPU sigmoid is several times faster than its tanh.
    scale = _channel_view(2.0 * w.pw_weight, spatial)
    if w.pw_bias is not None:
        h = torch.addcmul(_channel_view(2.0 * w.pw_bias, spatial), h, scale)
    else:
        h = h * scale
    return torch.sigmoid(h).mul(2.0).sub_(1.0)


def apply_operator(t: Tensor, dim: int, w: OperatorWeights, export: bool = False, residual=None) -> Tensor:
    """P(t) or U(t) along axis ``dim`` (negative) of ``t`` with shape (N, C, *spatial).
    ``residual``: what computes r in place of :func:`_residual` (same arguments), or None."""
    r = (residual or _residual)(t, dim, w, export)
    return r if w.base == 0.0 else r + w.base * t


def _odd_half(x: Tensor, dim: int) -> Tensor:
    """``x_o``: the odd samples along ``dim``; an odd axis repeats its last sample (replicate padding by one)."""
    length = x.shape[dim]
    # the slice [0:L % 2] of the last sample is empty or not, with no branch on the size
    last = _along(_along(x, dim, slice(length - 1, length)), dim, slice(0, length % 2))
    return torch.cat((_along(x, dim, slice(1, None, 2)), last), dim=dim)


def _lift_step(x_e: Tensor, x_o: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights,
               export: bool = False, residual=None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``d = x_o - P(x_e)``, ``s = x_e + U(d)`` for halves already split: ``(s, d)``."""
    residual = residual or _residual
    d = x_o - residual(x_e, dim, predict, export)
    if predict.base != 0.0:
        d.sub_(x_e, alpha=predict.base)
    s = x_e + residual(d, dim, update, export)
    if update.base != 0.0:
        s.add_(d, alpha=update.base)
    return s, d


def lift(x: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights, residual=None) -> tuple[Tensor, Tensor, Tensor]:
    """One lifting step of ``x`` along ``dim`` (negative): ``(s, d, x_o)``; ``residual`` as
    :func:`apply_operator` takes it."""
    # Contiguous halves keep the element-wise ops below vectorised.
    x_e = _along(x, dim, slice(0, None, 2)).contiguous()
    x_o = _odd_half(x, dim)
    s, d = _lift_step(x_e, x_o, dim, predict, update, residual=residual)
    return s, d, x_o


def unlift(s: Tensor, d: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights, export: bool = False,
           residual=None) -> Tensor:  # fmt: skip
    """Exact inverse of :func:`lift`: interleaves ``x_e = s - U(d)`` and ``x_o = d + P(x_e)`` (even length)."""
    x_e = s - apply_operator(d, dim, update, export, residual)
    x_o = d + apply_operator(x_e, dim, predict, export, residual)
    pos = x_e.dim() + dim
    return torch.stack((x_e, x_o), dim=pos + 1).flatten(pos, pos + 1)


def detail_term(details, output: str, gamma: Tensor | None) -> Tensor | None:
    """What ``output`` adds to the approximation band: None for "LL", else the sum of the detail
    bands, each scaled by its row of ``gamma`` for "gated". ``details`` is a sequence of
    (N, C, *pooled) bands or a tensor (nd, N, C, *pooled). The one place the output modes are
    written for the reference and its export graph (the kernel backends': :mod:`.output_modes`)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "LL":
        return None
    if output == "gated" and gamma is None:
        raise ValueError("output='gated' needs gamma of shape (n_detail_bands, C)")
    term = None
    for i, band in enumerate(details):  # a chain of multiply-adds: no stacked copy, no ReduceSum in exports
        if output == "gated":
            band = _channel_view(gamma[i], band.dim() - 2) * band
        term = band if term is None else term + band
    return term


def costs_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the regulariser's costs for an input of ``dtype``: float64 for float64, else
    float32, the kernels' accumulation (as autocast runs reductions; a bfloat16 cost would keep
    ~3 digits, and converting it costs a launch each way)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def empty_costs(x: Tensor) -> Tensor:
    """The costs output of a call that computes none: no element, in :func:`costs_dtype`."""
    return x.new_empty(0, dtype=costs_dtype(x.dtype))


def down_pool(x: Tensor, predict: OperatorWeights, update: OperatorWeights, axes: Sequence[int], output: str,
              gamma: Tensor | None, with_costs: bool, residual=None) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:  # fmt: skip
    """``(y, details (N, nd, C, *pooled), c_u, c_p)`` (costs in :func:`costs_dtype`): lifts innermost axis first, all bands so
    far stacked along the batch in one call per axis (band order: innermost letter lowest bit);
    ``residual`` as :func:`apply_operator` takes it."""
    n = x.shape[0]
    bands = x
    c_u = c_p = None
    acc = costs_dtype(x.dtype)
    for i, dim in enumerate(reversed(tuple(axes))):
        count = 2**i  # bands lifted in this call; the costs are per 1D lift
        s, d, x_o = lift(bands, dim, predict, update, residual)
        bands = torch.cat((s, d), dim=0)
        if with_costs:
            cu, cp = (s - x_o).square().mean(dtype=acc) * count, d.square().mean(dtype=acc) * count
            c_u = cu if c_u is None else c_u + cu
            c_p = cp if c_p is None else c_p + cp
    bands = bands.view((2 ** len(axes), n) + bands.shape[1:])  # (n_bands, N, C, *pooled)
    approx, details = bands[0], bands[1:]
    term = detail_term(details, output, gamma)
    y = approx if term is None else approx + term
    return y, details.movedim(0, 1), c_u, c_p


def polyphase(bands: Tensor, axes: Sequence[int]) -> Tensor:
    """Bands ``(N, nb, C, *pooled)`` (the approximation first, then :func:`down_pool`'s details)
    in their polyphase places: ``(N, C, *size)``, each lifted axis twice as long, the band whose
    bits are ``r`` (``axes[0]`` the highest) at positions ``2 i + r[axis]`` along each; the lazy
    inverse lift (a depth-to-space). A stride-2 convolution reads them as it read the input."""
    n, c, pooled = bands.shape[0], bands.shape[2], bands.shape[3:]
    spatial = len(pooled)
    lifted = [int(a) % (spatial + 2) - 2 for a in axes]  # as indices of the spatial axes
    v = bands.reshape((n,) + (2,) * len(lifted) + (c,) + tuple(pooled))
    perm, shape = [0, len(lifted) + 1], [n, c]
    for a in range(spatial):
        perm.append(len(lifted) + 2 + a)
        shape.append(pooled[a] * (2 if a in lifted else 1))
        if a in lifted:
            perm.append(1 + lifted.index(a))
    return v.permute(perm).reshape(shape)


def polyphase_split(z: Tensor, axes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`polyphase` (its gradient): ``(y, details (N, nb - 1, C, *pooled))``
    from ``z`` (N, C, *size), every lifted axis of even length."""
    spatial, n, c = z.dim() - 2, z.shape[0], z.shape[1]
    lifted = [int(a) % (spatial + 2) - 2 for a in axes]
    shape, pooled = [n, c], []
    for a in range(spatial):
        size = z.shape[2 + a]
        shape += [size // 2, 2] if a in lifted else [size]
        pooled.append(size // 2 if a in lifted else size)
    phase = {a: 3 + a + sum(1 for b in lifted if b < a) for a in lifted}  # where each axis's phase lands
    perm = [0] + [phase[a] for a in lifted] + [1] + [i for i in range(2, len(shape)) if i not in phase.values()]
    bands = z.reshape(shape).permute(perm).reshape([n, 2 ** len(lifted), c] + pooled)
    return bands[:, 0], bands[:, 1:]


def lay_out_bands(y: Tensor, details: Tensor, axes: Sequence[int], layout: str) -> Tensor:
    """The output of ``liftswap::lift_down_pool_bands`` from a down pool's ``y`` (output "LL")
    and details: ``"polyphase"`` :func:`polyphase`, ``"approximation"`` ``y``."""
    if layout == "approximation":
        return y
    return polyphase(torch.cat((y.unsqueeze(1), details), 1), axes)


def _polyphase_components(x: Tensor, axes: Sequence[int]) -> dict[tuple, Tensor]:
    """The ``2 ** len(axes)`` polyphase components of ``x``, keyed by their phase bits along
    ``axes`` (outermost first); an odd lifted axis is replicate-padded by one at the end first.

    One padding and one reshape for all axes: every component (and every band lifted from them)
    has the shape ``(N, C, *ceil(size / 2))``, so torch.export reasons about one simple size per
    axis instead of a chain of strided slices.
    """
    spatial = x.dim() - 2
    pads = [0] * (2 * spatial)
    shape = [x.shape[0], x.shape[1]]
    phase_dims = []
    for i in range(spatial):
        dim = i - spatial
        if dim in axes:
            half = (x.shape[dim] + 1) // 2
            pads[2 * (-dim - 1) + 1] = 2 * half - x.shape[dim]
            phase_dims.append(len(shape) + 1)
            shape += [half, 2]
        else:
            shape.append(x.shape[dim])
    v = F.pad(x, pads, mode="replicate").reshape(shape)
    out = {}
    for bits in itertools.product((0, 1), repeat=len(phase_dims)):
        index = [slice(None)] * v.dim()
        for pos, bit in zip(phase_dims, bits):
            index[pos] = bit
        out[bits] = v[tuple(index)]
    return out


def down_pool_for_export(x: Tensor, predict, update, axes, output: str, gamma: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(y, details)`` of :func:`down_pool` as torch.export and torch.jit.trace record it: the
    input split once into its polyphase components (:func:`_polyphase_components`), then each 1-D
    lift pairs two components of the same size, innermost axis first. A lift along an axis acts
    on each line of samples on its own, so lifting the components equals lifting the strided
    halves."""
    axes = tuple(axes)
    comps = _polyphase_components(x, axes)
    for j in reversed(range(len(axes))):
        dim = axes[j]
        lifted = {}
        for key, x_e in comps.items():
            if key[j] == 1:
                continue
            s, d = _lift_step(x_e, comps[key[:j] + (1,) + key[j + 1 :]], dim, predict, update, export=True)
            lifted[key] = s  # bit 0 -> L, bit 1 -> H: the keys become band letters
            lifted[key[:j] + (1,) + key[j + 1 :]] = d
        comps = lifted
    bands = [comps[key] for key in sorted(comps)]  # binary order, the outermost axis the highest bit
    term = detail_term(bands[1:], output, gamma)
    return (bands[0] if term is None else bands[0] + term), torch.stack(bands[1:], dim=1)


def up_pool(y: Tensor, details: Tensor, predict: OperatorWeights, update: OperatorWeights, axes: Sequence[int],
            output: str, gamma: Tensor | None, export: bool = False, residual=None) -> Tensor:  # fmt: skip
    """Inverse of :func:`down_pool`, before cropping: the approximation band recovered from ``y``
    by undoing ``output``, then the lifts undone outermost axis first (even sizes); ``residual``
    as :func:`apply_operator` takes it."""
    det = details.movedim(1, 0)  # (nd, N, C, *pooled)
    term = detail_term(det, output, gamma)
    approx = y if term is None else y - term
    bands = torch.cat((approx.unsqueeze(0), det), dim=0).flatten(0, 1)
    for dim in axes:
        half = bands.shape[0] // 2
        bands = unlift(bands[:half], bands[half:], dim, predict, update, export, residual)
    return bands


def _pad_minus_inf(x: Tensor, p: Sequence[int]) -> Tensor:
    dims = len(p)
    return F.pad(x, [v for a in reversed(range(dims)) for v in (p[a], p[a])], value=-math.inf) if any(p) else x


def _tap_views(t: Tensor, k: Sequence[int], d: Sequence[int], out_shape: Sequence[int]):
    """``(tap, view)`` for each tap of the window in row-major order: the view of ``t`` (the padded
    input or its gradient) that the tap reads for every output position."""
    dims = len(k)
    for tap, offsets in enumerate(itertools.product(*(range(n) for n in k))):
        view = t
        for a, off in enumerate(offsets):
            view = view.narrow(a - dims, off * d[a], out_shape[a - dims])
        yield tap, view


def max_pool_winners(x: Tensor, out: Tensor, k: Sequence[int], p: Sequence[int], d: Sequence[int]) -> Tensor:
    """For each output of :func:`max_pool_stride1`, the row-major index (uint8) of the window's first
    tap that holds the maximum (or a NaN), as PyTorch's max pooling routes the gradient."""
    code = torch.zeros(out.shape, dtype=torch.uint8, device=out.device)
    found = torch.zeros(out.shape, dtype=torch.bool, device=out.device)
    for tap, view in _tap_views(_pad_minus_inf(x, p), k, d, out.shape):
        hit = ((view == out) | (view != view)) & ~found
        code.masked_fill_(hit, tap)
        found |= hit
    return code


def max_pool_stride1_backward(g: Tensor, code: Tensor, size: Sequence[int], k: Sequence[int], p: Sequence[int],
                              d: Sequence[int]) -> Tensor:  # fmt: skip
    """The input gradient of :func:`max_pool_stride1` from each output's winning tap (:func:`max_pool_winners`)."""
    dims = len(k)
    padded = list(size[:2]) + [size[2 + a] + 2 * p[a] for a in range(dims)]
    gx = g.new_zeros(padded)
    for tap, view in _tap_views(gx, k, d, g.shape):
        view.add_(torch.where(code == tap, g, 0))
    for a in range(dims):
        gx = gx.narrow(a - dims, p[a], size[2 + a])
    return gx


def max_pool_stride1(x: Tensor, k: Sequence[int], p: Sequence[int], d: Sequence[int]) -> Tensor:
    """``max_pool{1,2,3}d(x, k, 1, p, d)`` as a few ``torch.maximum`` passes, one axis at a time
    (padding with -inf, as max pooling does): many times faster than PyTorch's CPU
    ``max_pool2d(3, 1, 1)``. Exactly tied inputs share the gradient."""
    dims = len(k)
    x = _pad_minus_inf(x, p)
    for a in range(dims):
        if k[a] == 1:
            continue
        dim = a - dims
        length = x.shape[dim] - d[a] * (k[a] - 1)
        out = torch.maximum(x.narrow(dim, 0, length), x.narrow(dim, d[a], length))
        for j in range(2, k[a]):
            out = torch.maximum(out, x.narrow(dim, j * d[a], length))
        x = out
    return x
