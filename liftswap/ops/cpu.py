"""The CPU backend of the operators: the fused kernel (``lift_kernel.cpp``, loaded by :mod:`.cpu_build`).

Op by op, one lifting step is a dozen element-wise passes around two depthwise convolutions;
the kernel lifts tiles of lines in cache, in one pass forward and one backward that recomputes
the tile's forward instead of keeping intermediates. The functions here are the CPU kernels of
the operators in :mod:`.operators` (which own autograd): :func:`down_forward` / :func:`down_backward`,
:func:`up_forward` / :func:`up_backward`, and :func:`max_pool_forward` / :func:`max_pool_backward`
for ``preserve`` conversions.

It serves CPU float32/float64 tensors; the operators run the PyTorch reference for the rest.
Without a build the reference runs everywhere, after one warning; ``LIFTSWAP_NATIVE=0`` chooses
it silently.
"""

from __future__ import annotations

import ctypes
import math
import os
from contextlib import contextmanager

import torch
from torch import Tensor

from . import reference
from .cpu_build import library
from .output_modes import coefficients, up_bands_backward

__all__ = ["available", "enabled", "usable", "down_forward", "down_backward", "up_forward", "up_backward",
           "max_pool_usable", "max_pool_forward", "max_pool_backward"]  # fmt: skip

