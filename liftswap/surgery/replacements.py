"""The modules that stand in a replaced pooling site.

:class:`LiftPoolReplacement` reproduces the replaced op's geometry: its output shape for every
input size the op accepts (crop or replicate-pad), and in ``preserve`` mode its function at init:

- ``AvgPool(2, 2)`` -> ``LiftDownPool(haar)`` directly (Haar's approximation is the 2x2 mean);
- ``MaxPool(k, 2, p)`` / other avg pools -> the same pool at stride 1, then ``LiftDownPool(lazy)``,
  whose approximation band at init is the even samples, i.e. the stride-2 pool.

``ceil_mode`` windows that run past the input are reproduced by padding one more element at
the end before the stride-1 pool (-inf for max; for avg the divisor is counted on a mask, as
PyTorch counts it). Whether a crop is needed is decided once per layer from the op's
arithmetic, so that no Python branch on a tensor's size is frozen into an export.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import is_exporting
from ..layers.lift_pool import LIFT_DOWN_POOLS, LIFT_UP_POOLS, _fx_leaf_call, _is_fx_proxy
from ..ops.operators import max_pool_stride1
from ..ops.reference import replicate_pad

__all__ = ["LiftPoolReplacement", "LiftUnpoolReplacement", "pool_output_size"]

_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length along one axis (aten's pooling_output_shape).

    Branch-free in ``size`` (``torch.sym_ite``), so it stays symbolic under torch.export.
    """
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode:  # the last window must start inside the input or its left padding
        out = torch.sym_ite((out - 1) * s >= size + p, out - 1, out)
    return out


def _fit(t: Tensor, dim: int, target, mode: str) -> Tensor:
    """Crop ``t`` along ``dim`` to ``target``; mode "fit" also replicate-pads when it is shorter."""
    if mode == "crop":
        return t.narrow(dim, 0, target)
    # Gathering clamped indices crops or replicate-pads with no branch on the size.
    index = torch.arange(target, device=t.device).clamp_max(t.shape[dim] - 1)
    return t.index_select(dim, index)


