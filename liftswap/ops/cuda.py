"""The CUDA backend of the operators: the lifting step as Triton kernels, forward and backward.

On a GPU the op-by-op lifting step (a dozen element-wise passes around two depthwise
convolutions, each a kernel launch) costs its launches, not its arithmetic. Here one launch
lifts a whole tensor along one axis, and one launch computes its backward: each output
position recomputes the few neighbours it needs (P and U are 3-tap operators) from ``x`` in
registers and L1, so nothing but ``x`` and the weights is kept for backward. A 2-D down pool's
forward is one launch for both lifts (``_down2_forward_kernel``; it can also compute the
``preserve`` mode's stride-1 max pool of ``x`` as it reads: :func:`max_down_usable`);
elsewhere the down pool's last lift combines the bands into ``y`` and sums the regulariser's costs. The last lift's backward
takes ``y``'s and the costs' gradients itself. Weight and gamma gradients are summed per
program into buffers that one more launch adds up into the gradients (``_grad_sums_kernel``; no
atomics: the results do not depend on scheduling).
:func:`down_forward` / :func:`down_backward` and :func:`up_forward` / :func:`up_backward` are the
CUDA kernels of the operators in :mod:`.operators`, which own autograd.

Serves CUDA float32/float16/bfloat16 tensors (arithmetic in float32) with ``kernel_size=3``;
for other kernel sizes the operators run the reference's composition with its residual as a
Triton kernel (:mod:`.cuda_residual`). ``LIFTSWAP_TRITON=0`` turns both off. Under
``TRITON_INTERPRET=1`` the kernels also run on CPU tensors (float64 too, see :func:`on_cpu`),
which is how CI tests them without a GPU."""

from __future__ import annotations

import functools
import math
import os
from typing import NamedTuple
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor

from . import reference
from .output_modes import coefficients, up_bands, up_bands_backward
from .triton_launch import launch

try:  # Triton ships with PyTorch's CUDA wheels on Linux; elsewhere this module stays unused.
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - no Triton, or a broken install: the PyTorch path serves
    triton = None

__all__ = ["available", "enabled", "on_cpu", "usable", "down_forward", "down_backward", "up_forward", "up_backward",
           "max_down_usable", "max_pool_usable", "max_pool_forward", "max_pool_backward"]  # fmt: skip

_enabled = os.environ.get("LIFTSWAP_TRITON", "1").strip().lower() not in ("0", "false", "no", "off")
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_on_cpu = False  # serve CPU tensors through the interpreter: tests only (see on_cpu)
# Threads per program: sm_90 builds of the one-axis kernels use 56-96 registers forward and
# 96-146 backward at these sizes, without spilling.
_BLOCK = 256
_BLOCK_BACKWARD = 128
# The one-launch 2-D kernels: sm_90 builds use 72-115 (down, two columns of up to _ROWS rows per
# thread) and 56-72 (up, up to _LOOP_STEPS positions per thread) registers.
_BLOCK_FUSED = 128
# 2-D down and up pools' forwards in one launch each (_down2_forward_kernel, _up2_forward_kernel)
# instead of one per axis (and, for the up pool, the PyTorch ops recovering the approximation band).
_FUSED_2D = os.environ.get("LIFTSWAP_TRITON_FUSED_2D", "1") != "0"
# The preserve mode's stride-1 max pool inside the 2-D down pool's forward (max_down_usable),
# instead of a launch of its own that writes the pooled tensor (in training, kept for backward).
_MAX_INSIDE = os.environ.get("LIFTSWAP_TRITON_MAX_INSIDE", "1") != "0"
# Output rows per thread of the 2-D down pool's forward: its windows slide down (2 rows of x lifted
# along W and one second-lift d per band per further output row, instead of 8 and 3), so the first
# rows' full windows, once per thread, weigh less the more rows follow. The kernel loops over its
# rows (_UNROLL_ROWS per trip): registers and build time do not grow with them. At most _ROWS, fewer
# where the grid would leave the GPU idle (_per_thread_filling). sm_90 model: 6.3 warp-instructions
# per output at 28 rows (a 56-row output in two chunks), 7.9 at 8.
_ROWS = int(os.environ.get("LIFTSWAP_TRITON_ROWS", "32"))
# Rows per thread of the stride-1 max pool (3-row windows of dilation 1), whose kernels unroll them.
_POOL_ROWS = 8
# Positions per thread of the one-axis forward kernels (the lift's and the inverse lift's), which
# unroll them: their windows slide along the axis (one P and one U residual per further position,
# instead of three and one).
_STEPS = int(os.environ.get("LIFTSWAP_TRITON_STEPS", "8"))
# Positions per thread of the kernels that loop over them (their build's time and registers do
# not grow with it): the one-axis backward kernels (the lift's and the inverse lift's), whose
# first window and 12 weight-gradient reductions cost about seven positions' work (sm_90: 29.3
# warp-instructions per 2-D output for the down pool's two backward lifts at 32 positions, against
# 37.1 for 8 unrolled), and the 2-D up pool's forward. At most _LOOP_STEPS, fewer where the grid
# would leave the GPU idle.
_LOOP_STEPS = int(os.environ.get("LIFTSWAP_TRITON_LOOP_STEPS", "32"))
# Positions the one-axis backward loops unroll per trip (_UNROLL_STEPS), and rows or positions the
# 2-D forwards' loops do (_UNROLL_ROWS): inside a trip the windows slide by renaming registers, at
# its end each window value moves once (sm_90 model, down fwd+bwd: 36.4 warp-instructions per
# output at 2, 34.1 at 4, 33.2 at 7). At 4 the backward kernels take 96 to 139 registers (12 or
# 16 warps per SM) and 4-5 s to build; the 2-D forwards gain little at 4 (6.3 -> 6.2) and the down
# forward then builds in 60 s, not 22; at 7 it spills.
_UNROLL_STEPS = int(os.environ.get("LIFTSWAP_TRITON_UNROLL_STEPS", "4"))
_UNROLL_ROWS = int(os.environ.get("LIFTSWAP_TRITON_UNROLL_ROWS", "2"))
# A loop kernel's rows or positions per thread halve (down to 4) while its grid has fewer programs
# than this per SM: a small batch would otherwise leave SMs idle (an SM holds 3 to 8 such programs).
_PROGRAMS_PER_SM = 8
# Offsets inside one channel's plane are int32 (a 64-bit offset costs each load and store about
# four more instructions): usable() bounds the plane, doubled along each axis (an up pool's
# output), by 2^30 elements (2^31 less a margin for a thread's masked positions past the end);
# larger planes (a 2-D down pool's input over 16384 x 16384) take the PyTorch path.
_PLANE_LIMIT = 2**30
_N_GRADS = 12  # per program: dw (3) + dw bias + pw + pw bias, for P then U
# _grad_sums_kernel's tile: a program per 32 columns of the per-program sums, 64 rows a trip (a
# 2-D layer's backward at batch 64 writes a few hundred rows of sums).
_SUMS_ROWS, _SUMS_COLUMNS = 64, 32


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
        raise RuntimeError("liftswap.ops.cuda.on_cpu() needs TRITON_INTERPRET=1 set before liftswap is imported")
    before, _on_cpu = _on_cpu, True
    try:
        yield
    finally:
        _on_cpu = before


_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DTYPES_CPU = _DTYPES + (torch.float64,)  # (the interpreter's, under on_cpu)


def usable(x: Tensor, *weights: Tensor | None) -> bool:
    """Whether the kernels serve these tensors: CUDA (or, under :func:`on_cpu`, CPU) float32,
    float16 or bfloat16, non-empty, P and U with 3 taps on the same device, and x (N, C, ...)
    with a channel's plane of at most _PLANE_LIMIT elements once upsampled along every axis."""
    if not available():
        return False
    if not (x.is_cuda or _on_cpu) or x.dtype not in (_DTYPES_CPU if _on_cpu else _DTYPES):
        return False
    if x.numel() == 0:  # no grid to launch: empty inputs take the reference
        return False
    if math.prod(x.shape[2:]) << max(x.dim() - 2, 0) > _PLANE_LIMIT:
        return False
    if weights and (weights[0] is None or weights[0].shape[-1] != 3):
        return False
    device = x.device  # (once: each .device makes an object)
    for w in weights:  # (a loop: a generator costs a microsecond more)
        if w is not None and w.device != device:
            return False
    return True


