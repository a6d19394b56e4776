"""The LiftPool layers as single operators while exporting to ONNX.

Traced op by op, one 2-D layer is some 80 nodes whose sizes torch.export must reason about
symbolically (halves of halves of the input size, with odd-size padding); that made exports of
converted models many times slower than the originals'. Inside :func:`liftswap.export_onnx`
(:func:`onnx_export_mode`) each LiftDownPool / LiftUpPool forward is instead one ``liftswap::``
operator: torch.export records one node with a one-line shape rule, and the ONNX graph of the
layer is written here directly from standard ops (Pad, Slice, Conv, Relu, Tanh, Mul, Add, Sub,
Concat, Reshape), so it runs on every onnxruntime execution provider and needs no custom op.

The operators compute the PyTorch reference when run eagerly (the exported program stays runnable).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

import torch
from torch import Tensor

__all__ = ["onnx_export_mode", "onnx_exporting", "onnx_translations"]

_ACTIVE = contextvars.ContextVar("liftswap_onnx_export", default=False)


@contextlib.contextmanager
def onnx_export_mode():
    """Within this block LiftPool layers call the ``liftswap::`` operators (export_onnx sets it)."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def onnx_exporting() -> bool:
    return _ACTIVE.get()


def _weights(p_dw, p_dw_b, p_pw, p_pw_b, u_dw, u_dw_b, u_pw, u_pw_b, p_base, u_base):
    from .lift_pool import OperatorWeights

    return (
        OperatorWeights(p_base, p_dw, p_dw_b, p_pw.reshape(-1), p_pw_b),
        OperatorWeights(u_base, u_dw, u_dw_b, u_pw.reshape(-1), u_pw_b),
    )


@torch.library.custom_op("liftswap::down_pool", mutates_args=())
def down_pool(
    x: Tensor,
    p_dw: Tensor,
    p_dw_b: Optional[Tensor],
    p_pw: Tensor,
    p_pw_b: Optional[Tensor],
    u_dw: Tensor,
    u_dw_b: Optional[Tensor],
    u_pw: Tensor,
    u_pw_b: Optional[Tensor],
    gamma: Optional[Tensor],
    axes: list[int],
    output: str,
    p_base: float,
    u_base: float,
) -> tuple[Tensor, Tensor]:
    """``lift_down_pool`` as one operator: ``(y, details)``."""
    from .lift_pool import lift_down_pool

    predict, update = _weights(p_dw, p_dw_b, p_pw, p_pw_b, u_dw, u_dw_b, u_pw, u_pw_b, p_base, u_base)
    token = _ACTIVE.set(False)
    try:
        res = lift_down_pool(x, predict, update, tuple(axes), output, gamma, False)
    finally:
        _ACTIVE.reset(token)
    return res.y.clone(), res.details.clone()


@down_pool.register_fake
def _down_pool_fake(x, p_dw, p_dw_b, p_pw, p_pw_b, u_dw, u_dw_b, u_pw, u_pw_b, gamma, axes, output, p_base, u_base):
    shape = list(x.shape)
    for a in axes:
        shape[a] = (shape[a] + 1) // 2
    return x.new_empty(shape), x.new_empty([shape[0], 2 ** len(axes) - 1] + shape[1:])


@torch.library.custom_op("liftswap::up_pool", mutates_args=())
def up_pool(
    y: Tensor,
    details: Tensor,
    p_dw: Tensor,
    p_dw_b: Optional[Tensor],
    p_pw: Tensor,
    p_pw_b: Optional[Tensor],
    u_dw: Tensor,
    u_dw_b: Optional[Tensor],
    u_pw: Tensor,
    u_pw_b: Optional[Tensor],
    gamma: Optional[Tensor],
    axes: list[int],
    output: str,
    p_base: float,
    u_base: float,
) -> Tensor:
    """``lift_up_pool`` as one operator (no ``output_size``: the caller crops)."""
    from .lift_pool import lift_up_pool

    predict, update = _weights(p_dw, p_dw_b, p_pw, p_pw_b, u_dw, u_dw_b, u_pw, u_pw_b, p_base, u_base)
    token = _ACTIVE.set(False)
    try:
        return lift_up_pool(y, details, predict, update, tuple(axes), output, gamma).clone()
    finally:
        _ACTIVE.reset(token)


@up_pool.register_fake
def _up_pool_fake(y, details, p_dw, p_dw_b, p_pw, p_pw_b, u_dw, u_dw_b, u_pw, u_pw_b, gamma, axes, output, p_base, u_base):
    shape = list(y.shape)
    for a in axes:
        shape[a] = 2 * shape[a]
    return y.new_empty(shape)


