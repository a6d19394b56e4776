"""The CUDA backend for kernel sizes other than 3: the lifting operators' residual as one Triton
kernel each way, for any number of taps K.

The fused kernels of :mod:`.cuda` are written for 3 taps (their windows slide in registers, one
named value per tap). For other kernel sizes the operators run the reference's composition
(:func:`.reference.down_pool`, :func:`.reference.up_pool`: the splits and the lifting steps'
additions) with :func:`residual` in place of the reference's residual,
``r(t) = tanh(pw relu(dw_K(replicate_pad(t))) + pb)`` along one axis: one launch instead of six
ops forward (padding, depthwise convolution, relu, scale, tanh), one instead of their backward
(autograd through the composition calls :class:`_Residual`'s backward), and no intermediate
tensor in memory. Each thread owns one position (no sliding window, so K is a compile-time
constant of any size); the backward recomputes the K residuals whose taps read its position.

Serves what :func:`.cuda.usable` serves (CUDA float32/float16/bfloat16, float32 arithmetic;
CPU tensors under :func:`.cuda.on_cpu`, for tests), with the weights on the same device."""

from __future__ import annotations

import torch
from torch import Tensor

from . import cuda
from .cuda import triton
from .triton_launch import launch

__all__ = ["usable", "residual"]

_BLOCK = 256  # threads per program: one position each

