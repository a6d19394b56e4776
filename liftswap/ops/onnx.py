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

import torch

__all__ = ["onnx_export_mode", "onnx_exporting", "onnx_translations"]

# Open onnx_export_mode blocks. A module global, not a ContextVar: torch.compile reads the flag
# in every layer's forward, and dynamo before torch 2.5 cannot trace ContextVar.get (it guards on
# a global). A block in one thread also routes another thread's traced exports to the operators.
_ACTIVE = 0


@contextlib.contextmanager
def onnx_export_mode():
    """Within this block LiftPool layers call the ``liftswap::`` operators (export_onnx sets it)."""
    global _ACTIVE
    _ACTIVE += 1
    try:
        yield
    finally:
        _ACTIVE -= 1


def onnx_exporting() -> bool:
    return _ACTIVE > 0


def onnx_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: the operators in standard ONNX ops."""
    from onnxscript import opset18 as op

    from .operators import Args, _with_details

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

    def lifted_down(x, *args):
        a = Args(*args[: len(Args._fields)])  # then with_costs (exports run in eval mode: no costs)
        rank, channels = _static(x, None), _static(a.p_dw, 0)
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
        if _with_details(args):
            details = op.Concat(*[op.Unsqueeze(b, ints([1])) for b in bands[1:]], axis=1)
        else:  # (N, 0, C, ...), as the operator returns it
            details = op.Slice(op.Unsqueeze(y, ints([1])), ints([0]), ints([0]), ints([1]))
        return y, details, op.CastLike(op.Constant(value_floats=[]), x)  # (the operator's (0,) costs)

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