def onnx_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: the operators in standard ONNX ops."""
    from onnxscript import opset18 as op

    def ints(values):
        return op.Constant(value_ints=list(values))

    def residual(t, dim, rank, channels, dw, dw_b, pw, pw_b, base):
        """base * t + tanh(pw(relu(dw_K(pad_edge(t))))) along ``dim`` (negative)."""
        shape = [0, 1] + [1] * (rank - 2)
        shape[rank + dim] = -1
        kernel = op.Reshape(dw, ints(shape))
        half = _static(dw, -1) // 2
        h = op.Pad(t, ints([half, half]), None, ints([dim]), mode="edge") if half else t
        h = op.Relu(op.Conv(h, kernel, dw_b, group=channels) if dw_b is not None else op.Conv(h, kernel, group=channels))
        point = op.Reshape(pw, ints([0, 1] + [1] * (rank - 2)))
        r = op.Tanh(op.Conv(h, point, pw_b, group=channels) if pw_b is not None else op.Conv(h, point, group=channels))
        return r if base == 0.0 else op.Add(r, op.Mul(t, op.Constant(value_float=base)))

    def halves(t, dim, rank):
        """x_e = t[0::2] and x_o = t[1::2] along ``dim``, x_o with t's last sample repeated when the
        length is odd (a slice [0 : L % 2] of the last sample): no Pad of the whole tensor, which
        onnxruntime runs several times slower than these slices."""
        big = 2**62
        even = op.Slice(t, ints([0]), ints([big]), ints([dim]), ints([2]))
        odd = op.Slice(t, ints([1]), ints([big]), ints([dim]), ints([2]))
        length = op.Shape(t, start=rank + dim, end=rank + dim + 1)
        last = op.Slice(t, ints([-1]), ints([big]), ints([dim]))
        last = op.Slice(last, ints([0]), op.Mod(length, ints([2])), ints([dim]))
        return even, op.Concat(odd, last, axis=dim)

    def lifted_down(x, p_dw, p_dw_b, p_pw, p_pw_b, u_dw, u_dw_b, u_pw, u_pw_b, gamma, axes, output, p_base, u_base):
        rank, channels = _static(x, None), _static(p_dw, 0)
        bands = [x]
        for dim in reversed(tuple(axes)):
            s_list, d_list = [], []
            for b in bands:
                x_e, x_o = halves(b, dim, rank)
                d = op.Sub(x_o, residual(x_e, dim, rank, channels, p_dw, p_dw_b, p_pw, p_pw_b, p_base))
                s = op.Add(x_e, residual(d, dim, rank, channels, u_dw, u_dw_b, u_pw, u_pw_b, u_base))
                s_list.append(s)
                d_list.append(d)
            bands = s_list + d_list
        y = bands[0]
        for i, band in enumerate(bands[1:]):
            if output == "sum":
                y = op.Add(y, band)
            elif output == "gated":
                g = op.Reshape(op.Gather(gamma, ints([i]), axis=0), ints([1, -1] + [1] * (rank - 2)))
                y = op.Add(y, op.Mul(g, band))
        details = op.Concat(*[op.Unsqueeze(b, ints([1])) for b in bands[1:]], axis=1)
        return y, details

    def lifted_up(y, details, p_dw, p_dw_b, p_pw, p_pw_b, u_dw, u_dw_b, u_pw, u_pw_b, gamma, axes, output, p_base, u_base):
        rank, channels = _static(y, None), _static(p_dw, 0)
        n_detail = 2 ** len(axes) - 1
        det = [op.Squeeze(op.Slice(details, ints([i]), ints([i + 1]), ints([1])), ints([1])) for i in range(n_detail)]
        approx = y
        for i, band in enumerate(det):
            if output == "sum":
                approx = op.Sub(approx, band)
            elif output == "gated":
                g = op.Reshape(op.Gather(gamma, ints([i]), axis=0), ints([1, -1] + [1] * (rank - 2)))
                approx = op.Sub(approx, op.Mul(g, band))
        bands = [approx] + det
        for dim in axes:  # outermost first, the inverse order of the down pool's lifts
            half = len(bands) // 2
            joined = []
            for s, d in zip(bands[:half], bands[half:]):
                x_e = op.Sub(s, residual(d, dim, rank, channels, u_dw, u_dw_b, u_pw, u_pw_b, u_base))
                x_o = op.Add(d, residual(x_e, dim, rank, channels, p_dw, p_dw_b, p_pw, p_pw_b, p_base))
                pos = rank + dim
                pair = op.Concat(op.Unsqueeze(x_e, ints([pos + 1])), op.Unsqueeze(x_o, ints([pos + 1])), axis=pos + 1)
                scale = [1] * rank
                scale[pos] = 2
                joined.append(op.Reshape(pair, op.Mul(op.Shape(x_e), ints(scale))))
            bands = joined
        return bands[0]

    return {torch.ops.liftswap.down_pool.default: lifted_down, torch.ops.liftswap.up_pool.default: lifted_up}


def _static(value, axis: int | None) -> int:
    """The exporter's static rank of ``value`` (axis None) or its size along ``axis``."""
    shape = value.shape
    size = None if shape is None else (len(shape) if axis is None else shape[axis])
    if not isinstance(size, int):
        raise RuntimeError("liftswap's ONNX translation needs static ranks, channel counts and kernel sizes")
    return size
