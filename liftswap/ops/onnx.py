"""The ONNX graphs of the LiftPool operators, in standard ONNX ops.

Traced op by op, one 2-D layer is some 80 nodes whose sizes torch.export must reason about
symbolically (halves of halves of the input size, with odd-size padding); that made exports of
converted models many times slower than the originals'. Inside :func:`liftswap.export_onnx`
(:func:`onnx_export_mode`) each LiftDownPool / LiftUpPool forward is instead recorded as its
``liftswap::`` operator (:mod:`.operators`): one node with a one-line shape rule. The ONNX graph
of each operator is written here from standard ops (Pad, Slice, Conv, Relu, Tanh, Mul, Add, Sub,
Concat, Reshape), so the file runs on every onnxruntime execution provider and needs no custom op.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

__all__ = ["onnx_export_mode", "onnx_exporting", "onnx_translations"]

# The filter sizes the convolution-land graph serves (replicate padding by one sample at most);
# other sizes export through Pad and Slice.
LAND_KERNELS = (1, 3)

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


def onnx_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: the operators in standard ONNX ops."""
    from onnxscript import opset18 as op

    from .operators import Args

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
        return r if base == 0.0 else op.Add(r, op.Mul(t, op.CastLike(op.Constant(value_float=base), t)))

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

    # --- convolution-land: every node a Conv, an AveragePool or an element-wise op on their
    # outputs, which onnxruntime's CPU provider keeps in its blocked (NCHWc) layout end to end.
    # Replicate padding and the odd axis's repeated sample come from AveragePool excluding its
    # padding: over a window of two, avg(t[j-1], t[j]) is t[0] alone at j = 0, so
    # t[max(j-1, 0)] = 2 avg - t[j] exactly, with no Pad, Slice or Concat.

    def channel_weight(values, channels, like, rank):
        """A (C, 1, 1...) depthwise 1x1 kernel from C values (a graph value) or one float."""
        if isinstance(values, float):
            values = op.CastLike(op.Constant(value_floats=[values] * channels), like)
        return op.Reshape(values, ints([channels, 1] + [1] * (rank - 2)))

    def scale(t, w, channels, bias=None):
        """Per-channel w * t (+ bias): a depthwise 1x1 Conv."""
        return op.Conv(t, w, bias, group=channels) if bias is not None else op.Conv(t, w, group=channels)

    def pool2(t, dim, rank, stride, begin):
        """AveragePool over two samples along ``dim`` excluding padding, padded by one at the
        beginning (``begin``) or the end."""
        kernel, strides, pads = [1] * (rank - 2), [1] * (rank - 2), [0] * (2 * (rank - 2))
        kernel[rank + dim - 2], strides[rank + dim - 2] = 2, stride
        pads[(rank + dim - 2) + (0 if begin else rank - 2)] = 1
        return op.AveragePool(t, kernel_shape=kernel, strides=strides, pads=pads, count_include_pad=0)

    def tap(dw, i, channels, like, factor=1.0):
        w = op.Reshape(op.Slice(dw, ints([i]), ints([i + 1]), ints([2])), ints([channels]))
        return w if factor == 1.0 else op.Mul(w, op.CastLike(op.Constant(value_float=factor), like))

    def residual_land(t, dim, rank, channels, dw, dw_b, pw, pw_b, negate):
        """tanh(pw relu(dw_3(replicate-padded t)) + pw_b), negated with ``negate`` (tanh is odd:
        the sign goes into the last Conv). A 3-tap replicate-padded depthwise filter is
        (w1 - w0 - w2) t + 2 w0 avg_left(t) + 2 w2 avg_right(t)."""
        k = _static(dw, -1)
        if k == 1:
            h = scale(t, channel_weight(tap(dw, 0, channels, t), channels, t, rank), channels, dw_b)
        else:
            center = op.Sub(op.Sub(tap(dw, 1, channels, t), tap(dw, 0, channels, t)), tap(dw, 2, channels, t))
            h = scale(t, channel_weight(center, channels, t, rank), channels, dw_b)
            left = scale(pool2(t, dim, rank, 1, True), channel_weight(tap(dw, 0, channels, t, 2.0), channels, t, rank), channels)
            right = scale(pool2(t, dim, rank, 1, False), channel_weight(tap(dw, 2, channels, t, 2.0), channels, t, rank), channels)
            h = op.Add(op.Add(h, left), right)
        h = op.Relu(h)
        point = op.Neg(pw) if negate else pw
        bias = None if pw_b is None else (op.Neg(pw_b) if negate else pw_b)
        return op.Tanh(scale(h, channel_weight(point, channels, t, rank), channels, bias))

    def lifted_down_land(x, a, rank, channels):
        predict, update = _operator(a, "p"), _operator(a, "u")
        bands = [x]
        for dim in reversed(tuple(a.axes)):
            s_list, d_list = [], []
            for b in bands:
                # x_e: a stride-2 1x1 Conv; x_o = 2 avg(x_e, x_o) - x_e, the average excluding
                # the padding an odd length needs, so its last x_o is its last x_e
                strides = [1] * (rank - 2)
                strides[rank + dim - 2] = 2
                x_e = op.Conv(b, channel_weight(1.0, channels, b, rank), strides=strides, group=channels)
                mean = pool2(b, dim, rank, 2, False)
                # d = x_o - base_p x_e - r_p(x_e) = 2 mean - (1 + base_p) x_e + (-r_p(x_e))
                # (sums nest so that onnxruntime folds each Add into the convolution feeding it)
                r_p = residual_land(x_e, dim, rank, channels, *predict[:4], negate=True)
                d = op.Add(scale(x_e, channel_weight(-(1.0 + predict[4]), channels, b, rank), channels), r_p)
                d = op.Add(scale(mean, channel_weight(2.0, channels, b, rank), channels), d)
                # s = x_e + base_u d + r_u(d)
                s = x_e if update[4] == 0.0 else op.Add(scale(d, channel_weight(update[4], channels, b, rank), channels), x_e)
                s = op.Add(s, residual_land(d, dim, rank, channels, *update[:4], negate=False))
                s_list.append(s)
                d_list.append(d)
            bands = s_list + d_list
        y = bands[0]
        for i, band in enumerate(bands[1:]):
            if a.output == "sum":
                y = op.Add(y, band)
            elif a.output == "gated":
                gamma = op.Reshape(op.Gather(a.gamma, ints([i]), axis=0), ints([channels]))
                y = op.Add(y, scale(band, channel_weight(gamma, channels, x, rank), channels))
        details = op.Concat(*[op.Unsqueeze(b, ints([1])) for b in bands[1:]], axis=1)
        return y, details, op.CastLike(op.Constant(value_floats=[0.0, 0.0]), x)

    def lifted_down(x, *args):
        a = Args(*args[:-1])  # the last: with_costs (exports run in eval mode: the costs are zeros)
        rank, channels = _static(x, None), _static(a.p_dw, 0)
        if _static(a.p_dw, -1) in LAND_KERNELS and _static(a.u_dw, -1) in LAND_KERNELS:
            return lifted_down_land(x, a, rank, channels)
        predict, update = _operator(a, "p"), _operator(a, "u")
        bands = [x]
        for dim in reversed(tuple(a.axes)):
            s_list, d_list = [], []
            for b in bands:
                x_e, x_o = halves(b, dim, rank)
                d = op.Sub(x_o, residual(x_e, dim, rank, channels, *predict))
                s = op.Add(x_e, residual(d, dim, rank, channels, *update))
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
        return y, details, op.CastLike(op.Constant(value_floats=[0.0, 0.0]), x)

    def lifted_up(y, details, *args):
        a = Args(*args)
        rank, channels = _static(y, None), _static(a.p_dw, 0)
        predict, update = _operator(a, "p"), _operator(a, "u")
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
                x_e = op.Sub(s, residual(d, dim, rank, channels, *update))
                x_o = op.Add(d, residual(x_e, dim, rank, channels, *predict))
                pos = rank + dim
                pair = op.Concat(op.Unsqueeze(x_e, ints([pos + 1])), op.Unsqueeze(x_o, ints([pos + 1])), axis=pos + 1)
                scale = [1] * rank
                scale[pos] = 2
                joined.append(op.Reshape(pair, op.Mul(op.Shape(x_e), ints(scale))))
            bands = joined
        return bands[0]

    return {torch.ops.liftswap.lift_down_pool.default: lifted_down, torch.ops.liftswap.lift_up_pool.default: lifted_up}


def _operator(a, which: str) -> tuple:
    """P's (``which`` "p") or U's (dw, dw bias, pw, pw bias, base), as ``residual`` takes them."""
    return tuple(getattr(a, f"{which}_{name}") for name in ("dw", "dw_b", "pw", "pw_b", "base"))


def _static(value, axis: int | None) -> int:
    """The exporter's static rank of ``value`` (axis None) or its size along ``axis``."""
    shape = value.shape
    size = None if shape is None else (len(shape) if axis is None else shape[axis])
    if not isinstance(size, int):
        raise RuntimeError("liftswap's ONNX translation needs static ranks, channel counts and kernel sizes")
    return size