class LiftPoolReplacement(nn.Module):
    """A LiftDownPool standing in a max/avg pool, with the pool's output shape (and function).

    Args:
        lift: the LiftDownPool layer (its ``axes`` are the pool's stride-2 axes).
        kind: ``"max"`` or ``"avg"``, the replaced op.
        kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override:
            the replaced op's arguments, one entry per spatial axis.
        prepool: run the op at stride 1 before the lift (preserve mode for all but AvgPool(2, 2)).
        op: the replaced op's name, for the repr.
    """

    _liftswap_layer = True

    def __init__(
        self,
        lift: nn.Module,
        kind: str,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        prepool: bool = False,
        op: str = "",
        same_padding: bool = False,
    ) -> None:
        super().__init__()
        self.lift = lift
        self.kind = kind
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.dilation = tuple(dilation)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override
        self.prepool = bool(prepool)
        self.op = op
        self.same_padding = bool(same_padding)  # timm's *Same pools: TF 'same' padding first
        self.dims = len(self.kernel_size)
        # ceil_mode: one extra element at the end of each stride-2 axis gives the partial window.
        self._extra = tuple(1 if (self.ceil_mode and s == 2) else 0 for s in self.stride)
        self._fit_modes = tuple(self._fit_mode(i) for i in range(self.dims))

    def _same_total(self, size, axis: int):
        """TF 'same' padding of an axis, as timm's pad_same computes it."""
        k, s, d = self.kernel_size[axis], self.stride[axis], self.dilation[axis]
        return max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)

    def _produced(self, size: int, axis: int) -> int:
        """Length this layer produces along ``axis`` before fitting (mirrors forward)."""
        k, s, p, d = self.kernel_size[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        if self.same_padding:
            size = size + self._same_total(size, axis)
        if self.prepool:
            size = size + 2 * p + self._extra[axis] - d * (k - 1)
        return (size + 1) // 2 if s == 2 else size

    def _fit_mode(self, axis: int) -> str | None:
        k, s, p, d = self.kernel_size[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        diffs = set()
        for size in range(1, 200):
            if size + 2 * p < d * (k - 1) + 1:
                continue  # the op itself refuses this size
            padded = size + self._same_total(size, axis) if self.same_padding else size
            diffs.add(self._produced(size, axis) - pool_output_size(padded, k, s, p, d, self.ceil_mode))
        if diffs <= {0}:
            return None
        return "crop" if min(diffs) >= 0 else "fit"

    def _pads(self, before, after) -> list:
        """F.pad's list (last axis first) from per-axis callables before(axis), after(axis)."""
        return [v for a in reversed(range(self.dims)) for v in (before(a), after(a))]

    def _stride1_pool(self, x: Tensor) -> Tensor:
        k, p, d = self.kernel_size, self.padding, self.dilation
        ones, zeros = (1,) * self.dims, (0,) * self.dims
        window = math.prod(k)
        if self.kind == "avg" and self.divisor_override:
            # window sums / divisor (the exporter mistranslates divisor_override, torch 2.14)
            x = F.pad(x, self._pads(lambda a: p[a], lambda a: p[a] + self._extra[a]))
            return _AVG[self.dims](x, k, ones, 0) * (window / self.divisor_override)
        if not any(self._extra):  # (max pools without extra padding: the lift's max_window, see forward)
            return _AVG[self.dims](x, k, ones, p, False, self.count_include_pad)
        if self.kind == "max":
            if all(v == 1 for v in d):
                # Windows are contiguous, so a window reaching into the padding holds the edge
                # element: replicate padding gives the same max, and no -inf reaches the lift.
                for axis in range(self.dims):
                    x = replicate_pad(x, axis - self.dims, p[axis], p[axis] + self._extra[axis], export=is_exporting())
                return max_pool_stride1(x, k, zeros, d)
            pads = self._pads(lambda a: p[a], lambda a: p[a] + self._extra[a])
            h = max_pool_stride1(F.pad(x, pads, value=-math.inf), k, zeros, d)
            return h.clamp_min(torch.finfo(h.dtype).min)  # windows wholly in the padding are cropped later
        # avg with partial windows: window sums over the zero-padded input, divided by the count
        # PyTorch uses (the window clipped to the padded input, or to the input alone).
        pads = self._pads(lambda a: p[a], lambda a: p[a] + self._extra[a])
        sums = _AVG[self.dims](F.pad(x, pads), k, ones, 0) * window
        mask = x.new_ones((1, 1) + tuple(x.shape[2:]))
        if self.count_include_pad:
            mask = F.pad(mask, self._pads(lambda a: p[a], lambda a: p[a]), value=1.0)
            mask = F.pad(mask, self._pads(lambda a: 0, lambda a: self._extra[a]))
        else:
            mask = F.pad(mask, pads)
        return sums / (_AVG[self.dims](mask, k, ones, 0) * window)

    def forward(self, x: Tensor):
        if _is_fx_proxy(x):
            return _fx_leaf_call(self, x)
        if self.same_padding:
            pads = []
            for axis in reversed(range(self.dims)):
                total = self._same_total(x.shape[2 + axis], axis)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads, value=-math.inf if self.kind == "max" else 0.0)
        size = x.shape[2:]
        if self.prepool and self.kind == "max" and not any(self._extra):
            # the lift pools max_pool_stride1(x): its kernel may do so as it reads x (no h written)
            out = self.lift(x, max_window=(self.kernel_size, self.padding, self.dilation))
        else:
            out = self.lift(self._stride1_pool(x) if self.prepool else x)
        y, details = out if isinstance(out, tuple) else (out, None)
        for axis, mode in enumerate(self._fit_modes):
            if mode is not None:
                k, s, p, d = self.kernel_size[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
                target = pool_output_size(size[axis], k, s, p, d, self.ceil_mode)
                y = _fit(y, axis - self.dims, target, mode)
        # details keep their full size: LiftUnpoolReplacement fits y back to them.
        return y if details is None else (y, details)

    def extra_repr(self) -> str:
        how = "stride-1 pool, then lift" if self.prepool else "lift"
        return (
            f"replaces={self.op or self.kind}(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, ceil_mode={self.ceil_mode}): {how}"
        )


class LiftUnpoolReplacement(nn.Module):
    """A LiftUpPool standing in a ``max_unpool``: ``forward(y, details, output_size=None)``.

    The output has the unpool's size: ``output_size`` when given, else
    ``(in - 1) * stride - 2 * padding + kernel_size`` per axis, as ``max_unpool`` computes it.
    """

    _liftswap_layer = True

    def __init__(self, up: nn.Module, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], op: str = ""):
        super().__init__()
        self.up = up
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.op = op

    def forward(self, y: Tensor, details: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        if _is_fx_proxy(y) or _is_fx_proxy(details):
            return _fx_leaf_call(self, y, details, output_size=output_size)
        dims = len(self.kernel_size)
        if output_size is None:
            output_size = [
                (y.shape[2 + a] - 1) * self.stride[a] - 2 * self.padding[a] + self.kernel_size[a] for a in range(dims)
            ]
        output_size = list(output_size)[-dims:]
        axes = self.up.down.axes  # the other axes pass through unchanged
        for axis in axes:
            y = _fit(y, axis, details.shape[axis], "fit")  # the pool may have cropped y
        x = self.up(y, details)
        for axis in axes:
            x = _fit(x, axis, output_size[axis], "fit")
        return x

    def extra_repr(self) -> str:
        return f"replaces={self.op or 'max_unpool'}(kernel_size={self.kernel_size}, stride={self.stride})"


def build_pool_replacement(site, layer: dict, mode: str) -> LiftPoolReplacement:
    """The replacement module for a planned pool site (``site.layer`` holds the resolved settings)."""
    axes = tuple(a - site.dims for a, s in enumerate(site.stride) if s == 2)
    lift = LIFT_DOWN_POOLS[site.dims](
        site.channels,
        kernel_size=layer["kernel_size"],
        init=layer["init"],
        output=layer["output"],
        lambda_u=layer["lambda_u"],
        lambda_p=layer["lambda_p"],
        return_details=site.pair is not None,
        axes=axes,
    )
    return LiftPoolReplacement(
        lift,
        site.kind,
        site.kernel_size,
        site.stride,
        site.padding,
        site.dilation,
        site.ceil_mode,
        site.count_include_pad,
        site.divisor_override,
        prepool=layer.get("prepool", False),
        op=site.op,
        same_padding=site.same_padding,
    )


def build_unpool_replacement(site, down: LiftPoolReplacement) -> LiftUnpoolReplacement:
    up = LIFT_UP_POOLS[site.dims](down.lift)
    return LiftUnpoolReplacement(up, site.kernel_size, site.stride, site.padding, op=site.op)