_enabled = os.environ.get("LIFTSWAP_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def available() -> bool:
    """Whether the fused CPU kernel is built and loaded.

    Example:
        >>> from liftswap.ops import cpu as native
        >>> isinstance(native.available(), bool)
        True
    """
    return _enabled and library() is not None


@contextmanager
def enabled(flag: bool):
    """Use (or not) the fused CPU kernel inside the block; for comparisons and benchmarks."""
    global _enabled
    before, _enabled = _enabled, bool(flag)
    try:
        yield
    finally:
        _enabled = before


def usable(x: Tensor, *weights: Tensor | None) -> bool:
    """Whether the kernel serves these tensors: CPU float32/float64, non-empty, weights alike."""
    if not _enabled or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if x.numel() == 0:  # the kernel divides by the plane count: empty inputs take the reference
        return False
    for w in weights:
        if w is not None and (w.dtype != x.dtype or w.device.type != "cpu"):
            return False
    return library() is not None


class _Layout(ctypes.Structure):
    """LiftLayout in lift_kernel.cpp: the tensor as (G, P, L, B), and the rows' order."""

    _fields_ = [(name, ctypes.c_int64) for name in ("G", "C", "P", "L", "B", "even_first", "next_A", "next_In", "N")]


def _layout(shape: tuple[int, ...], dim: int, even_first: bool, next_dim: int | None) -> _Layout:
    """How the kernel sees a tensor of ``shape`` lifted along ``dim``; ``next_dim``: the axis the next lift takes."""
    shape = tuple(shape)
    axis = len(shape) + dim
    p = math.prod(shape[2:axis])
    b = math.prod(shape[axis + 1 :])
    next_a = next_in = 0
    if next_dim is not None:  # outputs go even rows first along next_dim, so its split is two copies
        nxt = len(shape) + next_dim
        next_a, next_in = shape[nxt], math.prod(shape[nxt + 1 : axis])
    return _Layout(shape[0] * shape[1], shape[1], p, shape[axis], b, int(even_first), next_a, next_in, 0)


def _halved(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    """Shape of one lift's stacked output for input ``shape``: (2 * N, C, ...) with ``dim`` halved (rounded up)."""
    shape = tuple(shape)
    axis = len(shape) + dim
    return (2 * shape[0],) + shape[1:axis] + ((shape[axis] + 1) // 2,) + shape[axis + 1 :]


def _unhalved(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    """Shape of one inverse lift's output for stacked s and d of ``shape``: (N / 2, C, ...) with ``dim`` doubled."""
    shape = tuple(shape)
    axis = len(shape) + dim
    return (shape[0] // 2,) + shape[1:axis] + (2 * shape[axis],) + shape[axis + 1 :]


def _operator_args(w) -> list[Tensor]:
    c = w.dw_weight.shape[0]
    zeros = w.dw_weight.new_zeros(c)
    return [
        w.dw_weight.detach().reshape(c, -1).contiguous(),
        (zeros if w.dw_bias is None else w.dw_bias.detach()).contiguous(),
        w.pw_weight.detach().reshape(c).contiguous(),
        (zeros if w.pw_bias is None else w.pw_bias.detach()).contiguous(),
    ]


class _Kernel:
    """The library's two entry points for one dtype, with the layer's P and U bound."""

    _ENTRIES = ("lift_forward", "lift_backward", "lift_forward2", "lift_backward2", "unlift_forward",
                "unlift_backward", "unlift_forward2", "unlift_backward2", "combine", "combine_backward", "polyphase")  # fmt: skip
    _bound: dict = {}  # dtype suffix -> the library's functions (looked up once)

    def __init__(self, dtype: torch.dtype, predict, update) -> None:
        suffix = "f32" if dtype == torch.float32 else "f64"
        fns = self._bound.get(suffix)
        if fns is None:
            lib = library()
            fns = self._bound[suffix] = [getattr(lib, f"liftswap_{name}_{suffix}") for name in self._ENTRIES]
        (self._fwd, self._bwd, self._fwd2, self._bwd2, self._unlift, self._unlift_bwd, self._unlift2,
         self._unlift_bwd2, self._combine, self._combine_bwd, self._polyphase) = fns  # fmt: skip
        self.k = predict.dw_weight.shape[-1]
        self.p_base, self.u_base = predict.base, update.base
        self.p_args, self.u_args = _operator_args(predict), _operator_args(update)
        self._p = [t.data_ptr() for t in self.p_args]
        self._u = [t.data_ptr() for t in self.u_args]

    def forward(self, x: Tensor, dim: int, with_costs: bool, even_first: bool = False, next_dim: int | None = None):
        """(s and d stacked along the batch, per-channel sums of (s - x_o)^2 and d^2 or None)."""
        layout = _layout(x.shape, dim, even_first, next_dim)
        out = x.new_empty(_halved(x.shape, dim))
        half = out.numel() // 2
        costs = torch.empty((layout.C, 2), dtype=torch.float64) if with_costs else None
        ptr = out.data_ptr()
        self._fwd(
            x.data_ptr(), ptr, ptr + half * out.element_size(), ctypes.byref(layout), self.k,
            *self._p, self.p_base, *self._u, self.u_base, None if costs is None else costs.data_ptr(),
            torch.get_num_threads(),
        )  # fmt: skip
        return out, costs

    def backward(self, x: Tensor, dim: int, g_out: Tensor | None, kcu: float, kcp: float, even_first: bool = False,
                 next_dim: int | None = None, g_y: Tensor | None = None, coef: Tensor | None = None,
                 gamma_grad: bool = False, batch: int = 0, gx: Tensor | None = None):  # fmt: skip
        """(grad of x, float64 (C, 2 (K + 3)) parameter grads, float64 (n_bands, C) gamma grads or None).

        ``g_out``: the gradient of s and d stacked along the batch. In the last lift (batch
        ``batch``) it may be None: the kernel then makes it as ``coef * g_y`` from the pooled
        output's gradient ``g_y`` (no details gradient). ``gamma_grad``: also return, per band and
        channel, the sum of ``g_y`` times the band, which the last lift recomputes anyway. ``gx``:
        a dead buffer of x's size to write the gradient into.
        """
        layout = _layout(x.shape, dim, even_first, next_dim)
        layout.N = batch
        if g_out is None:
            gs = gd = None
        else:
            gs = g_out.data_ptr()
            gd = gs + g_out.numel() // 2 * g_out.element_size()
        gx = torch.empty_like(x) if gx is None else gx.view(x.shape)
        pgrad = torch.empty((layout.C, 2 * (self.k + 3)), dtype=torch.float64)
        gcoef = torch.zeros((2 * x.shape[0] // batch, layout.C), dtype=torch.float64) if gamma_grad else None
        self._bwd(
            x.data_ptr(), gs, gd, gx.data_ptr(), None if g_y is None else g_y.data_ptr(),
            None if coef is None else coef.data_ptr(), None if gcoef is None else gcoef.data_ptr(),
            pgrad.data_ptr(), ctypes.byref(layout), self.k, *self._p, self.p_base, *self._u, self.u_base,
            kcu, kcp, torch.get_num_threads(),
        )  # fmt: skip
        return gx, pgrad, gcoef

    def forward2(self, x: Tensor, dims: list[int], with_costs: bool, layout: str = "bands"):
        """:meth:`forward` of a 2-D layer's two lifts (along ``dims[0]``, then ``dims[1]``) in one call.

        (the last lift's output, [each lift's costs or None]), or None where a plane is too large
        for the kernel's tiles (nothing computed). The first lift's output never fills a tensor.
        ``layout``: "bands" (as :meth:`forward` stacks them), "polyphase" (NCHW lifted along W,
        then H: the bands in their polyphase places, (N, C, 2 ceil(H / 2), 2 ceil(W / 2)), as
        :func:`liftswap.ops.reference.polyphase` puts them), or "approximation" (that band alone,
        without costs: the last lift runs on the first one's approximation only).
        """
        la, lb, t = self._lift2_layouts(x.shape, dims)
        s = d = z = None
        if layout == "polyphase":
            n, c, h, w = x.shape
            out = x.new_empty((n, c, h + h % 2, w + w % 2))
            z = out.data_ptr()
        elif layout == "approximation":
            assert not with_costs, "the approximation alone has no costs"
            out = x.new_empty((x.shape[0],) + _halved(t, dims[1])[1:])  # band 0 of the bands
            s = out.data_ptr()
        else:
            out = x.new_empty(_halved(t, dims[1]))
            s = out.data_ptr()
            d = s + out.numel() // 2 * out.element_size()
        costs = [torch.empty((la.C, 2), dtype=torch.float64) for _ in dims] if with_costs else [None, None]
        done = self._fwd2(
            x.data_ptr(), s, d, z, ctypes.byref(la), ctypes.byref(lb), self.k, *self._p, self.p_base, *self._u,
            self.u_base, *(None if c is None else c.data_ptr() for c in costs), torch.get_num_threads(),
        )  # fmt: skip
        return (out, costs) if done else None

    def to_polyphase(self, bands: Tensor) -> Tensor:
        """A 2-D layer's bands (4, N, C, h, w) in their polyphase places (N, C, 2h, 2w)."""
        _, n, c, h, w = bands.shape
        z = bands.new_empty((n, c, 2 * h, 2 * w))
        self._polyphase(bands.data_ptr(), z.data_ptr(), n * c, h, w, 0, torch.get_num_threads())
        return z

    def from_polyphase(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`to_polyphase`."""
        n, c, h, w = z.shape[0], z.shape[1], z.shape[2] // 2, z.shape[3] // 2
        bands = z.new_empty((4, n, c, h, w))
        self._polyphase(bands.data_ptr(), z.data_ptr(), n * c, h, w, 1, torch.get_num_threads())
        return bands

    def backward2(self, x: Tensor, dims: list[int], g_out: Tensor | None, kc: list[tuple[float, float]], g_y: Tensor,
                  coef: Tensor, gamma_grad: bool, batch: int):  # fmt: skip
        """:meth:`backward` of a 2-D layer's two lifts (along ``dims[0]``, then ``dims[1]``, the last) in one call.

        The kernel recomputes the first lift's output a tile of planes at a time, right before
        the last lift's backward uses it, instead of re-lifting the whole input first (see
        ``backward2_impl``). ``kc``: (kcu, kcp) per lift; the rest as in :meth:`backward`.
        None where a plane is too large for the kernel's tiles (nothing computed).
        """
        la, lb, t = self._lift2_layouts(x.shape, dims)
        lb.N = batch
        gx = torch.empty_like(x)
        pgrad = torch.empty((2, la.C, 2 * (self.k + 3)), dtype=torch.float64)
        gcoef = torch.zeros((2 * t[0] // batch, la.C), dtype=torch.float64) if gamma_grad else None
        done = self._bwd2(
            x.data_ptr(), gx.data_ptr(), None if g_out is None else g_out.data_ptr(),
            g_y.data_ptr(), coef.data_ptr(), None if gcoef is None else gcoef.data_ptr(), pgrad[0].data_ptr(),
            pgrad[1].data_ptr(), ctypes.byref(la), ctypes.byref(lb), self.k, *self._p, self.p_base, *self._u,
            self.u_base, *kc[0], *kc[1], torch.get_num_threads(),
        )  # fmt: skip
        return (gx, pgrad.sum(0), gcoef) if done else None

    @staticmethod
    def _lift2_layouts(shape, dims) -> tuple[_Layout, _Layout, tuple[int, ...]]:
        """The two lifts' layouts (as the lift-by-lift path makes them) and the first one's output shape."""
        a, b = dims
        mid = _halved(shape, a)
        return _layout(shape, a, *_row_order(dims, 0)), _layout(mid, b, *_row_order(dims, 1)), mid

    def unlift(self, bands: Tensor, dim: int) -> Tensor:
        """Inverse of :meth:`forward`: ``bands`` stacks s and d along the batch; even-length output."""
        half = bands.shape[0] // 2
        layout = _layout(bands[:half].shape, dim, False, None)
        out = bands.new_empty(_unhalved(bands.shape, dim))
        s, d = bands[:half], bands[half:]
        self._unlift(
            s.data_ptr(), d.data_ptr(), out.data_ptr(), ctypes.byref(layout), self.k,
            *self._p, self.p_base, *self._u, self.u_base, torch.get_num_threads(),
        )  # fmt: skip
        return out

    def unlift2(self, bands: Tensor, dims) -> Tensor | None:
        """:meth:`unlift` along ``dims[0]``, then ``dims[1]``, in one call, a tile of output planes at a time.

        The first inverse lift's output stays in the kernel's per-thread scratch. None where a
        plane is too large for the kernel's tiles (nothing computed).
        """
        la, lb, mid = self._unlift2_layouts(bands.shape, dims)
        out = bands.new_empty(_unhalved(mid, dims[1]))
        half = bands.shape[0] // 2
        done = self._unlift2(
            bands[:half].data_ptr(), bands[half:].data_ptr(), out.data_ptr(), ctypes.byref(la), ctypes.byref(lb),
            self.k, *self._p, self.p_base, *self._u, self.u_base, torch.get_num_threads(),
        )  # fmt: skip
        return out if done else None

    def unlift_backward2(self, bands: Tensor, dims, g_out: Tensor) -> tuple[Tensor, Tensor] | None:
        """:meth:`unlift_backward` of :meth:`unlift2`'s two inverse lifts in one call, or None as there."""
        la, lb, _ = self._unlift2_layouts(bands.shape, dims)
        half = bands.shape[0] // 2
        g = torch.empty_like(bands)
        pgrad = torch.empty((2, la.C, 2 * (self.k + 3)), dtype=torch.float64)
        done = self._unlift_bwd2(
            bands[:half].data_ptr(), bands[half:].data_ptr(), g_out.data_ptr(), g[:half].data_ptr(),
            g[half:].data_ptr(), pgrad[0].data_ptr(), pgrad[1].data_ptr(), ctypes.byref(la), ctypes.byref(lb),
            self.k, *self._p, self.p_base, *self._u, self.u_base, torch.get_num_threads(),
        )  # fmt: skip
        return (g, pgrad.sum(0)) if done else None

    @staticmethod
    def _unlift2_layouts(shape, dims) -> tuple[_Layout, _Layout, tuple[int, ...]]:
        """The two inverse lifts' layouts (as :meth:`unlift` makes them) and the first one's output shape."""
        a, b = dims
        half = (shape[0] // 2,) + tuple(shape[1:])
        mid = _unhalved(shape, a)
        return _layout(half, a, False, None), _layout((mid[0] // 2,) + mid[1:], b, False, None), mid

    def unlift_backward(self, bands: Tensor, dim: int, g_out: Tensor) -> tuple[Tensor, Tensor]:
        """(gradient of the stacked s and d, float64 (C, 2 (K + 3)) parameter grads)."""
        half = bands.shape[0] // 2
        layout = _layout(bands[:half].shape, dim, False, None)
        g = torch.empty_like(bands)
        pgrad = torch.empty((layout.C, 2 * (self.k + 3)), dtype=torch.float64)
        self._unlift_bwd(
            bands[:half].data_ptr(), bands[half:].data_ptr(), g_out.data_ptr(), g[:half].data_ptr(),
            g[half:].data_ptr(), pgrad.data_ptr(), ctypes.byref(layout), self.k,
            *self._p, self.p_base, *self._u, self.u_base, torch.get_num_threads(),
        )  # fmt: skip
        return g, pgrad

    def combine(self, bands: Tensor, coef: Tensor) -> Tensor:
        """y = sum_b coef[b, c] * bands[b] for bands (nb, N, C, ...) and coef (nb, C)."""
        nb, n, c = bands.shape[:3]
        y = bands.new_empty(bands.shape[1:])
        self._combine(bands.data_ptr(), coef.data_ptr(), y.data_ptr(), nb, n, c, y[0, 0].numel(), torch.get_num_threads())
        return y

    def combine_backward(self, shape, coef: Tensor, g_y: Tensor, g_details: Tensor | None) -> Tensor:
        """The bands' gradient, ``coef * g_y`` (+ ``g_details`` on the detail bands), shaped ``shape``."""
        nb, n, c = shape[:3]
        out = g_y.new_empty(shape)
        det = None if g_details is None else g_details.data_ptr()
        self._combine_bwd(coef.data_ptr(), g_y.data_ptr(), det, out.data_ptr(), nb, n, c, g_y[0, 0].numel(), torch.get_num_threads())
        return out


def _row_order(order: list[int], i: int) -> tuple[bool, int | None]:
    """Lift i of ``order`` reads rows even-first unless it is the first; all but the last write so."""
    return i > 0, (order[i + 1] if i + 1 < len(order) else None)


def _bands_shape(bands: Tensor, n: int) -> tuple[int, ...]:
    return (bands.shape[0] // n, n) + tuple(bands.shape[1:])


def down_forward(x: Tensor, predict, update, axes, output: str, gamma: Tensor | None, with_costs: bool):
    """The down pool's forward: ``(y, details (N, nd, C, *pooled), costs (2,): c_u, c_p, or (0,)
    without with_costs)``.

    A 2-D layer's two lifts go through the kernel in one call (:meth:`_Kernel.forward2`, a tile
    of planes at a time); other layers, and planes too large for a tile, lift by lift.
    """
    kernel = _Kernel(x.dtype, predict, update)
    x = x.contiguous()
    bands, costs, _ = _lifts(kernel, x, list(reversed(axes)), with_costs)
    bands = bands.view(_bands_shape(bands, x.shape[0]))
    if output == "LL":  # the approximation band alone: no 0 * detail term (0 * inf is NaN)
        y = bands[0].clone()
    else:
        y = kernel.combine(bands, coefficients(output, gamma, bands.shape[0], x))
    return y, bands[1:].movedim(0, 1), costs


def polyphase_usable(x: Tensor, axes) -> bool:
    """Whether :func:`down_forward_bands` "polyphase" serves ``x``: a 2-D layer over (H, W) of an NCHW tensor."""
    return x.dim() == 4 and [int(a) for a in axes] == [-2, -1]


def down_forward_bands(x: Tensor, predict, update, axes, layout: str, with_costs: bool):
    """``(out, costs)`` of ``liftswap::lift_down_pool_bands``: with ``layout`` "polyphase"
    :func:`down_forward`'s bands in their polyphase places (N, C, 2 ceil(H / 2), 2 ceil(W / 2)),
    band (r, q) at rows 2i + r and columns 2j + q, written there by the last lift; with
    "approximation" the approximation band, and without costs a 2-D layer's last lift runs on
    the first one's approximation only (half its work)."""
    kernel = _Kernel(x.dtype, predict, update)
    x = x.contiguous()
    order = list(reversed(axes))
    if layout == "approximation":
        done = None if with_costs or len(order) != 2 else kernel.forward2(x, order, False, "approximation")
        if done is not None:
            return done[0], reference.empty_costs(x)
        bands, costs, _ = _lifts(kernel, x, order, with_costs)
        return bands.view(_bands_shape(bands, x.shape[0]))[0].clone(), costs
    out, costs, placed = _lifts(kernel, x, order, with_costs, polyphase=True)
    return (out if placed else kernel.to_polyphase(out.view(_bands_shape(out, x.shape[0])))), costs


def down_backward_polyphase(x: Tensor, predict, update, axes, g_z: Tensor | None, g_costs: Tensor | None):
    """Backward of :func:`down_forward_bands` "polyphase": :func:`down_backward`'s returns (no gamma)."""
    g_bands = None if g_z is None else _Kernel(x.dtype, predict, update).from_polyphase(g_z.contiguous())
    return down_backward(x, predict, update, axes, "LL", None, None, None, g_costs, False, g_bands=g_bands)


def _lifts(kernel: _Kernel, x: Tensor, order: list[int], with_costs: bool, polyphase: bool = False):
    """Every lift of ``order``: (the bands stacked along the batch, or with ``polyphase`` where the
    kernel could, z; costs (2,): c_u, c_p, or (0,) without with_costs; whether the output is z)."""
    lifted = kernel.forward2(x, order, with_costs, "polyphase" if polyphase else "bands") if len(order) == 2 else None
    if lifted is None:  # lift by lift
        out, costs = x, []
        for i, dim in enumerate(order):
            out, cost = kernel.forward(out, dim, with_costs, *_row_order(order, i))
            costs.append(cost)
    else:
        out, costs = lifted
    if not with_costs:
        return out, reference.empty_costs(x), polyphase and lifted is not None
    c_u = c_p = 0.0
    for cost, count in zip(costs, _counts(x.shape, order)):
        cu, cp = cost.sum(0).tolist()
        c_u, c_p = c_u + cu / count, c_p + cp / count
    return out, torch.tensor([c_u, c_p], dtype=reference.costs_dtype(x.dtype)), polyphase and lifted is not None


def _counts(shape, order: list[int]) -> list[int]:
    """Elements of one 1D lift's s (or d), per lift of ``order``."""
    shapes = [tuple(shape)]
    for dim in order:
        shapes.append(_halved(shapes[-1], dim))
    return [math.prod(s[1:]) * shape[0] for s in shapes[1:]]


def down_backward(x: Tensor, predict, update, axes, output: str, gamma: Tensor | None, g_y: Tensor | None,
                  g_details: Tensor | None, g_costs: Tensor | None, want_gamma: bool,
                  g_bands: Tensor | None = None):  # fmt: skip
    """Backward of :func:`down_forward`, recomputing its forward: ``(grad of x, grad of gamma or
    None, the 8 weights' grads)``. A 2-D layer's two lifts in one call (:meth:`_Kernel.backward2`);
    otherwise lift by lift: re-lift all but the last axis, then each lift's backward, last first.
    Without a details gradient the last lift makes the bands' gradient (coef * g_y) itself.
    ``g_bands`` (nb, N, C, *pooled): every band's gradient, given (output "LL")."""
    kernel = _Kernel(x.dtype, predict, update)
    x = x.contiguous()
    n = x.shape[0]
    order = list(reversed(axes))
    counts = _counts(x.shape, order)
    nb = 2 ** len(order)
    pooled = list(x.shape)
    for dim in order:
        pooled[dim] = (pooled[dim] + 1) // 2
    shape = (nb,) + tuple(pooled)
    coef = coefficients(output, gamma, nb, x)
    grad = None
    if g_bands is not None:
        g_y, grad = g_bands[0], g_bands.reshape((-1,) + shape[2:])
    g_y = x.new_zeros(pooled) if g_y is None else g_y.contiguous()
    if grad is None and g_details is not None:
        grad = kernel.combine_backward(shape, coef, g_y, g_details.contiguous()).view((-1,) + shape[2:])
    g_cu, g_cp = (0.0, 0.0) if g_costs is None else g_costs.tolist()
    kc = [(2 * g_cu / c, 2 * g_cp / c) for c in counts]
    both = kernel.backward2(x, order, grad, kc, g_y, coef, want_gamma, n) if len(order) == 2 else None
    if both is None:
        both = _lifts_backward(kernel, x, order, grad, kc, g_y, coef, want_gamma, n)
    grad, pgrad, gcoef = both
    g_gamma = None if gcoef is None else gcoef[1:].to(x.dtype)
    return grad, g_gamma, _parameter_grads(pgrad.to(x.dtype), kernel.k, predict, update)


def _lifts_backward(kernel: _Kernel, x: Tensor, order: list[int], grad: Tensor | None, kc, g_y: Tensor,
                    coef: Tensor, want_gamma: bool, n: int):  # fmt: skip
    """Lift by lift: re-lift all but the last axis to get each lift's input, then each lift's backward, last first."""
    inputs = [x]
    for i, dim in enumerate(order[:-1]):
        inputs.append(kernel.forward(inputs[-1], dim, False, *_row_order(order, i))[0])
    pgrad, g_coef = 0, None
    for i in reversed(range(len(order))):
        last = i == len(order) - 1
        # Lift i's recomputed output is dead once lift i + 1 has run backward: lift i's input
        # gradient goes into it when the sizes agree (an even axis), saving a fresh allocation.
        reuse = inputs[i + 1] if i + 1 < len(inputs) and inputs[i + 1].numel() == inputs[i].numel() else None
        grad, pg, gcoef = kernel.backward(
            inputs[i], order[i], grad, *kc[i], *_row_order(order, i), g_y=g_y if last else None,
            coef=coef if last else None, gamma_grad=last and want_gamma, batch=n, gx=reuse,
        )  # fmt: skip
        if gcoef is not None:
            g_coef = gcoef
        pgrad = pgrad + pg
    return grad, pgrad, g_coef


def _parameter_grads(pgrad: Tensor, k: int, predict, update) -> list[Tensor | None]:
    """Kernel layout (C, [P taps, P dw bias, P pw, P pw bias, U ...]) -> grads shaped like the weights."""
    grads = []
    for offset, w in ((0, predict), (k + 3, update)):
        part = pgrad[:, offset : offset + k + 3]
        grads += [
            part[:, :k].reshape(w.dw_weight.shape),
            None if w.dw_bias is None else part[:, k].reshape(w.dw_bias.shape),
            part[:, k + 1].reshape(w.pw_weight.shape),
            None if w.pw_bias is None else part[:, k + 2].reshape(w.pw_bias.shape),
        ]
    return grads


def _up_bands(kernel: _Kernel, y: Tensor, details: Tensor, output: str, gamma: Tensor | None) -> Tensor:
    """(nb, N, C, ...): the approximation band recovered from y, then the detail bands."""
    nb = details.shape[1] + 1
    stacked = y.new_empty((nb,) + tuple(y.shape))
    stacked[0] = y
    stacked[1:] = details.movedim(1, 0)
    if output != "LL":
        stacked[0] = kernel.combine(stacked, _inverse(coefficients(output, gamma, nb, y)))
    return stacked


def up_forward(y: Tensor, details: Tensor, predict, update, axes, output: str, gamma: Tensor | None) -> Tensor:
    """The up pool's forward, before cropping. A 2-D layer's two inverse lifts in one call
    (:meth:`_Kernel.unlift2`, a tile of planes at a time); others inverse lift by inverse lift."""
    kernel = _Kernel(y.dtype, predict, update)
    bands = _up_bands(kernel, y, details, output, gamma).flatten(0, 1)
    out = kernel.unlift2(bands, axes) if len(axes) == 2 else None
    if out is None:  # inverse lift by inverse lift
        out = bands
        for dim in axes:
            out = kernel.unlift(out, dim)
    return out


def up_backward(y: Tensor, details: Tensor, predict, update, axes, output: str, gamma: Tensor | None, g_x: Tensor,
                want_gamma: bool):  # fmt: skip
    """Backward of :func:`up_forward`, recomputing it: ``(grad of y, grad of details, grad of
    gamma or None, the 8 weights' grads)``."""
    kernel = _Kernel(y.dtype, predict, update)
    stacked = _up_bands(kernel, y, details, output, gamma)
    flat = stacked.flatten(0, 1)
    both = kernel.unlift_backward2(flat, axes, g_x.contiguous()) if len(axes) == 2 else None
    if both is None:  # re-run all but the last inverse lift, then each one's backward, the last first
        inputs = [flat]
        for dim in axes[:-1]:
            inputs.append(kernel.unlift(inputs[-1], dim))
        grad, pgrad = g_x.contiguous(), 0
        for i in reversed(range(len(axes))):
            grad, pg = kernel.unlift_backward(inputs[i], axes[i], grad)
            pgrad = pgrad + pg
    else:
        grad, pgrad = both
    g_y, g_details, g_gamma = up_bands_backward(grad.view(stacked.shape), stacked[1:], output, gamma, want_gamma)
    return g_y, g_details, g_gamma, _parameter_grads(pgrad.to(y.dtype), kernel.k, predict, update)


def _inverse(coef: Tensor) -> Tensor:
    """Coefficients that recover the approximation band from [y, details...]: 1, then -coef_b."""
    inv = -coef
    inv[0] = 1
    return inv


def max_pool_usable(x: Tensor, kernel_size) -> bool:
    """Whether :func:`max_pool_forward` serves ``x`` (1d or 2d, at most 256 taps per window)."""
    return x.dim() in (3, 4) and len(kernel_size) == x.dim() - 2 and math.prod(kernel_size) <= 256 and usable(x)


def _max_pool_args(x: Tensor, kernel_size, padding, dilation):
    if x.dim() == 3:  # 1d as 2d with a unit axis
        kernel_size, padding, dilation = (1, kernel_size[0]), (0, padding[0]), (1, dilation[0])
    h, w = (1, x.shape[-1]) if x.dim() == 3 else x.shape[-2:]
    (kh, kw), (ph, pw), (dh, dw) = kernel_size, padding, dilation
    ho, wo = h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)
    shape = x.shape[:2] + ((wo,) if x.dim() == 3 else (ho, wo))
    return shape, (x.shape[0] * x.shape[1], h, w, kh, kw, dh, dw, ph, pw, torch.get_num_threads())


def max_pool_forward(x: Tensor, kernel_size, padding, dilation, winners: bool = True) -> tuple[Tensor, Tensor]:
    """Max pooling at stride 1 (1d or 2d): ``(values as max_pool2d, one byte per output saying
    which tap won)``; the byte routes the gradient to the window's row-major first maximum.
    Without ``winners`` (no backward to come) the bytes are not made: an empty tensor."""
    suffix = "f32" if x.dtype == torch.float32 else "f64"
    x = x.contiguous()
    shape, args = _max_pool_args(x, kernel_size, padding, dilation)
    out = x.new_empty(shape)
    code = torch.empty(shape if winners else [0], dtype=torch.uint8)
    ptr = code.data_ptr() if winners else None
    getattr(library(), f"liftswap_maxpool_s1_forward_{suffix}")(x.data_ptr(), out.data_ptr(), ptr, *args)
    return out, code


def max_pool_backward(g: Tensor, code: Tensor, size, kernel_size, padding, dilation) -> Tensor:
    """Backward of :func:`max_pool_forward` for an input of ``size`` (and g's dtype)."""
    suffix = "f32" if g.dtype == torch.float32 else "f64"
    gx = g.new_empty(size)
    _, args = _max_pool_args(gx, kernel_size, padding, dilation)
    getattr(library(), f"liftswap_maxpool_s1_backward_{suffix}")(g.contiguous().data_ptr(), code.data_ptr(), gx.data_ptr(), *args)
    return gx
