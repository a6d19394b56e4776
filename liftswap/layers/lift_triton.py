"""One lifting step as a Triton kernel, forward and backward, for CUDA tensors.

On a GPU the op-by-op lifting step (a dozen element-wise passes around two depthwise
convolutions, each a kernel launch) costs its launches, not its arithmetic. Here one launch
lifts a whole tensor along one axis, and one launch computes its backward: each output
position recomputes the few neighbours it needs (P and U are 3-tap operators) from ``x`` in
registers and L1, so nothing but ``x`` and the weights is kept for backward. The per-channel
weight gradients are reduced per program into a buffer that PyTorch sums (deterministic: no
atomics).

Serves CUDA float32/float16/bfloat16 tensors (arithmetic in float32) with ``kernel_size=3`` in
eager mode; everything else runs the PyTorch implementation of :mod:`.lift_pool`, which
computes the same function. ``LIFTSWAP_TRITON=0`` turns it off. Under ``TRITON_INTERPRET=1``
the kernels also run on CPU tensors (float64 too), which is how CI tests them without a GPU.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from torch import Tensor

try:  # Triton ships with PyTorch's CUDA wheels on Linux; elsewhere this module stays unused.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

__all__ = ["available", "enabled", "on_cpu", "usable", "lift"]

_enabled = os.environ.get("LIFTSWAP_TRITON", "1").strip().lower() not in ("0", "false", "no", "off")
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_on_cpu = False  # serve CPU tensors through the interpreter: tests only (see on_cpu)
_BLOCK = 512
_N_GRADS = 12  # per program: dw (3) + dw bias + pw + pw bias, for P then U


def available() -> bool:
    """Whether the Triton kernels can run here (Triton importable and not turned off)."""
    return _enabled and triton is not None


@contextmanager
def enabled(flag: bool):
    """Use (or not) the Triton kernels inside the block; for comparisons and benchmarks."""
    global _enabled
    before, _enabled = _enabled, bool(flag)
    try:
        yield
    finally:
        _enabled = before


@contextmanager
def on_cpu():
    """Inside the block, CPU tensors (float64 too) go through the kernels, run by Triton's
    interpreter: for testing the kernels without a GPU. Needs ``TRITON_INTERPRET=1`` set
    before this module is imported."""
    global _on_cpu
    if not _INTERPRET:
        raise RuntimeError("lift_triton.on_cpu() needs TRITON_INTERPRET=1 set before liftswap is imported")
    before, _on_cpu = _on_cpu, True
    try:
        yield
    finally:
        _on_cpu = before


def usable(x: Tensor, *weights: Tensor | None) -> bool:
    """Whether :func:`lift` serves these tensors (see the module docstring)."""
    if not available():
        return False
    dtypes = (torch.float32, torch.float16, torch.bfloat16) + ((torch.float64,) if _on_cpu else ())
    if not (x.is_cuda or _on_cpu) or x.dtype not in dtypes or type(x) not in (Tensor, torch.nn.Parameter):
        return False
    if weights and (weights[0] is None or weights[0].shape[-1] != 3):
        return False
    for w in weights:
        if w is not None and (w.device != x.device or type(w) not in (Tensor, torch.nn.Parameter)):
            return False
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False
    if torch._C._functorch.peek_interpreter_stack() is not None or torch.autograd.forward_ad._current_level >= 0:
        return False
    return True


if triton is not None:

    @triton.jit
    def _clamp(p, n):
        return tl.minimum(tl.maximum(p, 0), n - 1)

    @triton.jit
    def _tanh(z):
        # tanh(z) = 1 - 2 / (exp(2z) + 1): exact limits at +-inf, no libdevice (the interpreter lacks it)
        return 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)

    @triton.jit
    def _wide(v):
        """Half-precision values to float32 for the arithmetic (float32 and float64 stay)."""
        if v.dtype == tl.float16 or v.dtype == tl.bfloat16:
            v = v.to(tl.float32)
        return v

    @triton.jit
    def _even(xp, p, J, B, mask):
        """x_e at position p (clamped: replicate padding)."""
        return _wide(tl.load(xp + 2 * _clamp(p, J).to(tl.int64) * B, mask=mask, other=0.0))

    @triton.jit
    def _odd(xp, p, J, L, B, mask):
        """x_o at position p (clamped); an odd axis repeats its last sample."""
        q = tl.minimum(2 * _clamp(p, J) + 1, L - 1)
        return _wide(tl.load(xp + q.to(tl.int64) * B, mask=mask, other=0.0))

    @triton.jit
    def _hp(xp, p, J, B, mask, w0, w1, w2, b):
        """P's depthwise 3-tap convolution of x_e at position p (p in range)."""
        return b + w0 * _even(xp, p - 1, J, B, mask) + w1 * _even(xp, p, J, B, mask) + w2 * _even(xp, p + 1, J, B, mask)

    @triton.jit
    def _detail(xp, p, J, L, B, mask, w0, w1, w2, b, pw, pb, BASE_P: tl.constexpr):
        """d at position p (clamped)."""
        pc = _clamp(p, J)
        r = _tanh(pw * tl.maximum(_hp(xp, pc, J, B, mask, w0, w1, w2, b), 0.0) + pb)
        return _odd(xp, pc, J, L, B, mask) - BASE_P * _even(xp, pc, J, B, mask) - r

    @triton.jit
    def _load_grad(gp, j, J, B, mask):
        """An output gradient at position j; zero outside [0, J) (no clamping: each j counts once)."""
        ok = mask & (j >= 0) & (j < J)
        return _wide(tl.load(gp + tl.where(ok, j, 0).to(tl.int64) * B, mask=ok, other=0.0))

    @triton.jit
    def _a_u(d_m, d_0, d_p, gs, w0, w1, w2, b, pw, pb):
        """The gradient reaching U's depthwise output at one position, and U's residual there."""
        h = b + w0 * d_m + w1 * d_0 + w2 * d_p
        r = _tanh(pw * tl.maximum(h, 0.0) + pb)
        g = gs * (1.0 - r * r)  # gradient at the pointwise output
        return g * pw * (h > 0.0), g, h

    @triton.jit
    def _tap(a, j, q, J, w, OFFSET: tl.constexpr):
        """What position j's tap at j + OFFSET passes back to position q (replicate padding folds taps)."""
        return tl.where((j >= 0) & (j < J) & (_clamp(j + OFFSET, J) == q), a * w, 0.0)

    @triton.jit
    def _gather(a_m, a_0, a_p, q, J, w0, w1, w2):
        """Sum over the taps of positions q-1, q, q+1 that land on q."""
        t = _tap(a_m, q - 1, q, J, w0, -1) + _tap(a_m, q - 1, q, J, w1, 0) + _tap(a_m, q - 1, q, J, w2, 1)
        t += _tap(a_0, q, q, J, w0, -1) + _tap(a_0, q, q, J, w1, 0) + _tap(a_0, q, q, J, w2, 1)
        t += _tap(a_p, q + 1, q, J, w0, -1) + _tap(a_p, q + 1, q, J, w1, 0) + _tap(a_p, q + 1, q, J, w2, 1)
        return t

    @triton.jit
    def _positions(C, R, L, J, B, BLOCK: tl.constexpr):
        # one program: BLOCK outputs of one (n, c) plane; a 1D grid has no 65535 limit
        tiles = tl.cdiv(R * J * B, BLOCK)
        plane = tl.program_id(0) // tiles
        idx = (tl.program_id(0) % tiles) * BLOCK + tl.arange(0, BLOCK)
        mask = idx < R * J * B
        b = idx % B
        j = (idx // B) % J
        r = idx // (B * J)
        x_off = plane.to(tl.int64) * R * L * B + r.to(tl.int64) * L * B + b
        y_off = plane.to(tl.int64) * R * J * B + r.to(tl.int64) * J * B + b
        return plane % C, j, mask, x_off, y_off

    @triton.jit
    def _lift_forward_kernel(
        x_ptr, s_ptr, d_ptr, wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        C, R, L, J, B,
        BASE_P: tl.constexpr, BASE_U: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        c, j, mask, x_off, y_off = _positions(C, R, L, J, B, BLOCK)
        xp = x_ptr + x_off
        wp0, wp1, wp2 = tl.load(wp_ptr + 3 * c), tl.load(wp_ptr + 3 * c + 1), tl.load(wp_ptr + 3 * c + 2)
        bp, pwp, pbp = tl.load(bp_ptr + c), tl.load(pwp_ptr + c), tl.load(pbp_ptr + c)
        wu0, wu1, wu2 = tl.load(wu_ptr + 3 * c), tl.load(wu_ptr + 3 * c + 1), tl.load(wu_ptr + 3 * c + 2)
        bu, pwu, pbu = tl.load(bu_ptr + c), tl.load(pwu_ptr + c), tl.load(pbu_ptr + c)
        d_m = _detail(xp, j - 1, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_0 = _detail(xp, j, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p = _detail(xp, j + 1, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        hu = bu + wu0 * d_m + wu1 * d_0 + wu2 * d_p
        s = _even(xp, j, J, B, mask) + BASE_U * d_0 + _tanh(pwu * tl.maximum(hu, 0.0) + pbu)
        tl.store(s_ptr + y_off + j.to(tl.int64) * B, s.to(s_ptr.dtype.element_ty), mask=mask)
        tl.store(d_ptr + y_off + j.to(tl.int64) * B, d_0.to(d_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _lift_backward_kernel(
        x_ptr, gs_ptr, gd_ptr, gx_ptr, gw_ptr, wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        C, R, L, J, B,
        BASE_P: tl.constexpr, BASE_U: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        c, i, mask, x_off, y_off = _positions(C, R, L, J, B, BLOCK)
        xp = x_ptr + x_off
        gsp = gs_ptr + y_off
        gdp = gd_ptr + y_off
        wp0, wp1, wp2 = tl.load(wp_ptr + 3 * c), tl.load(wp_ptr + 3 * c + 1), tl.load(wp_ptr + 3 * c + 2)
        bp, pwp, pbp = tl.load(bp_ptr + c), tl.load(pwp_ptr + c), tl.load(pbp_ptr + c)
        wu0, wu1, wu2 = tl.load(wu_ptr + 3 * c), tl.load(wu_ptr + 3 * c + 1), tl.load(wu_ptr + 3 * c + 2)
        bu, pwu, pbu = tl.load(bu_ptr + c), tl.load(pwu_ptr + c), tl.load(pbu_ptr + c)
        # d at i-3 .. i+3 (clamped), then U's gradient at i-2 .. i+2
        d_m3 = _detail(xp, i - 3, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_m2 = _detail(xp, i - 2, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_m1 = _detail(xp, i - 1, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_0 = _detail(xp, i, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p1 = _detail(xp, i + 1, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p2 = _detail(xp, i + 2, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p3 = _detail(xp, i + 3, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        gs_m2 = _load_grad(gsp, i - 2, J, B, mask)
        gs_m1 = _load_grad(gsp, i - 1, J, B, mask)
        gs_0 = _load_grad(gsp, i, J, B, mask)
        gs_p1 = _load_grad(gsp, i + 1, J, B, mask)
        gs_p2 = _load_grad(gsp, i + 2, J, B, mask)
        # the d of a neighbour j is d at clamp(j): d_m2 already is d[clamp(i-2)], as _detail clamps
        au_m2, _, _ = _a_u(d_m3, d_m2, d_m1, gs_m2, wu0, wu1, wu2, bu, pwu, pbu)
        au_m1, _, _ = _a_u(d_m2, d_m1, d_0, gs_m1, wu0, wu1, wu2, bu, pwu, pbu)
        au_0, gu_0, hu_0 = _a_u(d_m1, d_0, d_p1, gs_0, wu0, wu1, wu2, bu, pwu, pbu)
        au_p1, _, _ = _a_u(d_0, d_p1, d_p2, gs_p1, wu0, wu1, wu2, bu, pwu, pbu)
        au_p2, _, _ = _a_u(d_p1, d_p2, d_p3, gs_p2, wu0, wu1, wu2, bu, pwu, pbu)
        # the gradient reaching d at i-1, i, i+1
        gD_m1 = _load_grad(gdp, i - 1, J, B, mask) + BASE_U * gs_m1 + _gather(au_m2, au_m1, au_0, i - 1, J, wu0, wu1, wu2)
        gD_0 = _load_grad(gdp, i, J, B, mask) + BASE_U * gs_0 + _gather(au_m1, au_0, au_p1, i, J, wu0, wu1, wu2)
        gD_p1 = _load_grad(gdp, i + 1, J, B, mask) + BASE_U * gs_p1 + _gather(au_0, au_p1, au_p2, i + 1, J, wu0, wu1, wu2)
        # P's gradient at i-1, i, i+1 (d = x_o - base * x_e - r_P)
        ap_m1, _, _ = _a_u(
            _even(xp, i - 2, J, B, mask), _even(xp, i - 1, J, B, mask), _even(xp, i, J, B, mask), -gD_m1, wp0, wp1, wp2, bp, pwp, pbp
        )
        ap_p1, _, _ = _a_u(
            _even(xp, i, J, B, mask), _even(xp, i + 1, J, B, mask), _even(xp, i + 2, J, B, mask), -gD_p1, wp0, wp1, wp2, bp, pwp, pbp
        )
        e_m1, e_0, e_p1 = _even(xp, i - 1, J, B, mask), _even(xp, i, J, B, mask), _even(xp, i + 1, J, B, mask)
        ap_0, gp_0, hp_0 = _a_u(e_m1, e_0, e_p1, -gD_0, wp0, wp1, wp2, bp, pwp, pbp)
        ok = mask & (i < J)
        ap_m1 = tl.where(i - 1 >= 0, ap_m1, 0.0)
        ap_p1 = tl.where(i + 1 < J, ap_p1, 0.0)
        gE = gs_0 - BASE_P * gD_0 + _gather(ap_m1, ap_0, ap_p1, i, J, wp0, wp1, wp2)
        gO = gD_0
        last_odd = (2 * i + 1 >= L) & ok  # odd length: x_e and x_o of the last position are one sample
        gxp = gx_ptr + x_off
        tl.store(gxp + (2 * i).to(tl.int64) * B, (gE + tl.where(last_odd, gO, 0.0)).to(gx_ptr.dtype.element_ty), mask=ok)
        tl.store(gxp + (2 * i + 1).to(tl.int64) * B, gO.to(gx_ptr.dtype.element_ty), mask=ok & (2 * i + 1 < L))
        # weight gradients of this program's positions, summed (P: taps, dw bias, pw, pw bias; then U)
        zero = tl.zeros(i.shape, gE.dtype)
        out = gw_ptr + tl.program_id(0).to(tl.int64) * 12
        tl.store(out + 0, tl.sum(tl.where(ok, ap_0 * e_m1, zero), axis=0))
        tl.store(out + 1, tl.sum(tl.where(ok, ap_0 * e_0, zero), axis=0))
        tl.store(out + 2, tl.sum(tl.where(ok, ap_0 * e_p1, zero), axis=0))
        tl.store(out + 3, tl.sum(tl.where(ok, ap_0, zero), axis=0))
        tl.store(out + 4, tl.sum(tl.where(ok, gp_0 * tl.maximum(hp_0, 0.0), zero), axis=0))
        tl.store(out + 5, tl.sum(tl.where(ok, gp_0, zero), axis=0))
        tl.store(out + 6, tl.sum(tl.where(ok, au_0 * d_m1, zero), axis=0))
        tl.store(out + 7, tl.sum(tl.where(ok, au_0 * d_0, zero), axis=0))
        tl.store(out + 8, tl.sum(tl.where(ok, au_0 * d_p1, zero), axis=0))
        tl.store(out + 9, tl.sum(tl.where(ok, au_0, zero), axis=0))
        tl.store(out + 10, tl.sum(tl.where(ok, gu_0 * tl.maximum(hu_0, 0.0), zero), axis=0))
        tl.store(out + 11, tl.sum(tl.where(ok, gu_0, zero), axis=0))


def _geometry(x: Tensor, dim: int) -> tuple[int, int, int, int, int]:
    """(planes, R, L, J, B): x as planes (N, C) of (R, L, B) with the lifted axis L, J = ceil(L / 2)."""
    dim = dim % x.dim()
    length = x.shape[dim]
    rows = 1
    for n in x.shape[2:dim]:
        rows *= n
    inner = 1
    for n in x.shape[dim + 1 :]:
        inner *= n
    return x.shape[0] * x.shape[1], rows, length, (length + 1) // 2, inner


def _flat(params: tuple[Tensor | None, ...], like: Tensor) -> list[Tensor]:
    """P's and U's weights as the kernels read them: contiguous per-channel values (a missing bias as zeros).

    The layers' weights already are (no copies: each would be one more launch per lift).
    """
    out = []
    for p in params:
        if p is None:
            p = torch.zeros(like.shape[1], dtype=torch.float32, device=like.device)
        elif not p.is_contiguous():
            p = p.contiguous()
        out.append(p)
    return out


class _Lift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int, base_p: float, base_u: float, *params: Tensor | None) -> Tensor:
        x = x.contiguous()
        planes, rows, length, half, inner = _geometry(x, dim)
        shape = list(x.shape)
        shape[dim % x.dim()] = half
        out = torch.empty([2] + shape, dtype=x.dtype, device=x.device)
        grid = (planes * triton.cdiv(rows * half * inner, _BLOCK),)
        _lift_forward_kernel[grid](
            x, out[0], out[1], *_flat(params, x), x.shape[1], rows, length, half, inner,
            BASE_P=base_p, BASE_U=base_u, BLOCK=_BLOCK,
        )  # fmt: skip
        ctx.save_for_backward(x, *[p for p in params if p is not None])
        ctx.present = [p is not None for p in params]
        ctx.meta = (dim, base_p, base_u)
        return out.flatten(0, 1)  # (2N, C, ...): s then d, stacked along the batch

    @staticmethod
    def backward(ctx, g_out: Tensor):
        x, *given = ctx.saved_tensors
        given = iter(given)
        params = [next(given) if present else None for present in ctx.present]
        dim, base_p, base_u = ctx.meta
        planes, rows, length, half, inner = _geometry(x, dim)
        g_out = g_out.contiguous().view((2, -1) + tuple(g_out.shape[1:]))
        gx = torch.empty_like(x)
        tiles = triton.cdiv(rows * half * inner, _BLOCK)
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        gw = torch.empty((planes, tiles, _N_GRADS), dtype=acc, device=x.device)
        _lift_backward_kernel[(planes * tiles,)](
            x, g_out[0], g_out[1], gx, gw, *_flat(params, x), x.shape[1], rows, length, half, inner,
            BASE_P=base_p, BASE_U=base_u, BLOCK=_BLOCK,
        )  # fmt: skip
        sums = gw.view(x.shape[0], x.shape[1], tiles, _N_GRADS).sum(dim=(0, 2))  # (C, 12)
        grads = []
        for p, cols in zip(params, ((0, 3), (3, 4), (4, 5), (5, 6), (6, 9), (9, 10), (10, 11), (11, 12))):
            grads.append(None if p is None or not ctx.needs_input_grad[4 + len(grads)] else sums[:, cols[0] : cols[1]].reshape(p.shape).to(p.dtype))
        return (gx, None, None, None, *grads)


def lift(x: Tensor, dim: int, predict, update) -> Tensor:
    """One lifting step of ``x`` along ``dim``: ``s`` and ``d`` stacked along the batch, (2N, C, ...).

    ``predict`` and ``update`` are :class:`~liftswap.layers.lift_pool.OperatorWeights` with 3 taps.
    """
    params = (predict.dw_weight, predict.dw_bias, predict.pw_weight, predict.pw_bias)
    params += (update.dw_weight, update.dw_bias, update.pw_weight, update.pw_bias)
    return _Lift.apply(x, dim, float(predict.base), float(update.base), *params)
