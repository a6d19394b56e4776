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
from typing import NamedTuple, Optional

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


class _Args(NamedTuple):
    """The arguments both operators take after their tensor inputs (the layer's P, U and gamma)."""

    p_dw: Tensor
    p_dw_b: Optional[Tensor]
    p_pw: Tensor
    p_pw_b: Optional[Tensor]
    u_dw: Tensor
    u_dw_b: Optional[Tensor]
    u_pw: Tensor
    u_pw_b: Optional[Tensor]
    gamma: Optional[Tensor]
    axes: list
    output: str
    p_base: float
    u_base: float

    def predict(self) -> tuple:
        return self.p_dw, self.p_dw_b, self.p_pw, self.p_pw_b, self.p_base

    def update(self) -> tuple:
        return self.u_dw, self.u_dw_b, self.u_pw, self.u_pw_b, self.u_base

    def weights(self):
        """(predict, update) as the functional forms take them."""
        from .lift_pool import OperatorWeights

        return tuple(OperatorWeights(base, dw, dw_b, pw.reshape(-1), pw_b) for dw, dw_b, pw, pw_b, base in (self.predict(), self.update()))


_ARGS = (
    "Tensor p_dw, Tensor? p_dw_b, Tensor p_pw, Tensor? p_pw_b, Tensor u_dw, Tensor? u_dw_b, Tensor u_pw, "
    "Tensor? u_pw_b, Tensor? gamma, int[] axes, str output, float p_base, float u_base"
)


@torch.library.custom_op("liftswap::down_pool", mutates_args=(), schema=f"(Tensor x, {_ARGS}) -> (Tensor, Tensor)")
def down_pool(x: Tensor, *args) -> tuple[Tensor, Tensor]:
    """``lift_down_pool`` as one operator: ``(y, details)``."""
    from .lift_pool import lift_down_pool

    a = _Args(*args)
    res = lift_down_pool(x, *a.weights(), tuple(a.axes), a.output, a.gamma, False)
    return res.y.clone(), res.details.clone()


@down_pool.register_fake
def _down_pool_fake(x, *args):
    shape = list(x.shape)
    axes = _Args(*args).axes
    for a in axes:
        shape[a] = (shape[a] + 1) // 2
    return x.new_empty(shape), x.new_empty([shape[0], 2 ** len(axes) - 1] + shape[1:])


@torch.library.custom_op("liftswap::up_pool", mutates_args=(), schema=f"(Tensor y, Tensor details, {_ARGS}) -> Tensor")
def up_pool(y: Tensor, details: Tensor, *args) -> Tensor:
    """``lift_up_pool`` as one operator (no ``output_size``: the caller crops)."""
    from .lift_pool import lift_up_pool

    a = _Args(*args)
    return lift_up_pool(y, details, *a.weights(), tuple(a.axes), a.output, a.gamma).clone()


@up_pool.register_fake
def _up_pool_fake(y, details, *args):
    shape = list(y.shape)
    for a in _Args(*args).axes:
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

    def gate(gamma, i, rank):
        """gamma[i] as a (1, C, 1, ...) tensor."""
        return op.Reshape(op.Gather(gamma, ints([i]), axis=0), ints([1, -1] + [1] * (rank - 2)))

    def lifted_down(x, *args):
        a = _Args(*args)
        rank, channels = _static(x, None), _static(a.p_dw, 0)
        bands = [x]
        for dim in reversed(tuple(a.axes)):
            s_list, d_list = [], []
            for b in bands:
                x_e, x_o = halves(b, dim, rank)
                d = op.Sub(x_o, residual(x_e, dim, rank, channels, *a.predict()))
                s = op.Add(x_e, residual(d, dim, rank, channels, *a.update()))
                s_list.append(s)
                d_list.append(d)
            bands = s_list + d_list
        y = bands[0]
        for i, band in enumerate(bands[1:]):
            if a.output == "sum":
                y = op.Add(y, band)
            elif a.output == "gated":
                y = op.Add(y, op.Mul(gate(a.gamma, i, rank), band))
        details = op.Concat(*[op.Unsqueeze(b, ints([1])) for b in bands[1:]], axis=1)
        return y, details

    def lifted_up(y, details, *args):
        a = _Args(*args)
        rank, channels = _static(y, None), _static(a.p_dw, 0)
        n_detail = 2 ** len(a.axes) - 1
        det = [op.Squeeze(op.Slice(details, ints([i]), ints([i + 1]), ints([1])), ints([1])) for i in range(n_detail)]
        approx = y
        for i, band in enumerate(det):
            if a.output == "sum":
                approx = op.Sub(approx, band)
            elif a.output == "gated":
                approx = op.Sub(approx, op.Mul(gate(a.gamma, i, rank), band))
        bands = [approx] + det
        for dim in a.axes:  # outermost first, the inverse order of the down pool's lifts
            half = len(bands) // 2
            joined = []
            for s, d in zip(bands[:half], bands[half:]):
                x_e = op.Sub(s, residual(d, dim, rank, channels, *a.update()))
                x_o = op.Add(d, residual(x_e, dim, rank, channels, *a.predict()))
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