if triton is not None:

    @triton.jit
    def _clamp(p, n):
        return tl.minimum(tl.maximum(p, 0), n - 1)

    # Compiled kernels take 2^x and 1/x as one PTX instruction each (ex2.approx.ftz, 1 ulp
    # rcp.approx.ftz); Triton's exp and division wrap the same MUFU instructions in subnormal and
    # range fix-ups, 7 more instructions per tanh, which the tanh's limits below never need. The
    # interpreter (no PTX) computes the same formula in float arithmetic. Chosen here, not by a
    # global constexpr inside the kernels: Triton's launcher compares each global a kernel reads
    # with its value at build time on every launch (~2 us each); the unroll factors are kernel
    # arguments (UNROLL) for the same reason.
    if _INTERPRET:

        @triton.jit
        def _exp2(v):
            return tl.exp2(v)

        @triton.jit
        def _rcp(v):
            return 1.0 / v

    else:

        @triton.jit
        def _exp2(v):
            return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [v], dtype=tl.float32, is_pure=True, pack=1)

        @triton.jit
        def _rcp(v):
            return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [v], dtype=tl.float32, is_pure=True, pack=1)

    # tanh(z) = 1 - 2 / (2^(z K) + 1) with K = 2 log2(e): the residuals' pointwise weight and bias
    # are loaded times K (_load_weights), so z K costs no multiply of its own.
    @triton.jit
    def _times_k(v):
        return v * 2.8853900817779268

    @triton.jit
    def _tanh_k(zk):
        """tanh(z) from zk = z K: 1 - 2 / (2^zk + 1), exact limits at +-inf (2^zk overflows to inf,
        1/inf is 0), NaN stays NaN; no libdevice (the interpreter lacks it)."""
        return 1.0 - 2.0 * _rcp(_exp2(zk) + 1.0)

    @triton.jit
    def _wide(v):
        """Half-precision values to float32 for the arithmetic (float32 and float64 stay)."""
        # Two tests, not one with `or`: Triton <= 3.2 cannot compile `or` between them.
        if v.dtype.is_fp16():
            v = v.to(tl.float32)
        if v.dtype.is_bf16():
            v = v.to(tl.float32)
        return v

    @triton.jit
    def _lin(BASE: tl.constexpr, t):
        """BASE * t, and no term at all for BASE 0 (lazy, paper): 0 * inf would be NaN where the
        operator has no linear part, as the PyTorch path (which skips the op) has it."""
        if BASE == 0.0:
            out = tl.zeros_like(t)
        else:
            out = BASE * t
        return out

    @triton.jit
    def _coef(gamma_ptr, b, c, C, OUT: tl.constexpr):
        """Band b's coefficient in y for channel c, SPEC 2's output modes (OUT 0 "LL", 1 "sum",
        2 "gated"): 1 for the approximation band (b == 0); for the others 0, 1 or gamma[b - 1, c]
        (gamma_ptr: (nb - 1, C), read for "gated" only). b is a constexpr or a tensor. The layers'
        gamma is read in place: no (nb, C) coefficient tensor made per call (two ops, each a
        launch on CUDA, forward and backward)."""
        if OUT == 2:
            k = tl.where(b == 0, 1.0, _wide(tl.load(gamma_ptr + (b - 1) * C + c, mask=b > 0, other=0.0)))
        elif OUT == 1:
            k = tl.where(b == 0, 1.0, 1.0)  # (a tensor, as the other modes return, whatever b is)
        else:
            k = tl.where(b == 0, 1.0, 0.0)
        return k

    @triton.jit
    def _band(ptr, p, J, B, mask):
        """A band's value at position p (clamped: replicate padding)."""
        return _wide(tl.load(ptr + _clamp(p, J) * B, mask=mask, other=0.0))

    @triton.jit
    def _even(xp, p, J, B, mask):
        """x_e at position p (clamped: replicate padding)."""
        return _wide(tl.load(xp + 2 * _clamp(p, J) * B, mask=mask, other=0.0))

    @triton.jit
    def _odd(xp, p, J, L, B, mask):
        """x_o at position p (clamped); an odd axis repeats its last sample."""
        q = tl.minimum(2 * _clamp(p, J) + 1, L - 1)
        return _wide(tl.load(xp + q * B, mask=mask, other=0.0))

    @triton.jit
    def _even_w(rowp, p, J, mask):
        """:func:`_even` along a row (B = 1) with 64-bit offsets: the 2-D down forward, with
        32-bit ones, takes 137 registers for 109 (sm_90; 12 warps per SM, not 16)."""
        return _wide(tl.load(rowp + 2 * _clamp(p, J).to(tl.int64), mask=mask, other=0.0))

    @triton.jit
    def _odd_w(rowp, p, J, L, mask):
        """:func:`_odd` along a row, as :func:`_even_w`."""
        q = tl.minimum(2 * _clamp(p, J) + 1, L - 1)
        return _wide(tl.load(rowp + q.to(tl.int64), mask=mask, other=0.0))

    @triton.jit
    def _detail_hr(xp, p, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P: tl.constexpr):
        """d at position p (clamped), with relu of P's pre-activation and residual r there (for p
        in [0, J) those of the P residual at p; off it the clamped position's, whose gradient is 0)."""
        pc = _clamp(p, J)
        e_0 = _even(xp, pc, J, B, mask)
        h, r = _residual(_even(xp, pc - 1, J, B, mask), e_0, _even(xp, pc + 1, J, B, mask), wp0, wp1, wp2, bp, pwp, pbp)
        return _odd(xp, pc, J, L, B, mask) - _lin(BASE_P, e_0) - r, h, r

    @triton.jit
    def _sub_op(a, t_m, t_0, t_p, w0, w1, w2, b, pw, pb, BASE: tl.constexpr):
        """a - O(t) at a position, O the lift operator (BASE t_0 + r(t)) and t its taps around it
        (replicate-padded): the forward's d = x_o - P(x_e), the inverse's x_e = s - U(d)."""
        _, r = _residual(t_m, t_0, t_p, w0, w1, w2, b, pw, pb)
        return a - _lin(BASE, t_0) - r

    @triton.jit
    def _add_op(a, t_m, t_0, t_p, i, J, w0, w1, w2, b, pw, pb, BASE: tl.constexpr):
        """a + O(t) at position i of J, from t at i - 1, i, i + 1 (t_m and t_p need not exist:
        replicate padding takes t_0 past the ends, so sliding windows may carry the raw values):
        the forward's s = x_e + U(d), the inverse's x_o = d + P(x_e)."""
        t_m = tl.where(i > 0, t_m, t_0)
        t_p = tl.where(i + 1 < J, t_p, t_0)
        _, r = _residual(t_m, t_0, t_p, w0, w1, w2, b, pw, pb)
        return a + _lin(BASE, t_0) + r

    @triton.jit
    def _load_grad(gp, j, J, B, mask):
        """An output gradient at position j; zero outside [0, J) (no clamping: each j counts once)."""
        ok = mask & (j >= 0) & (j < J)
        return _wide(tl.load(gp + tl.where(ok, j, 0) * B, mask=ok, other=0.0))

    @triton.jit
    def _residual(t_m, t_0, t_p, w0, w1, w2, b, pwk, pbk):
        """P's or U's relu(h), h its pre-activation, and residual r = tanh(pw relu(h) + pb) at one
        position from its three taps (pwk, pbk: pw and pb times K, as _load_weights gives them).
        The backward keeps relu(h): pw's gradient term and relu's derivative (relu(h) > 0) read it."""
        hr = tl.maximum(b + w0 * t_m + w1 * t_0 + w2 * t_p, 0.0)
        return hr, _tanh_k(pwk * hr + pbk)

    @triton.jit
    def _input_grad(g, r, h, slope, q, J):
        """An operator's input gradient at position q of J from its residual's gradient g:
        g (1 - r^2) pw where h (relu of the pre-activation) > 0, a select like PyTorch's relu
        backward; zero off [0, J). Zeroed once here, the window values past the ends (copies of the
        edge's) need no tests where :func:`_gather` reads them."""
        return tl.where((q >= 0) & (q < J) & (h > 0.0), g * (1.0 - r * r) * slope, 0.0)

    @triton.jit
    def _gather(a_m, a_0, a_p, q, J, w0, w1, w2):
        """What the taps of positions q-1, q, q+1 (input gradients a_m, a_0, a_p from
        :func:`_input_grad`: zero off [0, J)) pass back to position q in [0, J) (off it, no value
        that matters): tap k of position p reads clamp(p + k - 1), so at the ends replicate padding
        folds the outer tap onto the end."""
        return a_m * w2 + a_p * w0 + a_0 * (w1 + tl.where(q == 0, w0, 0.0) + tl.where(q == J - 1, w2, 0.0))

    @triton.jit
    def _chunk_positions(R, L, J, B, STEPS, BLOCK: tl.constexpr):
        """This program's plane (of one group) and its BLOCK threads, each owning STEPS consecutive
        positions along the axis (a 1D grid has no 65535 limit): (plane, first position, mask,
        x_in, y_in, programs per plane)."""
        chunks = tl.cdiv(J, STEPS)
        tiles = tl.cdiv(R * chunks * B, BLOCK)
        idx = (tl.program_id(0) % tiles) * BLOCK + tl.arange(0, BLOCK)
        b = idx % B
        r = idx // (B * chunks)
        x_in = r.to(tl.int64) * L * B + b  # offset inside an input plane, and inside an output plane
        y_in = r.to(tl.int64) * J * B + b
        return tl.program_id(0) // tiles, ((idx // B) % chunks) * STEPS, idx < R * chunks * B, x_in, y_in, tiles

    @triton.jit
    def _load_weights(wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr, c):
        """Channel c's weights of P, then of U: three taps, dw bias, and pw and pw bias times K
        (what :func:`_residual` takes; a derivative takes pw itself)."""
        return (
            tl.load(wp_ptr + 3 * c), tl.load(wp_ptr + 3 * c + 1), tl.load(wp_ptr + 3 * c + 2),
            tl.load(bp_ptr + c), _times_k(tl.load(pwp_ptr + c)), _times_k(tl.load(pbp_ptr + c)),
            tl.load(wu_ptr + 3 * c), tl.load(wu_ptr + 3 * c + 1), tl.load(wu_ptr + 3 * c + 2),
            tl.load(bu_ptr + c), _times_k(tl.load(pwu_ptr + c)), _times_k(tl.load(pbu_ptr + c)),
        )  # fmt: skip

    @triton.jit
    def _add_sums(g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp, g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu, on,
                  ap, e_m1, e_0, e_p1, gp, hp, au, d_m1, d_0, d_p1, gu, hu, FOUR: tl.constexpr):  # fmt: skip
        """The 12 weight-gradient sums plus one position's terms where ``on``: P's taps (its input
        gradient ap times x_e at the taps), dw bias, pw (gp times hp, relu(h)), pw bias; then U's.
        FOUR: off ``on`` the four gradients are zeroed (4 selects, not one per term, 12): the window
        values there are those of positions inside (clamped), so an Inf or NaN among them is in the
        sums already. (The inverse lift's backward in bfloat16 then keeps predicates on the stack.)"""
        if FOUR:
            ap, gp, au, gu = tl.where(on, ap, 0.0), tl.where(on, gp, 0.0), tl.where(on, au, 0.0), tl.where(on, gu, 0.0)
            on = True
        return (
            g_wp0 + tl.where(on, ap * e_m1, 0.0), g_wp1 + tl.where(on, ap * e_0, 0.0), g_wp2 + tl.where(on, ap * e_p1, 0.0),
            g_bp + tl.where(on, ap, 0.0), g_pwp + tl.where(on, gp * hp, 0.0), g_pbp + tl.where(on, gp, 0.0),
            g_wu0 + tl.where(on, au * d_m1, 0.0), g_wu1 + tl.where(on, au * d_0, 0.0), g_wu2 + tl.where(on, au * d_p1, 0.0),
            g_bu + tl.where(on, au, 0.0), g_pwu + tl.where(on, gu * hu, 0.0), g_pbu + tl.where(on, gu, 0.0),
        )  # fmt: skip

    @triton.jit
    def _store_sums(out, c, C, ok, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11):
        """This program's 12 weight-gradient sums (P: taps, dw bias, pw, pw bias; then U) for
        channel c, each at its place in the row ``out`` of the gradients laid end to end (P's dw
        (C, 3), dw bias, pw, pw bias, then U's: 12 C values): a column sum of the rows is every
        gradient (:func:`_grad_sums_kernel`)."""
        tl.store(out + 3 * c, tl.sum(tl.where(ok, a0, 0.0), axis=0))
        tl.store(out + 3 * c + 1, tl.sum(tl.where(ok, a1, 0.0), axis=0))
        tl.store(out + 3 * c + 2, tl.sum(tl.where(ok, a2, 0.0), axis=0))
        tl.store(out + 3 * C + c, tl.sum(tl.where(ok, a3, 0.0), axis=0))
        tl.store(out + 4 * C + c, tl.sum(tl.where(ok, a4, 0.0), axis=0))
        tl.store(out + 5 * C + c, tl.sum(tl.where(ok, a5, 0.0), axis=0))
        tl.store(out + 6 * C + 3 * c, tl.sum(tl.where(ok, a6, 0.0), axis=0))
        tl.store(out + 6 * C + 3 * c + 1, tl.sum(tl.where(ok, a7, 0.0), axis=0))
        tl.store(out + 6 * C + 3 * c + 2, tl.sum(tl.where(ok, a8, 0.0), axis=0))
        tl.store(out + 9 * C + c, tl.sum(tl.where(ok, a9, 0.0), axis=0))
        tl.store(out + 10 * C + c, tl.sum(tl.where(ok, a10, 0.0), axis=0))
        tl.store(out + 11 * C + c, tl.sum(tl.where(ok, a11, 0.0), axis=0))

    @triton.jit
    def _lift_forward_kernel(
        x_ptr, out_ptr, y_ptr, gamma_ptr, cost_ptr, wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        C, NC, R, L, J, B,
        G: tl.constexpr, BASE_P: tl.constexpr, BASE_U: tl.constexpr, COMBINE: tl.constexpr, COSTS: tl.constexpr,
        ACC: tl.constexpr, BLOCK: tl.constexpr, STEPS: tl.constexpr, OUT: tl.constexpr,
    ):  # fmt: skip
        """Lift G groups of NC planes; out is [s of each group, d of each group]. Each thread owns
        STEPS consecutive positions and slides its window along the axis: two loads and one P and
        one U residual per further position (not fourteen, three and one). COMBINE: also y = sum
        over bands of coef[band, c] * band (:func:`_coef`; several groups: STEPS 1). COSTS: this program's sums
        of (s - x_o)^2 and d^2."""
        tl.static_assert((G == 1 or STEPS == 1) or not COMBINE)  # (Triton 3.2 rejects a chain of three)
        plane, i0, mask, x_in, y_in, _ = _chunk_positions(R, L, J, B, STEPS, BLOCK)
        c = plane % C
        wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu = _load_weights(
            wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr, c
        )
        kind = out_ptr.dtype.element_ty
        y = tl.zeros((BLOCK,), ACC)
        cu = tl.zeros((BLOCK,), ACC)
        cp = tl.zeros((BLOCK,), ACC)
        for g in tl.static_range(G):
            xp = x_ptr + ((g * NC + plane).to(tl.int64) * R * L * B + x_in)
            e_m = _even(xp, i0 - 1, J, B, mask)
            e_0 = _even(xp, i0, J, B, mask)
            e_p = _even(xp, i0 + 1, J, B, mask)
            o_0 = _odd(xp, i0, J, L, B, mask)
            d_m = _sub_op(_odd(xp, i0 - 1, J, L, B, mask), _even(xp, i0 - 2, J, B, mask), e_m, e_0, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
            d_0 = _sub_op(o_0, e_m, e_0, e_p, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
            for step in tl.static_range(STEPS):
                i = i0 + step
                if step > 0:  # slide one position: x_e at i + 2 and x_o at i + 1 are new
                    e_0, e_p, o_0, d_m, d_0 = e_p, e_p2, o_p, d_0, d_p
                e_p2 = _even(xp, i + 2, J, B, mask)
                o_p = _odd(xp, i + 1, J, L, B, mask)
                d_p = _sub_op(o_p, e_0, e_p, e_p2, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
                s, d = _add_op(e_0, d_m, d_0, d_p, i, J, wu0, wu1, wu2, bu, pwu, pbu, BASE_U), d_0
                on = mask & (i < J)
                at = i * B + y_in
                tl.store(out_ptr + (g * NC + plane).to(tl.int64) * R * J * B + at, s.to(kind), mask=on)
                tl.store(out_ptr + ((G + g) * NC + plane).to(tl.int64) * R * J * B + at, d.to(kind), mask=on)
                if COMBINE:
                    y += _coef(gamma_ptr, g, c, C, OUT) * s + _coef(gamma_ptr, G + g, c, C, OUT) * d
                    if G == 1:
                        tl.store(y_ptr + plane.to(tl.int64) * R * J * B + at, y.to(y_ptr.dtype.element_ty), mask=on)
                        y = tl.zeros((BLOCK,), ACC)
                if COSTS:
                    e = s - o_0
                    cu += tl.where(on, e * e, 0.0)
                    cp += tl.where(on, d * d, 0.0)
        if COMBINE and G > 1:
            tl.store(y_ptr + plane.to(tl.int64) * R * J * B + i0.to(tl.int64) * B + y_in, y.to(y_ptr.dtype.element_ty), mask=mask & (i0 < J))
        if COSTS:
            tl.store(cost_ptr + tl.program_id(0) * 2, tl.sum(cu, axis=0))
            tl.store(cost_ptr + tl.program_id(0) * 2 + 1, tl.sum(cp, axis=0))

    @triton.jit
    def _grid_positions(rows, cols, BLOCK: tl.constexpr):
        """This program's plane and its BLOCK positions of a (rows, cols) grid: (plane, index, mask, row, col)."""
        tiles = tl.cdiv(rows * cols, BLOCK)
        plane = tl.program_id(0) // tiles
        idx = (tl.program_id(0) % tiles) * BLOCK + tl.arange(0, BLOCK)
        return plane, idx, idx < rows * cols, idx // cols, idx % cols

    @triton.jit
    def _row_lift(rowp, j, Jw, W, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu,
                  BASE_P: tl.constexpr, BASE_U: tl.constexpr):  # fmt: skip
        """The first (W) lift of one row of x at columns j and j + 1: (s, d, x_o) at j, then at j + 1.
        Loads each of the ten samples it reads once (x_e at j-2 .. j+3, x_o at j-1 .. j+2). Past the
        row's end the values are the edge's (replicate padding; column j + 1 may not exist: its
        stores are masked)."""
        return _lift_w(
            _even_w(rowp, j - 2, Jw, mask), _even_w(rowp, j - 1, Jw, mask), _even_w(rowp, j, Jw, mask),
            _even_w(rowp, j + 1, Jw, mask), _even_w(rowp, j + 2, Jw, mask), _even_w(rowp, j + 3, Jw, mask),
            _odd_w(rowp, j - 1, Jw, W, mask), _odd_w(rowp, j, Jw, W, mask), _odd_w(rowp, j + 1, Jw, W, mask),
            _odd_w(rowp, j + 2, Jw, W, mask), j, Jw, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U,
        )  # fmt: skip

    @triton.jit
    def _lift_w(e_m2, e_m1, e_0, e_p1, e_p2, e_p3, o_m1, o_0, o_p1, o_p2, j, Jw, wp0, wp1, wp2, bp, pwp, pbp,
                wu0, wu1, wu2, bu, pwu, pbu, BASE_P: tl.constexpr, BASE_U: tl.constexpr):  # fmt: skip
        """:func:`_row_lift` from its ten samples: d at j-1 .. j+2, four P residuals for two columns, not six."""
        d_m1 = _sub_op(o_m1, e_m2, e_m1, e_0, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_0 = _sub_op(o_0, e_m1, e_0, e_p1, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p1 = _sub_op(o_p1, e_0, e_p1, e_p2, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p2 = _sub_op(o_p2, e_p1, e_p2, e_p3, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        s_0 = _add_op(e_0, d_m1, d_0, d_p1, j, Jw, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        s_p1 = _add_op(e_p1, d_0, d_p1, d_p2, j + 1, Jw, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        return s_0, d_0, o_0, s_p1, d_p1, o_p1

    # --- the preserve mode's stride-1 max pool inside the 2-D down pool's forward ---
    # h = max_pool2d(x, (KH, KW), 1, (PH, PW)) is never written: each sample of h a row lift reads
    # is the maximum of its window of x. With dilation 1 a window reaching past x's edge holds the
    # edge element, so clamped taps give -inf padding's maximum with no mask. A thread's row lifts
    # read ten columns of h (2j-4 .. 2j+6), whose windows share columns of x: a row of x is loaded
    # once at the 12 or 13 columns they span and reduced along W at all ten (_pool_xrow), then KH
    # such rows along H. The windows slide down two rows of h per output row (the first window of
    # the thread too: _pool_pair): two new rows of x, the others carried (11 rows of x for the
    # first window's 8 rows of h with 3-row windows, not 24). Samples are taken at nominal columns and rows; past h's
    # edges they are replaced by the edge's (replicate padding, as _even_w, _odd_w and _row_lifts
    # clamp) in value space (_pool_row_lift, _pick6).

    @triton.jit
    def _max_nan(a, b):
        """max(a, b), NaN if either is (max pooling's NaN)."""
        return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)

    @triton.jit
    def _col(rowp, c, XW, mask):
        """x at column c of a row, clamped."""
        return _wide(tl.load(rowp + _clamp(c, XW).to(tl.int64), mask=mask, other=0.0))

    @triton.jit
    def _win(a, b, c, KW: tl.constexpr):
        """The maximum of a window of KW (2 or 3) taps a, b (, c)."""
        m = _max_nan(a, b)
        if KW == 3:
            m = _max_nan(m, c)
        return m

    @triton.jit
    def _pool_xrow(xp, r, XH, XW, j, mask, KW: tl.constexpr, PW: tl.constexpr):
        """Row r of x (clamped) reduced along W by the windows of the ten columns of h a row lift at
        j reads, at their nominal (unclamped) columns: evens 2j-4 .. 2j+6, then odds 2j-1 .. 2j+5.
        Their windows span columns 2j-4-PW .. 2j+5-PW+KW of x: each is loaded once."""
        rowp = xp + _clamp(r, XH).to(tl.int64) * XW
        c = 2 * j - 4 - PW  # column v0
        v0, v1, v2, v3 = _col(rowp, c, XW, mask), _col(rowp, c + 1, XW, mask), _col(rowp, c + 2, XW, mask), _col(rowp, c + 3, XW, mask)
        v4, v5, v6, v7 = _col(rowp, c + 4, XW, mask), _col(rowp, c + 5, XW, mask), _col(rowp, c + 6, XW, mask), _col(rowp, c + 7, XW, mask)
        v8, v9, v10, v11 = _col(rowp, c + 8, XW, mask), _col(rowp, c + 9, XW, mask), _col(rowp, c + 10, XW, mask), _col(rowp, c + 11, XW, mask)
        v12 = v11  # (read by 3-tap windows only)
        if KW == 3:
            v12 = _col(rowp, c + 12, XW, mask)
        return (
            _win(v0, v1, v2, KW), _win(v2, v3, v4, KW), _win(v4, v5, v6, KW), _win(v6, v7, v8, KW), _win(v8, v9, v10, KW),
            _win(v10, v11, v12, KW), _win(v3, v4, v5, KW), _win(v5, v6, v7, KW), _win(v7, v8, v9, KW), _win(v9, v10, v11, KW),
        )  # fmt: skip

    @triton.jit
    def _vmax2(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9):
        """Two rows' maxima, sample by sample (a window along H)."""
        return (_max_nan(a0, b0), _max_nan(a1, b1), _max_nan(a2, b2), _max_nan(a3, b3), _max_nan(a4, b4),
                _max_nan(a5, b5), _max_nan(a6, b6), _max_nan(a7, b7), _max_nan(a8, b8), _max_nan(a9, b9))  # fmt: skip

    @triton.jit
    def _pool_row_lift(e_m2, e_m1, e_0, e_p1, e_p2, e_p3, o_m1, o_0, o_p1, o_p2, j, Jw, W, wp0, wp1, wp2, bp, pwp, pbp,
                       wu0, wu1, wu2, bu, pwu, pbu, BASE_P: tl.constexpr, BASE_U: tl.constexpr):  # fmt: skip
        """:func:`_lift_w` of a row of h from its samples at nominal columns, each past h's edges
        replaced by the one :func:`_even_w` / :func:`_odd_w` would load (for j < Jw)."""
        e_m1 = tl.where(j >= 1, e_m1, e_0)
        e_m2 = tl.where(j >= 2, e_m2, e_m1)
        e_p1 = tl.where(j + 1 < Jw, e_p1, e_0)
        e_p2 = tl.where(j + 2 < Jw, e_p2, e_p1)
        e_p3 = tl.where(j + 3 < Jw, e_p3, e_p2)
        o_0 = tl.where(2 * j + 1 < W, o_0, e_0)  # (an odd W's last odd sample is its last even one)
        o_m1 = tl.where(j >= 1, o_m1, o_0)
        o_p1 = tl.where(j + 1 < Jw, tl.where(2 * j + 3 < W, o_p1, e_p1), o_0)
        o_p2 = tl.where(j + 2 < Jw, tl.where(2 * j + 5 < W, o_p2, e_p2), o_p1)
        return _lift_w(e_m2, e_m1, e_0, e_p1, e_p2, e_p3, o_m1, o_0, o_p1, o_p2, j, Jw,
                       wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip

    @triton.jit
    def _pick6(take, a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5):
        """A row lift's six values (two columns' s, d, x_o): a where ``take``, else b."""
        return (tl.where(take, a0, b0), tl.where(take, a1, b1), tl.where(take, a2, b2),
                tl.where(take, a3, b3), tl.where(take, a4, b4), tl.where(take, a5, b5))  # fmt: skip

    @triton.jit
    def _newest_rows(i, Jh, H, e0, e1, e2, e3, e4, e5, o0, o1, o2, o3, o4, o5, p0, p1, p2, p3, p4, p5, q0, q1, q2, q3, q4, q5):
        """The row lifts (:func:`_pick6`'s six values) of h's even row 2i + 4 (e) and odd row
        2i + 3 (o) as :func:`_row_lifts` reads them at output row i: past h's last row the edge's,
        the even row 2i + 2's (p) or, for the odd row, the odd row 2i + 1's (q) or, an odd H's
        last row, the even row 2i + 2's (p)."""
        e0, e1, e2, e3, e4, e5 = _pick6(i + 2 < Jh, e0, e1, e2, e3, e4, e5, p0, p1, p2, p3, p4, p5)
        o0, o1, o2, o3, o4, o5 = _pick6(2 * i + 3 < H, o0, o1, o2, o3, o4, o5, p0, p1, p2, p3, p4, p5)
        o0, o1, o2, o3, o4, o5 = _pick6(i + 1 < Jh, o0, o1, o2, o3, o4, o5, q0, q1, q2, q3, q4, q5)
        return e0, e1, e2, e3, e4, e5, o0, o1, o2, o3, o4, o5

    @triton.jit
    def _pool_pair(xp, nr, XH, XW, j, mask, c00, c01, c02, c03, c04, c05, c06, c07, c08, c09,
                   c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, KH: tl.constexpr, KW: tl.constexpr, PW: tl.constexpr):  # fmt: skip
        """One slide of the windows: rows nr and nr + 1 of x reduced along W (:func:`_pool_xrow`)
        after the carried rows nr - 2 (c0.., KH 3) and nr - 1 (c1..), whose windows end the odd and
        the even row of h that follow: (the odd row's ten samples, the even row's, then rows nr
        and nr + 1 reduced along W, carried on)."""
        n00, n01, n02, n03, n04, n05, n06, n07, n08, n09 = _pool_xrow(xp, nr, XH, XW, j, mask, KW, PW)
        n10, n11, n12, n13, n14, n15, n16, n17, n18, n19 = _pool_xrow(xp, nr + 1, XH, XW, j, mask, KW, PW)
        e0, e1, e2, e3, e4, e5, e6, e7, e8, e9 = _vmax2(n00, n01, n02, n03, n04, n05, n06, n07, n08, n09,
                                                        n10, n11, n12, n13, n14, n15, n16, n17, n18, n19)  # fmt: skip
        o0, o1, o2, o3, o4, o5, o6, o7, o8, o9 = _vmax2(c10, c11, c12, c13, c14, c15, c16, c17, c18, c19,
                                                        n00, n01, n02, n03, n04, n05, n06, n07, n08, n09)  # fmt: skip
        if KH == 3:
            e0, e1, e2, e3, e4, e5, e6, e7, e8, e9 = _vmax2(e0, e1, e2, e3, e4, e5, e6, e7, e8, e9,
                                                            c10, c11, c12, c13, c14, c15, c16, c17, c18, c19)  # fmt: skip
            o0, o1, o2, o3, o4, o5, o6, o7, o8, o9 = _vmax2(o0, o1, o2, o3, o4, o5, o6, o7, o8, o9,
                                                            c00, c01, c02, c03, c04, c05, c06, c07, c08, c09)  # fmt: skip
        return (o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, e0, e1, e2, e3, e4, e5, e6, e7, e8, e9,
                n00, n01, n02, n03, n04, n05, n06, n07, n08, n09, n10, n11, n12, n13, n14, n15, n16, n17, n18, n19)  # fmt: skip

    @triton.jit
    def _row_lifts(xp, r, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu,
                   BASE_P: tl.constexpr, BASE_U: tl.constexpr, ODD: tl.constexpr):  # fmt: skip
        """:func:`_row_lift` of row 2 clamp(r) of x (ODD: the row after it; an odd H repeats its last row)."""
        row = 2 * _clamp(r, Jh)
        if ODD:
            row = tl.minimum(row + 1, H - 1)
        return _row_lift(xp + row.to(tl.int64) * W, j, Jw, W, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)

    @triton.jit
    def _second_lift(s_0, s_p1, s_p2, d_0, d_p1, d_p2, os_p1, od_p1, sd_m, sd_0, dd_m, dd_0, i, Jh,
                     wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P: tl.constexpr, BASE_U: tl.constexpr):  # fmt: skip
        """The second (H) lift of one column's two bands at output row i, from their windows (rows
        i .. i + 2 of the first lift's s and d, the odd rows' at i + 1, the second lift's d at i - 1
        and i): (ll, lh, hl, hh, and the second lift's d at row i + 1 for s's band and d's)."""
        sd_p = _sub_op(os_p1, s_0, s_p1, s_p2, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        dd_p = _sub_op(od_p1, d_0, d_p1, d_p2, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        ll = _add_op(s_0, sd_m, sd_0, sd_p, i, Jh, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        lh = _add_op(d_0, dd_m, dd_0, dd_p, i, Jh, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        return ll, lh, sd_0, dd_0, sd_p, dd_p

    @triton.jit
    def _put_bands(out_ptr, y_ptr, gamma_ptr, plane, c, C, NC, Jh, Jw, i, j, on, ll, lh, hl, hh,
                   COMBINE: tl.constexpr, LAYOUT: tl.constexpr, OUT: tl.constexpr):  # fmt: skip
        """Stores one output position's bands (LAYOUT 0: stacked along the batch; 1: at their
        polyphase places; 2: none) and with COMBINE y = sum over bands of coef[band, c] * band (:func:`_coef`)."""
        band = Jh * Jw
        kind = out_ptr.dtype.element_ty
        at = plane.to(tl.int64) * band + i * Jw + j
        if LAYOUT == 0:
            tl.store(out_ptr + at, ll.to(kind), mask=on)
            tl.store(out_ptr + NC.to(tl.int64) * band + at, lh.to(kind), mask=on)
            tl.store(out_ptr + 2 * NC.to(tl.int64) * band + at, hl.to(kind), mask=on)
            tl.store(out_ptr + 3 * NC.to(tl.int64) * band + at, hh.to(kind), mask=on)
        elif LAYOUT == 1:
            z = out_ptr + plane.to(tl.int64) * 4 * band + (2 * i).to(tl.int64) * (2 * Jw) + 2 * j
            tl.store(z, ll.to(kind), mask=on)
            tl.store(z + 1, lh.to(kind), mask=on)
            z += 2 * Jw
            tl.store(z, hl.to(kind), mask=on)
            tl.store(z + 1, hh.to(kind), mask=on)
        if COMBINE:
            y = _coef(gamma_ptr, 0, c, C, OUT) * ll + _coef(gamma_ptr, 1, c, C, OUT) * lh
            y += _coef(gamma_ptr, 2, c, C, OUT) * hl + _coef(gamma_ptr, 3, c, C, OUT) * hh
            tl.store(y_ptr + at, y.to(y_ptr.dtype.element_ty), mask=on)

    @triton.jit
    def _add_costs(cu1, cp1, cu2, cp2, on, own1, s_0, xo_0, os_0, xo1_0, d_0, od_0, ll, lh, hl, hh):
        """The costs' sums plus one output position's terms: first lift, the rows it owns (2i, and
        2i + 1 where own1); second lift, both bands (x_o is the odd row's band value)."""
        e0 = s_0 - xo_0
        e1 = os_0 - xo1_0
        cu1 += tl.where(on, e0 * e0, 0.0) + tl.where(own1, e1 * e1, 0.0)
        cp1 += tl.where(on, d_0 * d_0, 0.0) + tl.where(own1, od_0 * od_0, 0.0)
        f0 = ll - os_0
        f1 = lh - od_0
        cu2 += tl.where(on, f0 * f0 + f1 * f1, 0.0)
        cp2 += tl.where(on, hl * hl + hh * hh, 0.0)
        return cu1, cp1, cu2, cp2

    @triton.jit(do_not_specialize=["ROWS", "N1", "N2"])  # (one build for every size: no variant per divisibility)
    def _down2_forward_kernel(
        x_ptr, out_ptr, y_ptr, gamma_ptr, cost_ptr, wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        C, H, W, Jh, Jw, ROWS, N1, N2, XH, XW,
        BASE_P: tl.constexpr, BASE_U: tl.constexpr, COMBINE: tl.constexpr, COSTS: tl.constexpr,
        ACC: tl.constexpr, BLOCK: tl.constexpr, LAYOUT: tl.constexpr, UNROLL: tl.constexpr, OUT: tl.constexpr,
        KH: tl.constexpr, PH: tl.constexpr, KW: tl.constexpr, PW: tl.constexpr,
    ):  # fmt: skip
        """Both lifts of a 2-D down pool in one launch: each thread owns columns j and j + 1 (a)
        and (b) of ROWS output rows i0 .. i0 + ROWS - 1 of a (H, W) plane. It lifts along W the
        eight rows of x the second (H) lift at i0 reads (2 clamp(i0 + k) for k in -2..2, and
        2 clamp(i0 + k) + 1 for k in -1..1), both columns at once (their row lifts share two of
        their three P residuals), then for each next row slides that window down by two rows of x
        (two more first lifts, not eight) and the second lift's window of d by one row (one P
        residual per band, not three); the first lift's bands never go to memory. out (LAYOUT 0):
        the four bands (band = 2 * H bit + W bit) stacked along the batch; LAYOUT 1: the bands at
        their polyphase places of a (2 Jh, 2 Jw) plane, band (r, q) at (2i + r, 2j + q); LAYOUT 2:
        no bands. COMBINE: y as well; COSTS: this program's parts of the two costs, the sums of
        (s - x_o)^2 and of d^2 over the first lift's positions (the rows each position owns) over N1
        plus those of the second's over N2 (the costs are then one column sum). KH > 0: the pool
        lifts h = max_pool2d(x, (KH, KW), 1, (PH, PW)) of x's (XH, XW) planes (H, W: h's), which it
        computes as it reads (the preserve mode; KH, KW in {2, 3}, dilation 1)."""
        plane, idx, mask, chunk, pair = _grid_positions(tl.cdiv(Jh, ROWS), tl.cdiv(Jw, 2), BLOCK)
        j = 2 * pair
        c = plane % C
        wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu = _load_weights(
            wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr, c
        )
        xp = x_ptr + plane.to(tl.int64) * XH * XW  # (XH, XW = H, W without the pool)
        i = chunk * ROWS
        if KH == 0:
            # the first lift at the even rows 2 clamp(i + k), k = -2..2, and the odd rows of k = -1..1
            s_m2, d_m2, _, s_m2b, d_m2b, _ = _row_lifts(xp, i - 2, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, False)
            s_m1, d_m1, _, s_m1b, d_m1b, _ = _row_lifts(xp, i - 1, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, False)
            s_0, d_0, xo_0, s_0b, d_0b, xo_0b = _row_lifts(xp, i, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, False)
            s_p1, d_p1, xo_p1, s_p1b, d_p1b, xo_p1b = _row_lifts(xp, i + 1, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, False)
            s_p2, d_p2, xo_p2, s_p2b, d_p2b, xo_p2b = _row_lifts(xp, i + 2, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, False)
            os_m1, od_m1, _, os_m1b, od_m1b, _ = _row_lifts(xp, i - 1, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, True)
            os_0, od_0, xo1_0, os_0b, od_0b, xo1_0b = _row_lifts(xp, i, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, True)
            os_p1, od_p1, xo1_p1, os_p1b, od_p1b, xo1_p1b = _row_lifts(xp, i + 1, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, True)
        else:  # h's rows 2i - 4 .. 2i + 4 from rows of x slid down as the loop slides them, clamped after
            nr = 2 * i - 4 + KH - PH  # the first slide's new rows of x (it ends rows 2i - 3 and 2i - 2 of h)
            c10, c11, c12, c13, c14, c15, c16, c17, c18, c19 = _pool_xrow(xp, nr - 1, XH, XW, j, mask, KW, PW)
            c00, c01, c02, c03, c04, c05, c06, c07, c08, c09 = _pool_xrow(xp, nr - 2, XH, XW, j, mask, KW, PW)
            e0, e1, e2, e3, e4, e5, e6, e7, e8, e9 = _vmax2(c00, c01, c02, c03, c04, c05, c06, c07, c08, c09,
                                                            c10, c11, c12, c13, c14, c15, c16, c17, c18, c19)  # fmt: skip
            if KH == 3:  # (else rows nr - 2 and nr - 1 are row 2i - 4's window)
                t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 = _pool_xrow(xp, nr - 3, XH, XW, j, mask, KW, PW)
                e0, e1, e2, e3, e4, e5, e6, e7, e8, e9 = _vmax2(e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, t0, t1, t2, t3, t4, t5, t6, t7, t8, t9)
            s_m2, d_m2, xo_m2, s_m2b, d_m2b, xo_m2b = _pool_row_lift(e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, j, Jw, W,
                                                                    wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
            for k in tl.static_range(4):  # slides ending rows (2i - 3, 2i - 2), (2i - 1, 2i), (2i + 1, 2i + 2), (2i + 3, 2i + 4)
                (o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, e0, e1, e2, e3, e4, e5, e6, e7, e8, e9,
                 c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19) = _pool_pair(
                    xp, nr + 2 * k, XH, XW, j, mask, c00, c01, c02, c03, c04, c05, c06, c07, c08, c09,
                    c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, KH, KW, PW)  # fmt: skip
                es, ed, exo, esb, edb, exob = _pool_row_lift(e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, j, Jw, W,
                                                             wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
                if k == 0:
                    s_m1, d_m1, xo_m1, s_m1b, d_m1b, xo_m1b = es, ed, exo, esb, edb, exob
                else:
                    os_, od_, oxo, os_b, od_b, oxob = _pool_row_lift(o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, j, Jw, W,
                                                                     wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
                    if k == 1:
                        s_0, d_0, xo_0, s_0b, d_0b, xo_0b = es, ed, exo, esb, edb, exob
                        os_m1, od_m1, xo1_m1, os_m1b, od_m1b, xo1_m1b = os_, od_, oxo, os_b, od_b, oxob
                    elif k == 2:
                        s_p1, d_p1, xo_p1, s_p1b, d_p1b, xo_p1b = es, ed, exo, esb, edb, exob
                        os_0, od_0, xo1_0, os_0b, od_0b, xo1_0b = os_, od_, oxo, os_b, od_b, oxob
                    else:
                        s_p2, d_p2, xo_p2, s_p2b, d_p2b, xo_p2b = es, ed, exo, esb, edb, exob
                        os_p1, od_p1, xo1_p1, os_p1b, od_p1b, xo1_p1b = os_, od_, oxo, os_b, od_b, oxob
            # rows past h's edges: the edge's, as _row_lifts clamps (the thread's row i < Jh)
            s_m1, d_m1, xo_m1, s_m1b, d_m1b, xo_m1b = _pick6(i >= 1, s_m1, d_m1, xo_m1, s_m1b, d_m1b, xo_m1b, s_0, d_0, xo_0, s_0b, d_0b, xo_0b)
            s_m2, d_m2, xo_m2, s_m2b, d_m2b, xo_m2b = _pick6(i >= 2, s_m2, d_m2, xo_m2, s_m2b, d_m2b, xo_m2b, s_m1, d_m1, xo_m1, s_m1b, d_m1b, xo_m1b)
            s_p1, d_p1, xo_p1, s_p1b, d_p1b, xo_p1b = _pick6(i + 1 < Jh, s_p1, d_p1, xo_p1, s_p1b, d_p1b, xo_p1b, s_0, d_0, xo_0, s_0b, d_0b, xo_0b)
            os_0, od_0, xo1_0, os_0b, od_0b, xo1_0b = _pick6(2 * i + 1 < H, os_0, od_0, xo1_0, os_0b, od_0b, xo1_0b, s_0, d_0, xo_0, s_0b, d_0b, xo_0b)
            os_m1, od_m1, xo1_m1, os_m1b, od_m1b, xo1_m1b = _pick6(i >= 1, os_m1, od_m1, xo1_m1, os_m1b, od_m1b, xo1_m1b, os_0, od_0, xo1_0, os_0b, od_0b, xo1_0b)
            (s_p2, d_p2, xo_p2, s_p2b, d_p2b, xo_p2b, os_p1, od_p1, xo1_p1, os_p1b, od_p1b, xo1_p1b) = _newest_rows(
                i, Jh, H, s_p2, d_p2, xo_p2, s_p2b, d_p2b, xo_p2b, os_p1, od_p1, xo1_p1, os_p1b, od_p1b, xo1_p1b,
                s_p1, d_p1, xo_p1, s_p1b, d_p1b, xo_p1b, os_0, od_0, xo1_0, os_0b, od_0b, xo1_0b)  # fmt: skip
        # the second lift's d at rows i - 1 and i of the s band (sd) and the d band (dd)
        sd_m = _sub_op(os_m1, s_m2, s_m1, s_0, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        dd_m = _sub_op(od_m1, d_m2, d_m1, d_0, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        sd_0 = _sub_op(os_0, s_m1, s_0, s_p1, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        dd_0 = _sub_op(od_0, d_m1, d_0, d_p1, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        sd_mb = _sub_op(os_m1b, s_m2b, s_m1b, s_0b, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        dd_mb = _sub_op(od_m1b, d_m2b, d_m1b, d_0b, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        sd_0b = _sub_op(os_0b, s_m1b, s_0b, s_p1b, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        dd_0b = _sub_op(od_0b, d_m1b, d_0b, d_p1b, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        NC = tl.num_programs(0) // tl.cdiv(tl.cdiv(Jh, ROWS) * tl.cdiv(Jw, 2), BLOCK)
        cu1 = tl.zeros((BLOCK,), ACC)
        cp1, cu2, cp2 = cu1, cu1, cu1
        end = tl.minimum(i + ROWS, Jh)  # this thread's output rows: i .. end - 1
        for _ in range((ROWS + UNROLL - 1) // UNROLL):  # a loop: the build's time does not grow with ROWS
            for _u in tl.static_range(UNROLL):
                ll, lh, hl, hh, sd_p, dd_p = _second_lift(s_0, s_p1, s_p2, d_0, d_p1, d_p2, os_p1, od_p1, sd_m, sd_0, dd_m, dd_0, i, Jh,
                                                          wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
                llb, lhb, hlb, hhb, sd_pb, dd_pb = _second_lift(s_0b, s_p1b, s_p2b, d_0b, d_p1b, d_p2b, os_p1b, od_p1b, sd_mb, sd_0b, dd_mb, dd_0b, i, Jh,
                                                                wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
                on = mask & (i < end)
                onb = on & (j + 1 < Jw)
                _put_bands(out_ptr, y_ptr, gamma_ptr, plane, c, C, NC, Jh, Jw, i, j, on, ll, lh, hl, hh, COMBINE, LAYOUT, OUT)
                _put_bands(out_ptr, y_ptr, gamma_ptr, plane, c, C, NC, Jh, Jw, i, j + 1, onb, llb, lhb, hlb, hhb, COMBINE, LAYOUT, OUT)
                if COSTS:
                    own1 = 2 * i + 1 < H
                    cu1, cp1, cu2, cp2 = _add_costs(cu1, cp1, cu2, cp2, on, on & own1, s_0, xo_0, os_0, xo1_0, d_0, od_0, ll, lh, hl, hh)
                    cu1, cp1, cu2, cp2 = _add_costs(cu1, cp1, cu2, cp2, onb, onb & own1, s_0b, xo_0b, os_0b, xo1_0b, d_0b, od_0b, llb, lhb, hlb, hhb)
                i += 1
                # slide the windows down one output row: two more rows of x lifted along W
                s_0, d_0, s_p1, d_p1, s_0b, d_0b, s_p1b, d_p1b = s_p1, d_p1, s_p2, d_p2, s_p1b, d_p1b, s_p2b, d_p2b
                os_0, od_0, os_0b, od_0b = os_p1, od_p1, os_p1b, od_p1b
                xo_0, xo_p1, xo1_0, xo_0b, xo_p1b, xo1_0b = xo_p1, xo_p2, xo1_p1, xo_p1b, xo_p2b, xo1_p1b
                sd_m, sd_0, dd_m, dd_0, sd_mb, sd_0b, dd_mb, dd_0b = sd_0, sd_p, dd_0, dd_p, sd_0b, sd_pb, dd_0b, dd_pb
                if KH == 0:
                    s_p2, d_p2, xo_p2, s_p2b, d_p2b, xo_p2b = _row_lifts(xp, i + 2, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, False)
                    os_p1, od_p1, xo1_p1, os_p1b, od_p1b, xo1_p1b = _row_lifts(xp, i + 1, Jh, H, W, j, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U, True)
                else:  # rows 2i + 3 (odd) and 2i + 4 of h: two new rows of x, nr and nr + 1
                    (o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, e0, e1, e2, e3, e4, e5, e6, e7, e8, e9,
                     c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19) = _pool_pair(
                        xp, 2 * i + 2 + KH - PH, XH, XW, j, mask, c00, c01, c02, c03, c04, c05, c06, c07, c08, c09,
                        c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, KH, KW, PW)  # fmt: skip
                    a0, a1, a2, a3, a4, a5 = _pool_row_lift(e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, j, Jw, W, wp0, wp1, wp2, bp, pwp, pbp,
                                                            wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
                    b0, b1, b2, b3, b4, b5 = _pool_row_lift(o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, j, Jw, W, wp0, wp1, wp2, bp, pwp, pbp,
                                                            wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
                    (s_p2, d_p2, xo_p2, s_p2b, d_p2b, xo_p2b, os_p1, od_p1, xo1_p1, os_p1b, od_p1b, xo1_p1b) = _newest_rows(
                        i, Jh, H, a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5,
                        s_p1, d_p1, xo_p1, s_p1b, d_p1b, xo_p1b, os_0, od_0, xo1_0, os_0b, od_0b, xo1_0b)  # fmt: skip
        if COSTS:
            n1, n2 = N1.to(ACC), N2.to(ACC)
            tl.store(cost_ptr + tl.program_id(0) * 2, tl.sum(cu1, axis=0) / n1 + tl.sum(cu2, axis=0) / n2)
            tl.store(cost_ptr + tl.program_id(0) * 2 + 1, tl.sum(cp1, axis=0) / n1 + tl.sum(cp2, axis=0) / n2)

    @triton.jit
    def _first_max(best, code, v, tap):
        """(best, code) after tap ``tap`` of value v: a later tap wins only if larger, or the first NaN (a NaN stays)."""
        take = (v > best) | ((v != v) & (best == best))
        return tl.where(take, v, best), tl.where(take, tap, code)

    @triton.jit
    def _row_max(xp, h, ow, H, W, mask, KW: tl.constexpr, PW: tl.constexpr, DW: tl.constexpr):
        """The maximum over one row h of a window (-inf padding) and the index of its first tap holding it.
        Half-precision values are compared as float32 (exact; Triton 3.0 cannot compare bfloat16)."""
        row_in = mask & (h >= 0) & (h < H)
        best = _wide(tl.zeros_like(ow).to(xp.dtype.element_ty))
        code = tl.zeros_like(ow)
        for kw in tl.static_range(KW):
            w = ow - PW + kw * DW
            v = _wide(tl.load(xp + h.to(tl.int64) * W + w, mask=row_in & (w >= 0) & (w < W), other=float("-inf")))
            if kw == 0:
                best = v
            else:
                best, code = _first_max(best, code, v, kw)
        return best, code

    @triton.jit
    def _max_pool_forward_kernel(
        x_ptr, out_ptr, code_ptr, H, W, OH, OW,
        KH: tl.constexpr, KW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
        CODES: tl.constexpr, BLOCK: tl.constexpr, ROWS: tl.constexpr,
    ):  # fmt: skip
        """The stride-1 max pool of (H, W) planes and, with CODES (a backward to come), per output
        the row-major index of the window's first tap holding the maximum (or a NaN), as PyTorch's
        max pooling routes the gradient; -inf padding. Separable: the maximum of each window row,
        then of the rows (the first row holding the maximum holds its first tap). With KH = 3 and
        DH = 1 each thread owns a column of ROWS outputs and slides its three row maxima down one
        row per output (one new row of KW taps, not KH * KW); else ROWS is 1."""
        plane, idx, mask, chunk, ow = _grid_positions(tl.cdiv(OH, ROWS), OW, BLOCK)
        xp = x_ptr + plane.to(tl.int64) * H * W
        oh = chunk * ROWS
        if ROWS > 1:  # KH == 3, DH == 1
            v0, k0 = _row_max(xp, oh - PH, ow, H, W, mask, KW, PW, DW)
            v1, k1 = _row_max(xp, oh - PH + 1, ow, H, W, mask, KW, PW, DW)
        for step in tl.static_range(ROWS):
            if ROWS > 1:
                if step > 0:
                    v0, k0, v1, k1 = v1, k1, v2, k2
                v2, k2 = _row_max(xp, oh - PH + 2, ow, H, W, mask, KW, PW, DW)
                best, code = _first_max(v0, k0, v1, KW + k1)
                best, code = _first_max(best, code, v2, 2 * KW + k2)
            else:
                best, code = _row_max(xp, oh - PH, ow, H, W, mask, KW, PW, DW)
                for kh in tl.static_range(1, KH):
                    v, k = _row_max(xp, oh - PH + kh * DH, ow, H, W, mask, KW, PW, DW)
                    best, code = _first_max(best, code, v, kh * KW + k)
            on = mask & (oh < OH)
            at = plane.to(tl.int64) * OH * OW + oh * OW + ow
            tl.store(out_ptr + at, best.to(out_ptr.dtype.element_ty), mask=on)
            if CODES:
                tl.store(code_ptr + at, code.to(tl.uint8), mask=on)
            oh += 1

    @triton.jit
    def _won_row(g_ptr, code_ptr, base, oh, w, OH, OW, mask, KW: tl.constexpr, PW: tl.constexpr, DW: tl.constexpr, KH_TAP: tl.constexpr):
        """What output row oh passes back to input column w as the window's row KH_TAP: the
        gradients of its windows whose winning tap is (KH_TAP, kw) with w = ow - PW + kw DW."""
        row_in = mask & (oh >= 0) & (oh < OH)
        acc = tl.zeros_like(w).to(tl.float32)
        for kw in tl.static_range(KW):
            ow = w + PW - kw * DW
            inside = row_in & (ow >= 0) & (ow < OW)
            at = base + oh.to(tl.int64) * OW + ow
            won = tl.load(code_ptr + at, mask=inside, other=255).to(tl.int32) == KH_TAP * KW + kw
            acc += tl.where(won & inside, _wide(tl.load(g_ptr + at, mask=inside, other=0.0)), 0.0)
        return acc

    @triton.jit
    def _max_pool_backward_kernel(
        g_ptr, code_ptr, gx_ptr, H, W, OH, OW,
        KH: tl.constexpr, KW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
        BLOCK: tl.constexpr, ROWS: tl.constexpr,
    ):  # fmt: skip
        """Each input position gathers the gradients of the windows whose winning tap it is (no
        atomics). With ROWS > 1 (KH = 3, DH = 1) each thread owns a column of ROWS inputs, whose
        windows' rows slide down one output row per input row."""
        plane, idx, mask, chunk, w = _grid_positions(tl.cdiv(H, ROWS), W, BLOCK)
        base = plane.to(tl.int64) * OH * OW
        h = chunk * ROWS
        if ROWS > 1:  # input row h is row 0 of the windows of output row h + PH, row 1 of h + PH - 1, ...
            b1 = _won_row(g_ptr, code_ptr, base, h + PH - 1, w, OH, OW, mask, KW, PW, DW, 1)
            b2 = _won_row(g_ptr, code_ptr, base, h + PH - 1, w, OH, OW, mask, KW, PW, DW, 2)
            c2 = _won_row(g_ptr, code_ptr, base, h + PH - 2, w, OH, OW, mask, KW, PW, DW, 2)
        for step in tl.static_range(ROWS):
            if ROWS > 1:
                if step > 0:
                    c2, b1, b2 = b2, a1, a2
                a0 = _won_row(g_ptr, code_ptr, base, h + PH, w, OH, OW, mask, KW, PW, DW, 0)
                a1 = _won_row(g_ptr, code_ptr, base, h + PH, w, OH, OW, mask, KW, PW, DW, 1)
                a2 = _won_row(g_ptr, code_ptr, base, h + PH, w, OH, OW, mask, KW, PW, DW, 2)
                acc = a0 + b1 + c2
            else:
                acc = tl.zeros_like(w).to(tl.float32)
                for kh in tl.static_range(KH):
                    acc += _won_row(g_ptr, code_ptr, base, h + PH - kh * DH, w, OH, OW, mask, KW, PW, DW, kh)
            tl.store(gx_ptr + plane.to(tl.int64) * H * W + h * W + w, acc.to(gx_ptr.dtype.element_ty), mask=mask & (h < H))
            h += 1

    @triton.jit
    def _s_grad(g_q, cs, KCU, e_q, d_q, ru_q, o_q, BASE_U: tl.constexpr):
        """s's gradient at a position in [0, J): the output's (g_q, from :func:`_load_grad`, times
        cs), plus the cost's 2 (s - x_o) / n. (Off [0, J) no value that matters: what the kernel
        makes of it there, U's input gradient, :func:`_input_grad` zeroes.)"""
        return cs * g_q + KCU * (e_q + _lin(BASE_U, d_q) + ru_q - o_q)

    @triton.jit
    def _d_grad(g_q, q, J, cd, KCP, gs_q, d_q, au_m, au_0, au_p, wu0, wu1, wu2, BASE_U: tl.constexpr):
        """d's whole gradient at position q in [0, J): the output's (g_q times cd), the cost's
        2 d / n, and the update's (base_u gs, and U's taps at q - 1 .. q + 1 landing on q). (Off
        [0, J), as :func:`_s_grad`: P's input gradient made of it is zeroed.)"""
        return cd * g_q + KCP * d_q + _lin(BASE_U, gs_q) + _gather(au_m, au_0, au_p, q, J, wu0, wu1, wu2)

    @triton.jit(do_not_specialize=["STEPS"])
    def _lift_backward_kernel(
        x_ptr, gout_ptr, gy_ptr, gamma_ptr, gx_ptr, gw_ptr, gg_ptr,
        wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        kc_ptr, C, NC, R, L, J, B, COUNT, SUM_ROW0, STEPS,
        G: tl.constexpr, BASE_P: tl.constexpr, BASE_U: tl.constexpr, FROM_GY: tl.constexpr, GAMMA: tl.constexpr,
        ACC: tl.constexpr, BLOCK: tl.constexpr, UNROLL: tl.constexpr, OUT: tl.constexpr, KC: tl.constexpr,
    ):  # fmt: skip
        """The gradient of x from that of [s..., d...] (gout), or with FROM_GY from that of y alone
        (s_g's is coef[g] * gy, d_g's coef[G + g] * gy: :func:`_coef`), plus KCU * (s - x_o) and KCP * d (the
        costs' gradients, with KC: kc_ptr holds the gradients of cost_u and cost_p, means of squares
        over COUNT elements, the elements of one 1-D lift's s: KCU is 2 dcost_u / COUNT). Per program: the weights' gradient sums, in row SUM_ROW0 + (n, tile) of
        gw (:func:`_store_sums`: one buffer, one reduction for every lift of a layer), and with
        GAMMA sum(gy * band) for s and d in row (n, tile) of gg (N tiles, 2 G C), at columns
        (band G + g) C + c: a column sum gives them as the (2 G, C) gradient of the coefficients.

        A program serves one group's plane (the grid covers G * NC planes). Each thread owns
        STEPS consecutive positions i0 .. i0 + STEPS - 1 along the lifted axis.
        Position i's backward reads d at i-3 .. i+3, U's residual, s's gradient and U's input
        gradient at i-2 .. i+2, d's whole gradient and P's input gradient at i-1 .. i+1; each
        is a function of its own position, so after the first the window slides: one more of
        each per position (one P and one U residual) instead of all (seven and five)."""
        group_plane, i0, mask, x_in, y_in, tiles = _chunk_positions(R, L, J, B, STEPS, BLOCK)
        g = group_plane // NC
        plane = group_plane % NC
        c = plane % C
        wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu = _load_weights(
            wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr, c
        )
        slope_p, slope_u = tl.load(pwp_ptr + c), tl.load(pwu_ptr + c)  # pw: r's slope in relu(h) is (1 - r^2) pw
        if KC:  # (on the device: no wait for the costs' gradient, and no op scaling it first)
            KCU, KCP = 2.0 * _wide(tl.load(kc_ptr)) / COUNT, 2.0 * _wide(tl.load(kc_ptr + 1)) / COUNT
        else:
            KCU, KCP = 0.0, 0.0
        acc = tl.zeros((BLOCK,), ACC)
        g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp = acc, acc, acc, acc, acc, acc
        g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu = acc, acc, acc, acc, acc, acc
        gyp = gy_ptr + (plane.to(tl.int64) * R * J * B + y_in)
        xp = x_ptr + ((g * NC + plane).to(tl.int64) * R * L * B + x_in)
        gxp = gx_ptr + ((g * NC + plane).to(tl.int64) * R * L * B + x_in)
        if FROM_GY:
            cs, cd = _coef(gamma_ptr, g, c, C, OUT), _coef(gamma_ptr, G + g, c, C, OUT)
            gsp, gdp = gyp, gyp
        else:
            cs, cd = 1.0, 1.0
            gsp = gout_ptr + ((g * NC + plane).to(tl.int64) * R * J * B + y_in)
            gdp = gout_ptr + (((G + g) * NC + plane).to(tl.int64) * R * J * B + y_in)
        i = i0
        # the window at i0: d (and P's h, r) at i-3 .. i+3, x_e and x_o at i-2 .. i+2
        d_m3, _, _ = _detail_hr(xp, i - 3, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_m2, _, _ = _detail_hr(xp, i - 2, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_m1, hp_m1, rp_m1 = _detail_hr(xp, i - 1, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_0, hp_0, rp_0 = _detail_hr(xp, i, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p1, hp_p1, rp_p1 = _detail_hr(xp, i + 1, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p2, hp_p2, rp_p2 = _detail_hr(xp, i + 2, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        d_p3, hp_p3, rp_p3 = _detail_hr(xp, i + 3, J, L, B, mask, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
        e_m2, e_m1, e_0 = _even(xp, i - 2, J, B, mask), _even(xp, i - 1, J, B, mask), _even(xp, i, J, B, mask)
        e_p1, e_p2 = _even(xp, i + 1, J, B, mask), _even(xp, i + 2, J, B, mask)
        e_p3, e_p4 = _even(xp, i + 3, J, B, mask), _even(xp, i + 4, J, B, mask)  # P's taps of d at i + 4 (next)
        o_m2, o_m1, o_0 = _odd(xp, i - 2, J, L, B, mask), _odd(xp, i - 1, J, L, B, mask), _odd(xp, i, J, L, B, mask)
        o_p1, o_p2, o_p3 = _odd(xp, i + 1, J, L, B, mask), _odd(xp, i + 2, J, L, B, mask), _odd(xp, i + 3, J, L, B, mask)
        # U's residual, s's gradient and U's input gradient at i-2 .. i+2
        hu_m2, ru_m2 = _residual(d_m3, d_m2, d_m1, wu0, wu1, wu2, bu, pwu, pbu)
        hu_m1, ru_m1 = _residual(d_m2, d_m1, d_0, wu0, wu1, wu2, bu, pwu, pbu)
        hu_0, ru_0 = _residual(d_m1, d_0, d_p1, wu0, wu1, wu2, bu, pwu, pbu)
        hu_p1, ru_p1 = _residual(d_0, d_p1, d_p2, wu0, wu1, wu2, bu, pwu, pbu)
        hu_p2, ru_p2 = _residual(d_p1, d_p2, d_p3, wu0, wu1, wu2, bu, pwu, pbu)
        # the outputs' gradients at s's positions i-2 .. i+2 (with FROM_GY, y's: d's at i-1 .. i+1
        # too, and GAMMA's at i, so only y's at i + 2 is loaded per further position)
        go_m2, go_m1, go_0 = _load_grad(gsp, i - 2, J, B, mask), _load_grad(gsp, i - 1, J, B, mask), _load_grad(gsp, i, J, B, mask)
        go_p1, go_p2 = _load_grad(gsp, i + 1, J, B, mask), _load_grad(gsp, i + 2, J, B, mask)
        gs_m2 = _s_grad(go_m2, cs, KCU, e_m2, d_m2, ru_m2, o_m2, BASE_U)
        gs_m1 = _s_grad(go_m1, cs, KCU, e_m1, d_m1, ru_m1, o_m1, BASE_U)
        gs_0 = _s_grad(go_0, cs, KCU, e_0, d_0, ru_0, o_0, BASE_U)
        gs_p1 = _s_grad(go_p1, cs, KCU, e_p1, d_p1, ru_p1, o_p1, BASE_U)
        gs_p2 = _s_grad(go_p2, cs, KCU, e_p2, d_p2, ru_p2, o_p2, BASE_U)
        au_m2 = _input_grad(gs_m2, ru_m2, hu_m2, slope_u, i - 2, J)
        au_m1 = _input_grad(gs_m1, ru_m1, hu_m1, slope_u, i - 1, J)
        au_0 = _input_grad(gs_0, ru_0, hu_0, slope_u, i, J)
        au_p1 = _input_grad(gs_p1, ru_p1, hu_p1, slope_u, i + 1, J)
        au_p2 = _input_grad(gs_p2, ru_p2, hu_p2, slope_u, i + 2, J)
        # d's whole gradient and P's input gradient at i-1 .. i+1 (d = x_o - base_p x_e - r_P)
        if not FROM_GY:
            go_m1, go_0, go_p1 = _load_grad(gdp, i - 1, J, B, mask), _load_grad(gdp, i, J, B, mask), _load_grad(gdp, i + 1, J, B, mask)
        gD_m1 = _d_grad(go_m1, i - 1, J, cd, KCP, gs_m1, d_m1, au_m2, au_m1, au_0, wu0, wu1, wu2, BASE_U)
        gD_0 = _d_grad(go_0, i, J, cd, KCP, gs_0, d_0, au_m1, au_0, au_p1, wu0, wu1, wu2, BASE_U)
        gD_p1 = _d_grad(go_p1, i + 1, J, cd, KCP, gs_p1, d_p1, au_0, au_p1, au_p2, wu0, wu1, wu2, BASE_U)
        ap_m1 = _input_grad(-gD_m1, rp_m1, hp_m1, slope_p, i - 1, J)
        ap_0 = _input_grad(-gD_0, rp_0, hp_0, slope_p, i, J)
        ap_p1 = _input_grad(-gD_p1, rp_p1, hp_p1, slope_p, i + 1, J)
        sum_s = acc
        sum_d = acc
        end = tl.minimum(i0 + STEPS, J)  # this thread's positions: i0 .. end - 1
        for _ in range((STEPS + UNROLL - 1) // UNROLL):  # a loop: the build's time does not grow with STEPS
            for _u in tl.static_range(UNROLL):
                on = mask & (i < end)
                gp_0 = -gD_0 * (1.0 - rp_0 * rp_0)
                gu_0 = gs_0 * (1.0 - ru_0 * ru_0)
                s_0 = e_0 + _lin(BASE_U, d_0) + ru_0
                g_e = gs_0 - _lin(BASE_P, gD_0) + _gather(ap_m1, ap_0, ap_p1, i, J, wp0, wp1, wp2)
                g_o = gD_0 - KCU * (s_0 - o_0)
                last_odd = 2 * i + 1 >= L  # odd length: x_e and x_o of the last position are one sample
                tl.store(gxp + 2 * i * B, (g_e + tl.where(last_odd, g_o, 0.0)).to(gx_ptr.dtype.element_ty), mask=on)
                tl.store(gxp + (2 * i + 1) * B, g_o.to(gx_ptr.dtype.element_ty), mask=on & (2 * i + 1 < L))
                g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp, g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu = _add_sums(
                    g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp, g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu, on,
                    ap_0, e_m1, e_0, e_p1, gp_0, hp_0, au_0, d_m1, d_0, d_p1, gu_0, hu_0, True,
                )  # fmt: skip
                if GAMMA:
                    gy_0 = go_0 if FROM_GY else _load_grad(gyp, i, J, B, on)
                    sum_s += tl.where(on, gy_0 * s_0, 0.0)
                    sum_d += tl.where(on, gy_0 * d_0, 0.0)
                i += 1
                # slide every window one position: one new value of each at its far end
                d_m3, d_m2, d_m1, d_0, d_p1, d_p2 = d_m2, d_m1, d_0, d_p1, d_p2, d_p3
                hp_m1, rp_m1, hp_0, rp_0, hp_p1, rp_p1, hp_p2, rp_p2 = hp_0, rp_0, hp_p1, rp_p1, hp_p2, rp_p2, hp_p3, rp_p3
                e_m2, e_m1, e_0, e_p1, e_p2, e_p3 = e_m1, e_0, e_p1, e_p2, e_p3, e_p4
                e_p4 = _even(xp, i + 4, J, B, mask)
                o_m2, o_m1, o_0, o_p1, o_p2 = o_m1, o_0, o_p1, o_p2, o_p3
                o_p3 = _odd(xp, i + 3, J, L, B, mask)
                # d at i + 3 from the window; past the end, the clamped position's (that at i + 2)
                hp_p3, rp_p3 = _residual(e_p2, e_p3, e_p4, wp0, wp1, wp2, bp, pwp, pbp)
                inside = i + 3 < J
                d_p3 = tl.where(inside, o_p3 - _lin(BASE_P, e_p3) - rp_p3, d_p2)
                hp_p3, rp_p3 = tl.where(inside, hp_p3, hp_p2), tl.where(inside, rp_p3, rp_p2)
                hu_m2, ru_m2, hu_m1, ru_m1, hu_0, ru_0, hu_p1, ru_p1 = hu_m1, ru_m1, hu_0, ru_0, hu_p1, ru_p1, hu_p2, ru_p2
                hu_p2, ru_p2 = _residual(d_p1, d_p2, d_p3, wu0, wu1, wu2, bu, pwu, pbu)
                gs_m2, gs_m1, gs_0, gs_p1 = gs_m1, gs_0, gs_p1, gs_p2
                if FROM_GY:
                    go_0, go_p1 = go_p1, go_p2
                    go_p2 = _load_grad(gsp, i + 2, J, B, mask)
                    gd_p1 = go_p1
                else:
                    go_p2 = _load_grad(gsp, i + 2, J, B, mask)
                    gd_p1 = _load_grad(gdp, i + 1, J, B, mask)
                gs_p2 = _s_grad(go_p2, cs, KCU, e_p2, d_p2, ru_p2, o_p2, BASE_U)
                au_m2, au_m1, au_0, au_p1 = au_m1, au_0, au_p1, au_p2
                au_p2 = _input_grad(gs_p2, ru_p2, hu_p2, slope_u, i + 2, J)
                gD_m1, gD_0 = gD_0, gD_p1
                gD_p1 = _d_grad(gd_p1, i + 1, J, cd, KCP, gs_p1, d_p1, au_0, au_p1, au_p2, wu0, wu1, wu2, BASE_U)
                ap_m1, ap_0 = ap_0, ap_p1
                ap_p1 = _input_grad(-gD_p1, rp_p1, hp_p1, slope_p, i + 1, J)
        n_tile = (plane // C) * tiles + tl.program_id(0) % tiles
        if GAMMA:
            ggp = gg_ptr + n_tile.to(tl.int64) * 2 * G * C + g * C + c
            tl.store(ggp, tl.sum(sum_s, axis=0))
            tl.store(ggp + G * C, tl.sum(sum_d, axis=0))
        row = SUM_ROW0 + g * (NC // C) * tiles + n_tile  # (g N + n) tiles + tile
        _store_sums(
            gw_ptr + row.to(tl.int64) * 12 * C, c, C, mask, g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp,
            g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu,
        )  # fmt: skip

    @triton.jit
    def _sources(s_ptr, d_ptr, gamma_ptr, plane, C, NC, DN, DB, size, y_in, mask, UP: tl.constexpr, OUT: tl.constexpr):
        """Where an inverse lift's program reads its s and d bands: (sp, dp, t1p, t2p, t3p, k1, k2,
        k3, tmask). UP 0: planes of the stacked bands (s_ptr, d_ptr). UP 1 and 2: a 2-D up pool's
        H inverse, reading y (s_ptr) and the details (d_ptr: (N, 3, C, ...) DN and DB planes apart,
        as :func:`_band_at`) in place, no stacked copy: group 0 (planes below NC) inverts (the
        approximation, HL), group 1 (LH, HH); with UP 2 the approximation is y - sum_b k_b t_b, the
        detail bands at t1p .. t3p loaded where tmask (group 0), their coefficients k1 .. k3 (:func:`_coef`)."""
        if UP == 0:
            offset = plane.to(tl.int64) * size + y_in
            sp, dp = s_ptr + offset, d_ptr + offset
            return sp, dp, dp, dp, dp, 0.0, 0.0, 0.0, mask
        g = plane // NC
        q = plane % NC
        c = q % C
        lh = (q // C) * DN + c  # (n, LH)'s plane in the details
        t1p = d_ptr + lh.to(tl.int64) * size + y_in
        t2p = d_ptr + (lh + DB).to(tl.int64) * size + y_in
        t3p = d_ptr + (lh + 2 * DB).to(tl.int64) * size + y_in
        sp = tl.where(g == 0, s_ptr + q.to(tl.int64) * size + y_in, t1p)
        dp = tl.where(g == 0, t2p, t3p)
        if UP == 2:
            k1 = tl.where(g == 0, _coef(gamma_ptr, 1, c, C, OUT), 0.0)
            k2 = tl.where(g == 0, _coef(gamma_ptr, 2, c, C, OUT), 0.0)
            k3 = tl.where(g == 0, _coef(gamma_ptr, 3, c, C, OUT), 0.0)
        else:
            k1, k2, k3 = 0.0, 0.0, 0.0
        return sp, dp, t1p, t2p, t3p, k1, k2, k3, mask & (g == 0)

    @triton.jit
    def _s_band(sp, t1p, t2p, t3p, k1, k2, k3, p, J, B, mask, tmask, TERM: tl.constexpr):
        """s at position p (clamped), from :func:`_sources`: with TERM minus sum_b k_b t_b."""
        v = _band(sp, p, J, B, mask)
        if TERM:
            v -= k1 * _band(t1p, p, J, B, tmask) + k2 * _band(t2p, p, J, B, tmask) + k3 * _band(t3p, p, J, B, tmask)
        return v

    @triton.jit
    def _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, p, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu,
                   BASE_U: tl.constexpr, TERM: tl.constexpr):  # fmt: skip
        """:func:`_approx` at position p, with relu of U's pre-activation and residual r there (for
        p in [0, J) those of the U residual at p; off it the clamped position's, whose gradient is 0);
        s read as :func:`_s_band` reads it."""
        pc = _clamp(p, J)
        d_0 = _band(dp, p, J, B, mask)
        h, r = _residual(_band(dp, pc - 1, J, B, mask), d_0, _band(dp, pc + 1, J, B, mask), wu0, wu1, wu2, bu, pwu, pbu)
        return _s_band(sp, t1p, t2p, t3p, k1, k2, k3, p, J, B, mask, tmask, TERM) - _lin(BASE_U, d_0) - r, h, r

    @triton.jit
    def _unlift_forward_kernel(
        s_ptr, d_ptr, gamma_ptr, x_ptr, wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        C, R, J, B, NC, DN, DB,
        BASE_P: tl.constexpr, BASE_U: tl.constexpr, BLOCK: tl.constexpr, STEPS: tl.constexpr, UP: tl.constexpr,
        OUT: tl.constexpr,
    ):  # fmt: skip
        """x_e = s - U(d), x_o = d + P(x_e), interleaved: the output has 2J rows along the axis.
        Each thread owns STEPS consecutive positions and slides its window: two loads and one U
        and one P residual per further position (not eight, three and one). s and d: as
        :func:`_sources` finds them."""
        plane, i0, mask, x_in, y_in, _ = _chunk_positions(R, 2 * J, J, B, STEPS, BLOCK)
        sp, dp, t1p, t2p, t3p, k1, k2, k3, tmask = _sources(s_ptr, d_ptr, gamma_ptr, plane, C, NC, DN, DB, R * J * B, y_in, mask, UP, OUT)
        wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu = _load_weights(
            wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr, plane % C
        )
        xp = x_ptr + (plane.to(tl.int64) * R * 2 * J * B + x_in)
        kind = x_ptr.dtype.element_ty
        d_m = _band(dp, i0 - 1, J, B, mask)
        d_0 = _band(dp, i0, J, B, mask)
        d_p = _band(dp, i0 + 1, J, B, mask)
        s_m = _s_band(sp, t1p, t2p, t3p, k1, k2, k3, i0 - 1, J, B, mask, tmask, UP == 2)
        e_m = _sub_op(s_m, _band(dp, i0 - 2, J, B, mask), d_m, d_0, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        e_0 = _sub_op(_s_band(sp, t1p, t2p, t3p, k1, k2, k3, i0, J, B, mask, tmask, UP == 2), d_m, d_0, d_p, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        for step in tl.static_range(STEPS):
            i = i0 + step
            if step > 0:  # slide one position: s at i + 1 and d at i + 2 are new
                d_0, d_p, e_m, e_0 = d_p, d_p2, e_0, e_p
            d_p2 = _band(dp, i + 2, J, B, mask)
            e_p = _sub_op(_s_band(sp, t1p, t2p, t3p, k1, k2, k3, i + 1, J, B, mask, tmask, UP == 2), d_0, d_p, d_p2,
                          wu0, wu1, wu2, bu, pwu, pbu, BASE_U)  # fmt: skip
            o_0 = _add_op(d_0, e_m, e_0, e_p, i, J, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)
            on = mask & (i < J)
            tl.store(xp + 2 * i * B, e_0.to(kind), mask=on)
            tl.store(xp + (2 * i + 1) * B, o_0.to(kind), mask=on)

    @triton.jit
    def _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, row, col, Jh, Jw, mask, BAND: tl.constexpr,
                 DETAIL_TERM: tl.constexpr, OUT: tl.constexpr):  # fmt: skip
        """Band BAND of an up pool's input at (row, col): 0 the approximation y - sum_b coef_b det_b
        (DETAIL_TERM; :func:`_coef`), else detail band BAND (details: (N, 3, C, Jh, Jw), each channel's plane
        contiguous, DN and DB planes apart along N and the bands: a down pool's band-major view
        is read in place)."""
        at = row * Jw + col
        size = Jh * Jw
        if BAND == 0:
            v = _wide(tl.load(y_ptr + plane.to(tl.int64) * size + at, mask=mask, other=0.0))
            if DETAIL_TERM:
                for b in tl.static_range(1, 4):
                    det = _wide(tl.load(det_ptr + (n * DN + (b - 1) * DB + c).to(tl.int64) * size + at, mask=mask, other=0.0))
                    v -= _coef(gamma_ptr, b, c, C, OUT) * det
        else:
            v = _wide(tl.load(det_ptr + (n * DN + (BAND - 1) * DB + c).to(tl.int64) * size + at, mask=mask, other=0.0))
        return v

    @triton.jit
    def _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, col, Jh, Jw, mask,
                     wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu,
                     S_BAND: tl.constexpr, D_BAND: tl.constexpr, DETAIL_TERM: tl.constexpr,
                     BASE_P: tl.constexpr, BASE_U: tl.constexpr, OUT: tl.constexpr):  # fmt: skip
        """The inverse of the second (H) lift at column col: rows 2i and 2i + 1 of one band of the
        first lift, from bands S_BAND (s) and D_BAND (d) at rows clamp(i - 2) .. clamp(i + 2)."""
        d_m2 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, _clamp(i - 2, Jh), col, Jh, Jw, mask, D_BAND, DETAIL_TERM, OUT)
        d_m1 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, _clamp(i - 1, Jh), col, Jh, Jw, mask, D_BAND, DETAIL_TERM, OUT)
        d_0 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, col, Jh, Jw, mask, D_BAND, DETAIL_TERM, OUT)
        d_p1 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, _clamp(i + 1, Jh), col, Jh, Jw, mask, D_BAND, DETAIL_TERM, OUT)
        d_p2 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, _clamp(i + 2, Jh), col, Jh, Jw, mask, D_BAND, DETAIL_TERM, OUT)
        s_m1 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, _clamp(i - 1, Jh), col, Jh, Jw, mask, S_BAND, DETAIL_TERM, OUT)
        s_0 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, col, Jh, Jw, mask, S_BAND, DETAIL_TERM, OUT)
        s_p1 = _band_at(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, _clamp(i + 1, Jh), col, Jh, Jw, mask, S_BAND, DETAIL_TERM, OUT)
        return _unlift_at(s_m1, s_0, s_p1, d_m2, d_m1, d_0, d_p1, d_p2, i, Jh, wp0, wp1, wp2, bp, pwp, pbp,
                          wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip

    @triton.jit
    def _unlift_at(s_m1, s_0, s_p1, d_m2, d_m1, d_0, d_p1, d_p2, i, J, wp0, wp1, wp2, bp, pwp, pbp,
                   wu0, wu1, wu2, bu, pwu, pbu, BASE_P: tl.constexpr, BASE_U: tl.constexpr):  # fmt: skip
        """The inverse lift at position i: (x_e, x_o), from s at clamp(i - 1) .. clamp(i + 1) and d
        at clamp(i - 2) .. clamp(i + 2)."""
        e_m = _sub_op(s_m1, d_m2, d_m1, d_0, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        e_0 = _sub_op(s_0, d_m1, d_0, d_p1, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        e_p = _sub_op(s_p1, d_0, d_p1, d_p2, wu0, wu1, wu2, bu, pwu, pbu, BASE_U)
        return e_0, _add_op(d_0, e_m, e_0, e_p, i, J, wp0, wp1, wp2, bp, pwp, pbp, BASE_P)

    @triton.jit(do_not_specialize=["STEPS"])
    def _up2_forward_kernel(
        y_ptr, det_ptr, gamma_ptr, x_ptr, wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        C, DN, DB, Jh, Jw, STEPS,
        DETAIL_TERM: tl.constexpr, BASE_P: tl.constexpr, BASE_U: tl.constexpr, BLOCK: tl.constexpr, UNROLL: tl.constexpr,
        OUT: tl.constexpr,
    ):  # fmt: skip
        """A 2-D up pool in one launch, from y and the details (:func:`_band_at`): each position (i, j) writes the 2x2
        outputs x[2i : 2i + 2, 2j : 2j + 2], undoing the second (H) lift at the columns the first
        lift's inverse reads (clamp(j - 2) .. clamp(j + 2)) in registers. Each thread owns STEPS
        consecutive positions of a row and slides that window of columns: two more columns undone
        per position (one of the d band, one of the s band) instead of eight."""
        plane, idx, mask, i, chunk = _grid_positions(Jh, tl.cdiv(Jw, STEPS), BLOCK)
        c = plane % C
        n = plane // C
        wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu = _load_weights(
            wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr, c
        )
        j = chunk * STEPS
        # the first lift's d band (bands 1 and 3) at columns clamp(j - 2) .. clamp(j + 2), rows 2i and 2i + 1
        de_m2, do_m2 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j - 2, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 1, 3, DETAIL_TERM, BASE_P, BASE_U, OUT)
        de_m1, do_m1 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j - 1, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 1, 3, DETAIL_TERM, BASE_P, BASE_U, OUT)
        de_0, do_0 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 1, 3, DETAIL_TERM, BASE_P, BASE_U, OUT)
        de_p1, do_p1 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j + 1, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 1, 3, DETAIL_TERM, BASE_P, BASE_U, OUT)
        de_p2, do_p2 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j + 2, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 1, 3, DETAIL_TERM, BASE_P, BASE_U, OUT)
        # its s band (bands 0 and 2) at columns clamp(j - 1) .. clamp(j + 1)
        se_m1, so_m1 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j - 1, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 0, 2, DETAIL_TERM, BASE_P, BASE_U, OUT)
        se_0, so_0 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 0, 2, DETAIL_TERM, BASE_P, BASE_U, OUT)
        se_p1, so_p1 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j + 1, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 0, 2, DETAIL_TERM, BASE_P, BASE_U, OUT)
        xp = x_ptr + plane.to(tl.int64) * 4 * Jh * Jw
        kind = x_ptr.dtype.element_ty
        end = tl.minimum(j + STEPS, Jw)  # this thread's positions: j .. end - 1
        for _ in range((STEPS + UNROLL - 1) // UNROLL):  # a loop: the build's time does not grow with STEPS
            for _u in tl.static_range(UNROLL):
                on = mask & (j < end)
                for parity in tl.static_range(2):  # row 2i (the H inverse's x_e), then 2i + 1 (its x_o)
                    if parity == 0:
                        s_m1, s_0, s_p1 = se_m1, se_0, se_p1
                        d_m2, d_m1, d_0, d_p1, d_p2 = de_m2, de_m1, de_0, de_p1, de_p2
                    else:
                        s_m1, s_0, s_p1 = so_m1, so_0, so_p1
                        d_m2, d_m1, d_0, d_p1, d_p2 = do_m2, do_m1, do_0, do_p1, do_p2
                    e_0, o_0 = _unlift_at(s_m1, s_0, s_p1, d_m2, d_m1, d_0, d_p1, d_p2, j, Jw, wp0, wp1, wp2, bp, pwp, pbp,
                                          wu0, wu1, wu2, bu, pwu, pbu, BASE_P, BASE_U)  # fmt: skip
                    row = (2 * i + parity) * 2 * Jw
                    tl.store(xp + row + 2 * j, e_0.to(kind), mask=on)
                    tl.store(xp + row + 2 * j + 1, o_0.to(kind), mask=on)
                j += 1
                # slide the columns one position: the d band's at clamp(j + 2), the s band's at clamp(j + 1)
                de_m2, do_m2, de_m1, do_m1, de_0, do_0, de_p1, do_p1 = de_m1, do_m1, de_0, do_0, de_p1, do_p1, de_p2, do_p2
                de_p2, do_p2 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j + 2, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 1, 3, DETAIL_TERM, BASE_P, BASE_U, OUT)
                se_m1, so_m1, se_0, so_0 = se_0, so_0, se_p1, so_p1
                se_p1, so_p1 = _rows_unlift(y_ptr, det_ptr, gamma_ptr, plane, n, c, C, DN, DB, i, _clamp(j + 1, Jw), Jh, Jw, mask, wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu, 0, 2, DETAIL_TERM, BASE_P, BASE_U, OUT)

    @triton.jit
    def _even_grad(gxp, go, a_m, a_0, a_p, q, J, B, mask, wp0, wp1, wp2, BASE_P: tl.constexpr):
        """x_e's whole gradient at position q in [0, J): the output's, base_p times x_o's, and P's
        taps at q - 1 .. q + 1 landing on q. (Off [0, J) no value that matters: U's input gradient
        made of it is zeroed there.)"""
        return _load_grad(gxp, 2 * q, 2 * J, B, mask) + _lin(BASE_P, go) + _gather(a_m, a_0, a_p, q, J, wp0, wp1, wp2)

    @triton.jit(do_not_specialize=["STEPS"])
    def _unlift_backward_kernel(
        s_ptr, d_ptr, gamma_ptr, gx_ptr, gs_ptr, gd_ptr, gw_ptr, gg_ptr,
        wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr,
        C, R, J, B, NC, DN, DB, SUM_ROW0, STEPS,
        BASE_P: tl.constexpr, BASE_U: tl.constexpr, BLOCK: tl.constexpr, UP: tl.constexpr, UNROLL: tl.constexpr,
        OUT: tl.constexpr, GAMMA: tl.constexpr,
    ):  # fmt: skip
        """Gradients of s and d from that of the interleaved output, and this program's weight-gradient
        sums (in row SUM_ROW0 + (n, tile) of gw, as :func:`_lift_backward_kernel`). With GAMMA (UP 2,
        gated), the approximation's programs also write minus their sums of t_b g_s for each detail
        band b (s = y - sum_b gamma_b t_b) in row (n, tile) of gg (N tiles, 3 C), at column
        (b - 1) C + c: gamma's gradient is a column sum, not a product and a reduction over the
        details after the kernel (40 bytes per output less, float32). Each thread owns
        STEPS consecutive positions; position i reads x_e at i-3 .. i+3, P's residual and input
        gradient at i-2 .. i+2, x_e's gradient and U's input gradient at
        i-1 .. i+1, each a function of its own position: after the first, every window slides
        (one U and one P residual per position instead of ten and five)."""
        plane, i0, mask, x_in, y_in, tiles = _chunk_positions(R, 2 * J, J, B, STEPS, BLOCK)
        offset = plane.to(tl.int64) * R * J * B + y_in  # (the gradients' stacked bands)
        sp, dp, t1p, t2p, t3p, k1, k2, k3, tmask = _sources(s_ptr, d_ptr, gamma_ptr, plane, C, NC, DN, DB, R * J * B, y_in, mask, UP, OUT)
        wp0, wp1, wp2, bp, pwp, pbp, wu0, wu1, wu2, bu, pwu, pbu = _load_weights(
            wp_ptr, bp_ptr, pwp_ptr, pbp_ptr, wu_ptr, bu_ptr, pwu_ptr, pbu_ptr, plane % C
        )
        slope_p, slope_u = tl.load(pwp_ptr + plane % C), tl.load(pwu_ptr + plane % C)  # r's slope in relu(h): (1 - r^2) pw
        gxp = gx_ptr + (plane.to(tl.int64) * R * 2 * J * B + x_in)
        i = i0
        # x_e at i-3 .. i+3 (clamped), with U's h and r; P's residual and input gradient at i-2 .. i+2
        e_m3, _, _ = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i - 3, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
        e_m2, _, _ = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i - 2, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
        e_m1, hu_m1, ru_m1 = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i - 1, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
        e_0, hu_0, ru_0 = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
        e_p1, hu_p1, ru_p1 = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i + 1, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
        e_p2, hu_p2, ru_p2 = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i + 2, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
        e_p3, hu_p3, ru_p3 = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i + 3, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
        go_m2 = _load_grad(gxp + B, 2 * (i - 2), 2 * J, B, mask)  # x_o at position j is row 2j + 1
        go_m1 = _load_grad(gxp + B, 2 * (i - 1), 2 * J, B, mask)
        go_0 = _load_grad(gxp + B, 2 * i, 2 * J, B, mask)
        go_p1 = _load_grad(gxp + B, 2 * (i + 1), 2 * J, B, mask)
        go_p2 = _load_grad(gxp + B, 2 * (i + 2), 2 * J, B, mask)
        hp_m2, rp_m2 = _residual(e_m3, e_m2, e_m1, wp0, wp1, wp2, bp, pwp, pbp)
        hp_m1, rp_m1 = _residual(e_m2, e_m1, e_0, wp0, wp1, wp2, bp, pwp, pbp)
        hp_0, rp_0 = _residual(e_m1, e_0, e_p1, wp0, wp1, wp2, bp, pwp, pbp)
        hp_p1, rp_p1 = _residual(e_0, e_p1, e_p2, wp0, wp1, wp2, bp, pwp, pbp)
        hp_p2, rp_p2 = _residual(e_p1, e_p2, e_p3, wp0, wp1, wp2, bp, pwp, pbp)
        ap_m2 = _input_grad(go_m2, rp_m2, hp_m2, slope_p, i - 2, J)
        ap_m1 = _input_grad(go_m1, rp_m1, hp_m1, slope_p, i - 1, J)
        ap_0 = _input_grad(go_0, rp_0, hp_0, slope_p, i, J)
        ap_p1 = _input_grad(go_p1, rp_p1, hp_p1, slope_p, i + 1, J)
        ap_p2 = _input_grad(go_p2, rp_p2, hp_p2, slope_p, i + 2, J)
        # x_e's gradient, U's input gradient (x_e = s - base_u d - r_U(d)) and d at i-1 .. i+1
        ge_m1 = _even_grad(gxp, go_m1, ap_m2, ap_m1, ap_0, i - 1, J, B, mask, wp0, wp1, wp2, BASE_P)
        ge_0 = _even_grad(gxp, go_0, ap_m1, ap_0, ap_p1, i, J, B, mask, wp0, wp1, wp2, BASE_P)
        ge_p1 = _even_grad(gxp, go_p1, ap_0, ap_p1, ap_p2, i + 1, J, B, mask, wp0, wp1, wp2, BASE_P)
        au_m1 = _input_grad(-ge_m1, ru_m1, hu_m1, slope_u, i - 1, J)
        au_0 = _input_grad(-ge_0, ru_0, hu_0, slope_u, i, J)
        au_p1 = _input_grad(-ge_p1, ru_p1, hu_p1, slope_u, i + 1, J)
        d_m1, d_0, d_p1 = _band(dp, i - 1, J, B, mask), _band(dp, i, J, B, mask), _band(dp, i + 1, J, B, mask)
        acc = tl.zeros((BLOCK,), tl.float32).to(e_0.dtype)
        g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp = acc, acc, acc, acc, acc, acc
        g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu = acc, acc, acc, acc, acc, acc
        gt1, gt2, gt3 = acc, acc, acc
        end = tl.minimum(i0 + STEPS, J)  # this thread's positions: i0 .. end - 1
        for _ in range((STEPS + UNROLL - 1) // UNROLL):  # a loop: the build's time does not grow with STEPS
            for _u in tl.static_range(UNROLL):
                on = mask & (i < end)
                gp_0 = go_0 * (1.0 - rp_0 * rp_0)
                gu_0 = -ge_0 * (1.0 - ru_0 * ru_0)
                g_d = go_0 - _lin(BASE_U, ge_0) + _gather(au_m1, au_0, au_p1, i, J, wu0, wu1, wu2)
                at = offset + i * B
                tl.store(gs_ptr + at, ge_0.to(gs_ptr.dtype.element_ty), mask=on)
                tl.store(gd_ptr + at, g_d.to(gd_ptr.dtype.element_ty), mask=on)
                if GAMMA:  # (the detail bands at i again: L1 hits, three registers each were they kept)
                    tm = on & tmask
                    gt1 += tl.where(tm, _band(t1p, i, J, B, tm) * ge_0, 0.0)
                    gt2 += tl.where(tm, _band(t2p, i, J, B, tm) * ge_0, 0.0)
                    gt3 += tl.where(tm, _band(t3p, i, J, B, tm) * ge_0, 0.0)
                g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp, g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu = _add_sums(
                    g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp, g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu, on,
                    ap_0, e_m1, e_0, e_p1, gp_0, hp_0, au_0, d_m1, d_0, d_p1, gu_0, hu_0, False,
                )  # fmt: skip
                i += 1
                # slide every window one position: one new value of each at its far end
                e_m1, e_0, e_p1, e_p2 = e_0, e_p1, e_p2, e_p3
                hu_m1, ru_m1, hu_0, ru_0, hu_p1, ru_p1, hu_p2, ru_p2 = hu_0, ru_0, hu_p1, ru_p1, hu_p2, ru_p2, hu_p3, ru_p3
                e_p3, hu_p3, ru_p3 = _approx_hr(sp, dp, t1p, t2p, t3p, k1, k2, k3, i + 3, J, B, mask, tmask, wu0, wu1, wu2, bu, pwu, pbu, BASE_U, UP == 2)
                go_0, go_p1 = go_p1, go_p2
                go_p2 = _load_grad(gxp + B, 2 * (i + 2), 2 * J, B, mask)
                hp_0, rp_0, hp_p1, rp_p1 = hp_p1, rp_p1, hp_p2, rp_p2
                hp_p2, rp_p2 = _residual(e_p1, e_p2, e_p3, wp0, wp1, wp2, bp, pwp, pbp)
                ap_0, ap_p1 = ap_p1, ap_p2
                ap_p2 = _input_grad(go_p2, rp_p2, hp_p2, slope_p, i + 2, J)
                ge_m1, ge_0 = ge_0, ge_p1
                ge_p1 = _even_grad(gxp, go_p1, ap_0, ap_p1, ap_p2, i + 1, J, B, mask, wp0, wp1, wp2, BASE_P)
                au_m1, au_0 = au_0, au_p1
                au_p1 = _input_grad(-ge_p1, ru_p1, hu_p1, slope_u, i + 1, J)
                d_m1, d_0 = d_0, d_p1
                d_p1 = _band(dp, i + 1, J, B, mask)
        row = SUM_ROW0 + (plane // C) * tiles + tl.program_id(0) % tiles
        _store_sums(
            gw_ptr + row.to(tl.int64) * 12 * C, plane % C, C, mask, g_wp0, g_wp1, g_wp2, g_bp, g_pwp, g_pbp,
            g_wu0, g_wu1, g_wu2, g_bu, g_pwu, g_pbu,
        )  # fmt: skip
        if GAMMA:
            if plane < NC:  # (group 0: the approximation's programs)
                out = gg_ptr + ((plane // C) * tiles + tl.program_id(0) % tiles).to(tl.int64) * 3 * C + plane % C
                tl.store(out, -tl.sum(gt1, axis=0))
                tl.store(out + C, -tl.sum(gt2, axis=0))
                tl.store(out + 2 * C, -tl.sum(gt3, axis=0))

    @triton.jit
    def _column_sums(src_ptr, rows, ld, cols, mask, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """Sums over ``rows`` rows (``ld`` apart) of the columns ``cols``, in row order."""
        acc = tl.zeros((BLOCK_C,), ACC)
        r = tl.arange(0, BLOCK_R)
        for r0 in range(0, rows, BLOCK_R):
            rr = (r0 + r).to(tl.int64)
            m = (rr[:, None] < rows) & mask[None, :]
            acc += tl.sum(tl.load(src_ptr + rr[:, None] * ld + cols[None, :], mask=m, other=0.0).to(ACC), axis=0)
        return acc

    @triton.jit
    def _store_segment(out_ptr, acc, cols, start, n):
        """Columns [start, start + n) of ``acc`` into ``out_ptr``'s n elements."""
        tl.store(out_ptr + (cols - start), acc.to(out_ptr.dtype.element_ty), mask=(cols >= start) & (cols < start + n))

    @triton.jit
    def _grad_sums_kernel(
        gw_ptr, gg_ptr, o0_ptr, o1_ptr, o2_ptr, o3_ptr, o4_ptr, o5_ptr, o6_ptr, o7_ptr, og_ptr, rows, rows_g, C, ld_g, off_g, n_g,
        GAMMA: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        """The weights' and gamma's gradients from the backward kernels' per-program sums, in one
        launch: programs over the 12 C columns of gw (rows, 12 C; :func:`_store_sums`) sum each
        column over the rows and store it into the gradient it belongs to, o0 .. o7 (P's dw taps,
        dw bias, pw, pw bias, then U's), each a tensor of its own in its parameter's dtype; with
        GAMMA, programs past those sum n_g columns of gg (rows_g, ld_g) from column off_g into og. In row
        order, without atomics: the result does not depend on scheduling."""
        pid = tl.program_id(0)
        n_w = tl.cdiv(12 * C, BLOCK_C)
        if pid < n_w:
            cols = pid * BLOCK_C + tl.arange(0, BLOCK_C)
            acc = _column_sums(gw_ptr, rows, 12 * C, cols, cols < 12 * C, ACC, BLOCK_R, BLOCK_C)
            _store_segment(o0_ptr, acc, cols, 0, 3 * C)
            _store_segment(o1_ptr, acc, cols, 3 * C, C)
            _store_segment(o2_ptr, acc, cols, 4 * C, C)
            _store_segment(o3_ptr, acc, cols, 5 * C, C)
            _store_segment(o4_ptr, acc, cols, 6 * C, 3 * C)
            _store_segment(o5_ptr, acc, cols, 9 * C, C)
            _store_segment(o6_ptr, acc, cols, 10 * C, C)
            _store_segment(o7_ptr, acc, cols, 11 * C, C)
        elif GAMMA:
            cols = (pid - n_w) * BLOCK_C + tl.arange(0, BLOCK_C)
            acc = _column_sums(gg_ptr + off_g, rows_g, ld_g, cols, cols < n_g, ACC, BLOCK_R, BLOCK_C)
            _store_segment(og_ptr, acc, cols, 0, n_g)


def _geometry(x: Tensor | torch.Size, dim: int) -> tuple[int, int, int, int, int]:
    """(planes, R, L, J, B): x (or a shape) as planes (N, C) of (R, L, B) with the lifted axis L, J = ceil(L / 2)."""
    shape = tuple(x.shape if isinstance(x, Tensor) else x)
    dim = dim % len(shape)
    length = shape[dim]
    return shape[0] * shape[1], math.prod(shape[2:dim]), length, (length + 1) // 2, math.prod(shape[dim + 1 :])


def _flat(params: tuple[Tensor | None, ...], like: Tensor) -> list[Tensor]:
    """P's and U's weights as the kernels read them: contiguous per-channel values (a missing bias as zeros).

    The layers' weights already are (no copies: each would be one more launch per lift).
    """
    out = []
    for p in params:
        if p is None:
            p = torch.zeros(like.shape[1], dtype=_acc(like)[1], device=like.device)
        elif not p.is_contiguous():
            p = p.contiguous()
        out.append(p)
    return out


def _on(x: Tensor):
    """Launch on x's GPU: Triton launches on the current device, which need not be x's."""
    return torch.cuda.device(x.device) if x.is_cuda else nullcontext()


def _acc(x: Tensor):
    """The arithmetic's dtype for x, in Triton and in torch: float64 for float64, else float32."""
    return (tl.float64, torch.float64) if x.dtype == torch.float64 else (tl.float32, torch.float32)


_OUT = {"LL": 0, "sum": 1, "gated": 2}  # the kernels' OUT (:func:`_coef`)


class _Mix(NamedTuple):
    """How the kernels weigh the bands in y (SPEC 2's output modes): ``gamma`` (nb - 1, C) read in
    place for "gated" (any tensor of the device otherwise: not read) and the kernels' OUT."""

    gamma: Tensor
    out: int

    @staticmethod
    def of(output: str, gamma: Tensor | None, like: Tensor) -> "_Mix":
        return _Mix(gamma.contiguous() if output == "gated" else like, _OUT[output])


def _forward(x: Tensor, dim: int, groups: int, weights: list[Tensor], bases, mix: _Mix | None, costs: bool):
    """One lift of x, whose batch holds ``groups`` stacked groups: (out, y or None, per-program cost sums or None).

    ``out`` stacks [s of each group, d of each group] along the batch; with ``mix`` the kernel also
    combines the 2 groups' bands into y (one group's shape).
    """
    planes, rows, length, half, inner = _geometry(x, dim)
    shape = list(x.shape)
    shape[dim % x.dim()] = half
    shape[0] *= 2
    out = x.new_empty(shape)
    y = x.new_empty([shape[0] // (2 * groups)] + shape[1:]) if mix is not None else None
    steps = 1 if mix is not None and groups > 1 else _per_thread(half, _STEPS)  # (several groups' y sums in registers)
    nprog = planes // groups * _cdiv(rows * _cdiv(half, steps) * inner, _BLOCK)
    tl_acc, acc = _acc(x)
    sums = torch.empty((nprog, 2), dtype=acc, device=x.device) if costs else None
    with _on(x):
        launch(
            _lift_forward_kernel, nprog,
            x, out, out if y is None else y, out if mix is None else mix.gamma, out if sums is None else sums, *weights,
            x.shape[1], planes // groups, rows, length, half, inner,
            G=groups, BASE_P=bases[0], BASE_U=bases[1], COMBINE=mix is not None, COSTS=costs, ACC=tl_acc, BLOCK=_BLOCK,
            STEPS=steps, OUT=0 if mix is None else mix.out,
        )  # fmt: skip
    return out, y, sums


def _cdiv(a: int, b: int) -> int:
    """ceil(a / b) on the host: triton.cdiv is a constexpr function (Triton >= 3.4), a Python
    wrapper around every call."""
    return -(-a // b)


def _per_thread(n: int, most: int) -> int:
    """Positions per thread along an axis of n: at most ``most``, spread so that the last chunk is
    as full as the others (14 positions at most 8: 7 and 7, not 8 and 6 of 8), since a thread's
    positions past the end still issue their instructions."""
    return -(-n // -(-n // most)) if n > 0 else most


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    """The SMs of a CUDA device; 0 elsewhere (the interpreter's CPU tensors: no grid to fill)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 0


def _per_thread_filling(n: int, most: int, programs, device: torch.device) -> int:
    """:func:`_per_thread` of an axis of n, at most ``most``, halved (down to 4) while the grid
    at that many per thread, ``programs(k)``, has fewer than _PROGRAMS_PER_SM programs per SM of
    ``device``: a small batch then fills the GPU with more, shorter threads."""
    k = _per_thread(n, most)
    target = _PROGRAMS_PER_SM * _sm_count(device)
    while k > 4 and programs(k) < target:
        k = _per_thread(n, max(4, k // 2))
    return k


@functools.lru_cache(maxsize=1024)  # (a model's layers see few sizes: the host does this once per size)
def _steps_backward(planes: int, rows: int, length: int, inner: int, device: torch.device) -> tuple[int, int]:
    """(positions per thread, programs per plane) of a one-axis backward kernel over ``planes``
    planes of (rows, length, inner)."""
    def tiles(k):
        return _cdiv(rows * _cdiv(length, k) * inner, _BLOCK_BACKWARD)

    steps = _per_thread_filling(length, _LOOP_STEPS, lambda k: planes * tiles(k), device)
    return steps, tiles(steps)


def _tiles(shape, dim: int, device: torch.device) -> tuple[int, int]:
    """(positions per thread, programs per plane) of :func:`_backward` of an input of ``shape``."""
    planes, rows, _, half, inner = _geometry(shape, dim)
    return _steps_backward(planes, rows, half, inner, device)


def _backward(x: Tensor, dim: int, groups: int, weights, bases, g_out, g_y, mix: _Mix | None, g_costs: Tensor | None, count: int,
              gw: Tensor, row0: int, tiling: tuple[int, int], gamma_sums: bool):  # fmt: skip
    """Backward of :func:`_forward`: (gx, per-program sums of g_y * band (rows, 2 groups C) or None).

    ``g_out`` (the stacked bands' gradient) or, when it is None, ``coef * g_y`` per band (``mix``). The
    weights' gradient sums go to rows ``row0 ..`` of ``gw`` (rows, 12 C: :func:`_store_sums`), which
    every lift of the layer shares (one reduction after the last); ``tiling``: :func:`_tiles` of x,
    whose programs write one row each; ``g_costs``: the gradient of the layer's (cost_u, cost_p), or None.
    """
    planes, rows, length, half, inner = _geometry(x, dim)
    steps, tiles = tiling
    nprog = planes * tiles  # _lift_backward_kernel: a program per group's plane
    tl_acc, acc = _acc(x)
    gx = torch.empty_like(x)  # (x is contiguous)
    c = x.shape[1]
    gg = torch.empty((planes // (groups * c) * tiles, 2 * groups * c), dtype=acc, device=x.device) if gamma_sums else None
    args = (x, g_y if g_out is None else g_out, x if g_y is None else g_y, x if mix is None else mix.gamma, gx, gw,
            gw if gg is None else gg, *weights, gw if g_costs is None else g_costs, x.shape[1], planes // groups, rows, length,
            half, inner)  # fmt: skip
    modes = dict(G=groups, BASE_P=bases[0], BASE_U=bases[1], FROM_GY=g_out is None, GAMMA=gamma_sums, ACC=tl_acc,
                 BLOCK=_BLOCK_BACKWARD, UNROLL=_UNROLL_STEPS, OUT=0 if mix is None else mix.out, KC=g_costs is not None)  # fmt: skip
    with _on(x):
        launch(_lift_backward_kernel, nprog, *args, count, row0, steps, **modes)
    return gx, gg


def _grad_sums(gw: Tensor, params, gg: Tensor | None = None, gamma: Tensor | None = None, off_g: int = 0):
    """(the 8 weights' gradients, None for a missing bias; gamma's or None) from the backward
    kernels' per-program sums: gw (rows, 12 C) (:func:`_store_sums`) and, for gamma, the columns
    ``off_g ..`` of gg (rows, ...), in one launch (:func:`_grad_sums_kernel`) that writes each
    gradient into a tensor of its own (an operator's returns may not alias one another) in its
    parameter's shape and dtype: not a column sum, a copy and eight conversions."""
    c = gw.shape[1] // _N_GRADS
    # (empty_like parses its arguments in a third of torch.empty(shape, dtype=, device=)'s time)
    contiguous = torch.contiguous_format
    outs = [gw.new_empty(3 * c if i % 4 == 0 else c) if p is None  # (not returned)
            else torch.empty_like(p, memory_format=contiguous) for i, p in enumerate(params)]  # fmt: skip
    g_gamma = None if gg is None else torch.empty_like(gamma, memory_format=contiguous)
    n_w = _cdiv(_N_GRADS * c, _SUMS_COLUMNS)
    n_g = 0 if gg is None else gamma.numel()
    with _on(gw):
        launch(
            _grad_sums_kernel, n_w + _cdiv(n_g, _SUMS_COLUMNS),
            gw, gw if gg is None else gg, *outs, gw if g_gamma is None else g_gamma, gw.shape[0], 0 if gg is None else gg.shape[0], c,
            0 if gg is None else gg.shape[1], off_g, n_g,
            GAMMA=gg is not None, ACC=_acc(gw)[0], BLOCK_R=_SUMS_ROWS, BLOCK_C=_SUMS_COLUMNS,
        )  # fmt: skip
    return [None if p is None else g for p, g in zip(params, outs)], g_gamma


_LAYOUT = {"bands": 0, "polyphase": 1, "approximation": 2}  # _down2_forward_kernel's LAYOUT


def _down2_forward(x: Tensor, weights, bases, mix: _Mix, with_costs: bool, layout: str = "bands", pool=None):
    """A 2-D down pool of a (N, C, H, W) tensor in one launch: (y or None, the bands or None, costs
    or None). ``layout``: "bands" (4, N, C, Jh, Jw) and y; "polyphase" the bands at their
    polyphase places (N, C, 2 Jh, 2 Jw), no y; "approximation" y alone. ``pool``: (kernel_size,
    padding) of a stride-1 max pool the kernel applies to x first (:func:`max_down_usable`)."""
    n, c, xh, xw = x.shape
    (kh, kw), (ph, pw) = pool if pool is not None else ((0, 0), (0, 0))
    h, w = xh + 2 * ph - max(kh - 1, 0), xw + 2 * pw - max(kw - 1, 0)  # the lifted planes: the pool's output
    jh, jw = (h + 1) // 2, (w + 1) // 2
    out = {"bands": (4 * n, c, jh, jw), "polyphase": (n, c, 2 * jh, 2 * jw)}.get(layout)
    out = None if out is None else x.new_empty(out)
    y = None if layout == "polyphase" else x.new_empty((n, c, jh, jw))
    rows, nprog = _down2_tiling(n * c, jh, jw, x.device)
    tl_acc, acc = _acc(x)
    sums = torch.empty((nprog, 2), dtype=acc, device=x.device) if with_costs else None
    some = y if out is None else out  # stands in for the pointers a variant does not use
    counts = (n * c * h * jw, n * c * jh * jw)  # per element of one 1-D lift's s, as the lift-by-lift path counts
    with _on(x):
        launch(
            _down2_forward_kernel, nprog,
            x, some, some if y is None else y, mix.gamma, some if sums is None else sums, *weights, c, h, w, jh, jw, rows, *counts,
            xh, xw, BASE_P=bases[0], BASE_U=bases[1], COMBINE=y is not None, COSTS=with_costs, ACC=tl_acc,
            BLOCK=_BLOCK_FUSED, LAYOUT=_LAYOUT[layout], UNROLL=_UNROLL_ROWS, OUT=mix.out, KH=kh, PH=ph, KW=kw, PW=pw,
        )  # fmt: skip
    return y, (out.view((4, n, c, jh, jw)) if layout == "bands" else out), (None if sums is None else sums.sum(0))


@functools.lru_cache(maxsize=1024)
def _down2_tiling(planes: int, jh: int, jw: int, device: torch.device) -> tuple[int, int]:
    """(rows per thread, programs) of :func:`_down2_forward` over ``planes`` planes of (Jh, Jw) outputs."""

    def programs(k):  # two columns of k rows per thread
        return planes * _cdiv(_cdiv(jh, k) * _cdiv(jw, 2), _BLOCK_FUSED)

    rows = _per_thread_filling(jh, _ROWS, programs, device)
    return rows, programs(rows)


def _fused_2d(x: Tensor, axes) -> bool:
    """Whether a layer over ``axes`` of ``x`` runs the one-launch 2-D kernels: a 2-D layer over (H, W)."""
    return x.dim() == 4 and [int(a) for a in axes] == [-2, -1] and _FUSED_2D


def bands_usable(x: Tensor, axes) -> bool:
    """Whether :func:`down_forward_bands` writes the layout in the one-launch kernel."""
    return _fused_2d(x, axes)


def down_forward_bands(x: Tensor, predict, update, axes, layout: str, with_costs: bool, pool=None):
    """``liftswap::lift_down_pool_bands`` in one launch: ``"polyphase"`` writes each band at its
    polyphase place (N, C, 2 Jh, 2 Jw), ``"approximation"`` writes y (LL) and no band;
    ``(out, costs (2,), or (0,) without with_costs)``. ``pool``: as :func:`down_forward`'s."""
    params, bases = _operators(predict, update)
    x = x.contiguous()
    y, bands, costs = _down2_forward(x, _flat(params, x), bases, _Mix.of("LL", None, x), with_costs, layout, pool)
    return (bands if layout == "polyphase" else y), (reference.empty_costs(x) if costs is None else costs)


def _down_forward(x: Tensor, axes, output: str, with_costs: bool, bases, gamma, params, with_details: bool = True,
                  pool=None):  # fmt: skip
    """The down pool's forward through the kernels: (y, bands (nb, N, C, ...), the two costs or
    None). Without ``with_details`` the one-launch 2-D kernel writes y alone (bands None).
    ``pool``: a stride-1 max pool the 2-D kernel applies first (:func:`max_down_usable`)."""
    x = x.contiguous()
    n = x.shape[0]
    weights = _flat(params, x)
    order = list(reversed(axes))
    mix = _Mix.of(output, gamma, x)
    if _fused_2d(x, axes):
        y, bands, costs = _down2_forward(x, weights, bases, mix, with_costs, "bands" if with_details else "approximation", pool)
        return y, bands, costs
    bands, costs = x, None
    for i, dim in enumerate(order):
        last = i == len(order) - 1
        groups = bands.shape[0] // n if last else 1
        bands, y, sums = _forward(bands, dim, groups, weights, bases, mix if last else None, with_costs)
        if with_costs:
            lift_costs = sums.sum(0) / (bands.numel() // bands.shape[0] * n)  # per element of one 1D lift's s
            costs = lift_costs if costs is None else costs + lift_costs
    bands = bands.view((-1, n) + tuple(bands.shape[1:]))
    return y, bands, costs


def _down_backward(x, axes, output: str, bases, gamma, params, g_y, g_details, g_costs, want_gamma: bool):
    """Backward of :func:`_down_forward`: (grad of x, per-program sums of g_y * band (rows, nb C;
    gamma's gradient is columns C ..) or None, per-program weight-gradient sums (rows, 12 C)).

    Re-lifts all but the last axis; the last lift takes y's gradient itself when the details get none.
    """
    n = x.shape[0]
    x = x.contiguous()
    weights = _flat(params, x)
    order = list(reversed(axes))
    inputs, shapes = [x], [list(x.shape)]  # each lift's input
    for dim in order[:-1]:
        inputs.append(_forward(inputs[-1], dim, 1, weights, bases, None, False)[0])
        shapes.append(_forward_shape(shapes[-1], dim))
        shapes[-1][0] *= 2
    acc = _acc(x)[1]
    g_costs = None if g_costs is None else g_costs.contiguous()
    groups = shapes[-1][0] // n
    mix = _Mix.of(output, gamma, x)
    if g_y is None:
        g_y = x.new_zeros((n,) + tuple(_forward_shape(shapes[-1], order[-1])[1:]))
    g_y = g_y.contiguous()
    grad = None
    if g_details is not None:  # the bands' gradient as PyTorch ops: coef * g_y, plus the details' own
        coef = coefficients(output, gamma, 2 * groups, x, acc)
        grad = (coef.view(coef.shape + (1,) * (g_y.dim() - 2)).unsqueeze(1) * g_y).to(x.dtype)
        grad[1:] += g_details.movedim(1, 0)
        grad = grad.flatten(0, 1)
    g_gamma_sums = None
    lift_groups = [groups if i == len(order) - 1 else 1 for i in range(len(order))]
    tiling = [_tiles(shapes[i], order[i], x.device) for i in range(len(order))]
    rows = [shapes[i][0] * tiling[i][1] for i in range(len(order))]  # a row of sums per program
    gw = torch.empty((sum(rows), _N_GRADS * x.shape[1]), dtype=acc, device=x.device)
    for i in reversed(range(len(order))):
        last = i == len(order) - 1
        count = math.prod(_forward_shape(shapes[i], order[i])[1:]) * n  # elements of one 1D lift's s
        grad, g_sums = _backward(
            inputs[i], order[i], lift_groups[i], weights, bases, grad, g_y if last else None,
            mix if last else None, g_costs, count, gw, sum(rows[:i]), tiling[i], last and want_gamma,
        )  # fmt: skip
        if g_sums is not None:
            g_gamma_sums = g_sums
    return grad, g_gamma_sums, gw


class _UpBands(NamedTuple):
    """A 2-D up pool's stacked bands (4 N, C, Jh, Jw: the approximation, LH, HL, HH) as the
    inverse lift kernels read them in place (:func:`_sources`): y, the details (N, 3, C, Jh, Jw;
    :func:`_detail_planes`) and the weights of the approximation's detail term (``mix``; "LL"
    has no term), not copied into one buffer."""

    y: Tensor
    details: Tensor
    mix: _Mix

    @property
    def shape(self) -> tuple[int, ...]:
        n, c, jh, jw = self.y.shape
        return (4 * n, c, jh, jw)


def _unlift_sources(bands):
    """(s, d, mix, (NC, DN, DB), UP, s's shape) of stacked bands or :class:`_UpBands`, as the
    inverse lift kernels take them (:func:`_sources`)."""
    if isinstance(bands, _UpBands):
        n, c, jh, jw = bands.y.shape
        up = 1 + (bands.mix.out != _OUT["LL"])  # (2: the approximation has a detail term)
        return bands.y, bands.details, bands.mix, (n * c, *_planes_apart(bands.details)), up, (2 * n, c, jh, jw)
    half = bands.shape[0] // 2
    s, d = bands[:half], bands[half:]
    return s, d, _Mix(s, 0), (1, 0, 0), 0, tuple(s.shape)  # (the mix and the planes: not read)


def _unlift(bands, dim: int, weights, bases) -> Tensor:
    """The inverse lift: ``bands`` stacks s then d along the batch (or is :class:`_UpBands`); the
    output has twice their length along ``dim``."""
    s, d, mix, planes_apart, up, s_shape = _unlift_sources(bands)
    planes, rows, length, _, inner = _geometry(s_shape, dim)
    shape = list(s_shape)
    shape[dim % len(shape)] = 2 * length
    x = s.new_empty(shape)
    with _on(s):
        steps = _per_thread(length, _STEPS)
        launch(
            _unlift_forward_kernel, planes * _cdiv(rows * _cdiv(length, steps) * inner, _BLOCK),
            s, d, mix.gamma, x, *weights, s_shape[1], rows, length, inner, *planes_apart,
            BASE_P=bases[0], BASE_U=bases[1], BLOCK=_BLOCK, STEPS=steps, UP=up, OUT=mix.out,
        )  # fmt: skip
    return x


def _unlift_tiles(bands_shape, dim: int, device: torch.device) -> tuple[int, int]:
    """(positions per thread, programs per plane) of :func:`_unlift_backward` of stacked bands of ``bands_shape``."""
    planes, rows, length, _, inner = _geometry(bands_shape, dim)
    return _steps_backward(planes // 2, rows, length, inner, device)


def _unlift_backward(bands, dim: int, weights, bases, g_x: Tensor, gw: Tensor, row0: int,
                     tiling: tuple[int, int], gg: Tensor | None = None) -> Tensor:  # fmt: skip
    """Backward of :func:`_unlift`: the gradient of the stacked bands; the weights' gradient sums
    go to rows ``row0 ..`` of ``gw`` (rows, 12 C: :func:`_store_sums`), shared by every inverse lift of
    the layer (one reduction after the last); ``tiling``: :func:`_unlift_tiles` of the bands. With
    ``gg`` (:class:`_UpBands` of a gated up pool only; (N tiles, 3 C)) the approximation's
    programs also write minus their sums of t_b g_s there (gamma's gradient is their column sum)."""
    s, d, mix, planes_apart, up, s_shape = _unlift_sources(bands)
    planes, rows, length, _, inner = _geometry(s_shape, dim)
    steps, tiles = tiling
    g = s.new_empty(bands.shape)
    half = s_shape[0]
    with _on(s):
        launch(
            _unlift_backward_kernel, planes * tiles,
            s, d, mix.gamma, g_x, g[:half], g[half:], gw, gw if gg is None else gg, *weights, s_shape[1], rows, length, inner,
            *planes_apart, row0, steps,
            BASE_P=bases[0], BASE_U=bases[1], BLOCK=_BLOCK_BACKWARD, UP=up, UNROLL=_UNROLL_STEPS, OUT=mix.out, GAMMA=gg is not None,
        )  # fmt: skip
    return g


def max_down_usable(x: Tensor, axes, kernel_size, padding, dilation, *weights: Tensor | None) -> bool:
    """Whether the 2-D down pool's kernel serves the down pool of x's stride-1 max pool itself
    (``pool`` of :func:`down_forward`): a 2-D layer, windows of 2 or 3 taps per axis, dilation 1
    (windows past the edge then hold the edge, which clamped loads read)."""
    return max_window_usable(x, axes, kernel_size, padding, dilation) and usable(x, *weights)


def max_window_usable(x: Tensor, axes, kernel_size, padding, dilation) -> bool:
    """:func:`max_down_usable` for tensors :func:`usable` serves."""
    return _MAX_INSIDE and _fused_2d(x, axes) and _window_served(tuple(kernel_size), tuple(padding), tuple(dilation))


@functools.lru_cache(maxsize=64)
def _window_served(kernel_size: tuple, padding: tuple, dilation: tuple) -> bool:
    return (
        len(kernel_size) == 2 and all(k in (2, 3) for k in kernel_size)
        and all(0 <= p <= k // 2 for k, p in zip(kernel_size, padding)) and all(d == 1 for d in dilation)
    )  # fmt: skip


def max_pool_usable(x: Tensor, kernel_size) -> bool:
    """Whether the max-pool kernels serve ``x``: a 2-D pool of a CUDA (or, under :func:`on_cpu`, CPU) tensor."""
    return x.dim() == 4 and len(kernel_size) == 2 and usable(x)


def max_pool_forward(x: Tensor, kernel_size, padding, dilation, winners: bool = True) -> tuple[Tensor, Tensor]:
    """``(max_pool2d(x, kernel_size, 1, padding, dilation), winning tap per output (uint8))``: one
    launch. Without ``winners`` (no backward to come) the taps are neither found nor written:
    an empty tensor."""
    x = x.contiguous()
    (kh, kw), (ph, pw), (dh, dw) = kernel_size, padding, dilation
    n, c, h, w = x.shape
    oh, ow = h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)
    out = x.new_empty((n, c, oh, ow))
    code = torch.empty((n, c, oh, ow) if winners else (0,), dtype=torch.uint8, device=x.device)
    with _on(x):
        rows = _max_pool_rows(kh, dh, oh)
        launch(
            _max_pool_forward_kernel, n * c * _cdiv(_cdiv(oh, rows) * ow, _BLOCK),
            x, out, code, h, w, oh, ow, KH=kh, KW=kw, PH=ph, PW=pw, DH=dh, DW=dw, CODES=winners, BLOCK=_BLOCK, ROWS=rows
        )
    return out, code


def _max_pool_rows(kh: int, dh: int, rows: int) -> int:
    """Rows per thread of the max-pool kernels over ``rows`` rows: up to _POOL_ROWS for 3-row windows
    of dilation 1 (their sliding window), else 1."""
    return _per_thread(rows, _POOL_ROWS) if kh == 3 and dh == 1 else 1


def max_pool_backward(g: Tensor, code: Tensor, size, kernel_size, padding, dilation) -> Tensor:
    """The input gradient of :func:`max_pool_forward` from the winning taps: one launch."""
    g = g.contiguous()
    (kh, kw), (ph, pw), (dh, dw) = kernel_size, padding, dilation
    n, c, h, w = (int(v) for v in size)
    gx = g.new_empty((n, c, h, w))
    with _on(g):
        rows = _max_pool_rows(kh, dh, h)
        launch(
            _max_pool_backward_kernel, n * c * _cdiv(_cdiv(h, rows) * w, _BLOCK),
            g, code, gx, h, w, g.shape[2], g.shape[3], KH=kh, KW=kw, PH=ph, PW=pw, DH=dh, DW=dw, BLOCK=_BLOCK, ROWS=rows
        )
    return gx


def _up2_forward(y: Tensor, details: Tensor, output: str, bases, gamma, weights) -> Tensor:
    """A 2-D up pool of (N, C, Jh, Jw) bands in one launch: the (N, C, 2 Jh, 2 Jw) output."""
    n, c, jh, jw = y.shape
    mix = _Mix.of(output, gamma, y)
    x = y.new_empty((n, c, 2 * jh, 2 * jw))
    steps, nprog = _up2_tiling(n * c, jh, jw, y.device)
    with _on(y):
        launch(
            _up2_forward_kernel, nprog,
            y, details, mix.gamma, x, *weights, c, *_planes_apart(details), jh, jw, steps,
            DETAIL_TERM=output != "LL", BASE_P=bases[0], BASE_U=bases[1], BLOCK=_BLOCK_FUSED, UNROLL=_UNROLL_ROWS,
            OUT=mix.out,
        )  # fmt: skip
    return x


def _detail_planes(details: Tensor) -> Tensor:
    """Details (N, 3, C, Jh, Jw) as :func:`_up2_forward` reads them: each channel's plane
    contiguous and C planes in a row, N and the bands any whole number of planes apart (a down
    pool's details, a band-major view of its band buffer, are read in place), else a copy."""
    size = details.shape[3] * details.shape[4]
    st = details.stride()
    if st[4] == 1 and st[3] == details.shape[4] and st[2] == size and st[0] % size == 0 and st[1] % size == 0:
        return details
    return details.contiguous()


def _planes_apart(details: Tensor) -> tuple[int, int]:
    """(DN, DB): how many planes apart :func:`_detail_planes`' details are along N and the bands."""
    size = details.shape[3] * details.shape[4]
    return details.stride(0) // size, details.stride(1) // size


@functools.lru_cache(maxsize=1024)
def _up2_tiling(planes: int, jh: int, jw: int, device: torch.device) -> tuple[int, int]:
    """(positions of a row per thread, programs) of :func:`_up2_forward` over ``planes`` planes of (Jh, Jw) inputs."""

    def programs(k):
        return planes * _cdiv(jh * _cdiv(jw, k), _BLOCK_FUSED)

    steps = _per_thread_filling(jw, _LOOP_STEPS, programs, device)
    return steps, programs(steps)


def _up_forward(y, details, axes, output: str, bases, gamma, params) -> Tensor:
    """The up pool's forward through the kernels: the even-size output, before cropping."""
    weights = _flat(params, y)
    if _fused_2d(y, axes):
        return _up2_forward(y.contiguous(), _detail_planes(details), output, bases, gamma, weights)
    bands = up_bands(y.contiguous(), details, output, gamma).flatten(0, 1)
    for dim in axes:
        bands = _unlift(bands, dim, weights, bases)
    return bands


def _up_backward(y, details, axes, output: str, bases, gamma, params, g_x, want_gamma: bool):
    """Backward of :func:`_up_forward`: (grad of y, grad of details, grad of gamma or None, the
    8 weights' grads), gamma's and the weights' from the kernels' per-program sums in one launch."""
    weights = _flat(params, y)
    fused = _fused_2d(y, axes)
    if fused:  # the H inverse reads y and the details in place
        inputs = [_UpBands(y.contiguous(), _detail_planes(details), _Mix.of(output, gamma, y))]
    else:
        inputs = [up_bands(y.contiguous(), details, output, gamma).flatten(0, 1)]
    for dim in axes[:-1]:
        inputs.append(_unlift(inputs[-1], dim, weights, bases))
    tiling = [_unlift_tiles(inputs[i].shape, axes[i], y.device) for i in range(len(axes))]
    rows = [inputs[i].shape[0] // 2 * tiling[i][1] for i in range(len(axes))]  # s's planes x tiles: a row of sums per program
    acc = _acc(y)[1]
    gw = torch.empty((sum(rows), _N_GRADS * y.shape[1]), dtype=acc, device=y.device)
    # a fused gated up pool's H inverse backward sums gamma's gradient itself (a row per (n, tile))
    gg = torch.empty((y.shape[0] * tiling[0][1], 3 * y.shape[1]), dtype=acc, device=y.device) if fused and want_gamma else None
    grad = g_x.contiguous()
    for i in reversed(range(len(axes))):
        grad = _unlift_backward(inputs[i], axes[i], weights, bases, grad, gw, sum(rows[:i]), tiling[i], gg if i == 0 else None)
    g_bands = grad.view((-1,) + tuple(y.shape))  # (nb, N, C, ...)
    g_y, g_details, g_gamma = up_bands_backward(g_bands, details.movedim(1, 0), output, gamma, want_gamma and gg is None)
    g_weights, gg_gamma = _grad_sums(gw, params, gg, gamma)
    if g_gamma is None:
        g_gamma = gg_gamma
    elif g_gamma.dtype != gamma.dtype:
        g_gamma = g_gamma.to(gamma.dtype)
    return g_y, g_details, g_gamma, g_weights


def _forward_shape(x: Tensor | list[int], dim: int) -> list[int]:
    """The shape of one band of a lift of ``x`` (or of a tensor of that shape) along ``dim``."""
    shape = list(x.shape if isinstance(x, Tensor) else x)
    shape[dim % len(shape)] = (shape[dim % len(shape)] + 1) // 2
    return shape


def _operators(predict, update) -> tuple[tuple[Tensor | None, ...], tuple[float, float]]:
    """P's then U's tensors (dw weight, dw bias, pw weight, pw bias), as the kernels take them, and their bases."""
    params = (predict.dw_weight, predict.dw_bias, predict.pw_weight, predict.pw_bias)
    params += (update.dw_weight, update.dw_bias, update.pw_weight, update.pw_bias)
    return params, (float(predict.base), float(update.base))


def down_forward(x: Tensor, predict, update, axes, output: str, gamma: Tensor | None, with_costs: bool,
                 with_details: bool = True, pool=None):  # fmt: skip
    """The down pool's forward: ``(y, details (N, nd, C, *pooled), costs (2,), or (0,) without with_costs)``.

    One kernel for a 2-D layer (without ``with_details`` it writes y alone and details has no
    band); else one per lift, the last also combining the bands into y and summing the costs.
    ``pool`` = (kernel_size, padding): the down pool of ``max_pool2d(x, kernel_size, 1, padding)``,
    the pool computed inside the 2-D kernel, never written (:func:`max_down_usable` says where).
    """
    params, bases = _operators(predict, update)
    gamma = gamma if output == "gated" else None
    y, bands, costs = _down_forward(x, axes, output, with_costs, bases, gamma, params, with_details, pool)
    details = y.new_empty((y.shape[0], 0) + tuple(y.shape[1:])) if bands is None else bands[1:].movedim(0, 1)
    return y, details, (reference.empty_costs(x) if costs is None else costs)


def down_backward(x: Tensor, predict, update, axes, output: str, gamma: Tensor | None, g_y: Tensor | None,
                  g_details: Tensor | None, g_costs: Tensor | None, want_gamma: bool):  # fmt: skip
    """Backward of :func:`down_forward`: ``(grad of x, grad of gamma or None, the 8 weights' grads)``.

    One kernel per lift backward (the last takes y's and the costs' gradients itself), after
    re-lifting all but the last axis.
    """
    params, bases = _operators(predict, update)
    gamma = gamma if output == "gated" else None
    grad, g_gamma_sums, sums = _down_backward(x, axes, output, bases, gamma, params, g_y, g_details, g_costs, want_gamma)
    g_weights, g_gamma = _grad_sums(sums, params, g_gamma_sums, gamma, x.shape[1])  # (band 0's column sums: y's own)
    return grad, g_gamma, g_weights


def up_forward(y: Tensor, details: Tensor, predict, update, axes, output: str, gamma: Tensor | None) -> Tensor:
    """The up pool's forward, before cropping: one kernel per inverse lift."""
    params, bases = _operators(predict, update)
    return _up_forward(y, details, axes, output, bases, gamma if output == "gated" else None, params)


def up_backward(y: Tensor, details: Tensor, predict, update, axes, output: str, gamma: Tensor | None, g_x: Tensor,
                want_gamma: bool):  # fmt: skip
    """Backward of :func:`up_forward`: ``(grad of y, grad of details, grad of gamma or None, the 8 weights' grads)``."""
    params, bases = _operators(predict, update)
    gamma = gamma if output == "gated" else None
    return _up_backward(y, details, axes, output, bases, gamma, params, g_x, want_gamma)