if triton is not None:
    import triton.language as tl

    from .cuda import _chunk_positions, _clamp, _tanh_k, _times_k, _wide

    @triton.jit
    def _pre_activation(tp, j, J, B, mask, w_ptr, bias, c, K: tl.constexpr):
        """h at position j in [0, J): the dw bias plus tap k times t at clamp(j + k - K // 2)."""
        h = bias
        for k in tl.static_range(K):
            t = _wide(tl.load(tp + _clamp(j + k - K // 2, J).to(tl.int64) * B, mask=mask, other=0.0))
            h += _wide(tl.load(w_ptr + c * K + k)) * t
        return h

    @triton.jit
    def _residual_forward_kernel(t_ptr, r_ptr, w_ptr, b_ptr, pw_ptr, pb_ptr, C, R, J, B,
                                 K: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        """r = tanh(pw relu(h) + pb) at every position of (N C) planes of (R, J, B), t replicate-padded."""
        plane, q, on, line, _, _ = _chunk_positions(R, J, J, B, 1, BLOCK)  # a position per thread
        c = plane % C
        at = plane.to(tl.int64) * R * J * B + line
        h = _pre_activation(t_ptr + at, q, J, B, on, w_ptr, _wide(tl.load(b_ptr + c)), c, K)
        r = _tanh_k(_times_k(_wide(tl.load(pw_ptr + c))) * tl.maximum(h, 0.0) + _times_k(_wide(tl.load(pb_ptr + c))))
        tl.store(r_ptr + at + q.to(tl.int64) * B, r.to(r_ptr.dtype.element_ty), mask=on)

    @triton.jit
    def _residual_backward_kernel(t_ptr, g_ptr, gt_ptr, sums_ptr, w_ptr, b_ptr, pw_ptr, pb_ptr, C, R, J, B,
                                  K: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        """t's gradient from r's (g), and this program's K + 3 weight-gradient sums in row (n, tile)
        of sums (N tiles, (K + 3) C), laid out as the gradients end to end (taps (C, K), dw bias,
        pw, pw bias: a column sum gives each as a view). Position q gathers w_k a_j from each
        position j whose tap k reads it (clamp(j + k - K // 2) == q: at the ends replicate
        padding folds the outer taps onto the end sample), a_j = g_j (1 - r_j^2) pw [h_j > 0],
        r_j recomputed from t: K residuals per position, no buffer of a and one launch."""
        plane, q, on, line, _, tiles = _chunk_positions(R, J, J, B, 1, BLOCK)  # a position per thread
        c = plane % C
        at = plane.to(tl.int64) * R * J * B + line
        tp = t_ptr + at
        bias, slope = _wide(tl.load(b_ptr + c)), _wide(tl.load(pw_ptr + c))
        pbk = _times_k(_wide(tl.load(pb_ptr + c)))
        gt = tl.zeros((BLOCK,), ACC)
        sums = sums_ptr + ((plane // C) * tiles + tl.program_id(0) % tiles).to(tl.int64) * (K + 3) * C
        for jj in range(K):  # a loop, not unrolled: the build's time grows with K, not K^2
            j = q + jj - K // 2
            inside = on & (j >= 0) & (j < J)
            jc = _clamp(j, J)
            h = _pre_activation(tp, jc, J, B, on, w_ptr, bias, c, K)
            r = _tanh_k(_times_k(slope) * tl.maximum(h, 0.0) + pbk)
            gr = _wide(tl.load(g_ptr + at + jc.to(tl.int64) * B, mask=inside, other=0.0)) * (1.0 - r * r)
            a = gr * slope * (h > 0.0)
            for k in tl.static_range(K):
                gt += tl.where(inside & (_clamp(j + k - K // 2, J) == q), _wide(tl.load(w_ptr + c * K + k)) * a, 0.0)
            if jj == K // 2:  # q's own residual: its terms of the weights' gradients
                for k in tl.static_range(K):
                    t = _wide(tl.load(tp + _clamp(q + k - K // 2, J).to(tl.int64) * B, mask=on, other=0.0))
                    tl.store(sums + c * K + k, tl.sum(tl.where(on, a * t, 0.0), axis=0))
                tl.store(sums + K * C + c, tl.sum(tl.where(on, a, 0.0), axis=0))
                tl.store(sums + (K + 1) * C + c, tl.sum(tl.where(on, gr * tl.maximum(h, 0.0), 0.0), axis=0))
                tl.store(sums + (K + 2) * C + c, tl.sum(tl.where(on, gr, 0.0), axis=0))
        tl.store(gt_ptr + at + q.to(tl.int64) * B, gt.to(gt_ptr.dtype.element_ty), mask=on)


def usable(t: Tensor, *weights: Tensor | None) -> bool:
    """Whether :func:`residual` runs the kernels for ``t`` and these weights (any number of taps)."""
    return cuda.usable(t) and all(w is None or w.device == t.device for w in weights)


def _programs(planes: int, r: int, j: int, b: int) -> int:
    return planes * cuda._cdiv(r * j * b, _BLOCK)


class _Residual(torch.autograd.Function):
    """r(t) along ``dim`` with its backward, both one launch."""

    @staticmethod
    def forward(ctx, t: Tensor, dim: int, dw: Tensor, db: Tensor | None, pw: Tensor, pb: Tensor | None) -> Tensor:
        t = t.contiguous()
        ctx.save_for_backward(t, dw, db, pw, pb)
        ctx.dim = dim
        planes, r, j, _, b = cuda._geometry(t, dim)  # (N C) planes of (r, j, b), j the length along dim
        out = torch.empty_like(t)
        with cuda._on(t):
            launch(
                _residual_forward_kernel, _programs(planes, r, j, b),
                t, out, *cuda._flat((dw, db, pw, pb), t), t.shape[1], r, j, b, K=dw.shape[-1], BLOCK=_BLOCK
            )
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        t, dw, db, pw, pb = ctx.saved_tensors
        planes, r, j, _, b = cuda._geometry(t, ctx.dim)
        k = dw.shape[-1]
        nprog = _programs(planes, r, j, b)
        tl_acc, acc = cuda._acc(t)
        gt = torch.empty_like(t)
        c = t.shape[1]
        sums = torch.empty((nprog // c, (k + 3) * c), dtype=acc, device=t.device)  # a row per (n, tile)
        with cuda._on(t):
            launch(
                _residual_backward_kernel, nprog,
                t, g.contiguous(), gt, sums, *cuda._flat((dw, db, pw, pb), t), t.shape[1], r, j, b, K=k, ACC=tl_acc, BLOCK=_BLOCK
            )
        grads = sums.sum(0).split([k * c, c, c, c])  # one op: the rest are views
        grads = [None if w is None else v.view(w.shape).to(w.dtype) for v, w in zip(grads, (dw, db, pw, pb))]
        return gt, None, *grads


def residual(t: Tensor, dim: int, w, export: bool = False) -> Tensor:
    """:func:`.reference._residual` through the kernels: ``r(t)`` along ``dim`` (negative) of a
    (N, C, *spatial) tensor for P's or U's weights ``w`` (:class:`.reference.OperatorWeights`)."""
    assert not export, "exports record the reference's standard ops"
    return _Residual.apply(t, dim, w.dw_weight, w.dw_bias, w.pw_weight, w.pw_bias)
