"""The liftswap operators: one ``torch.library`` schema per layer family, one implementation per device.

=====================================  =======================================================
``liftswap::lift_down_pool``           x -> (y, details, costs): every LiftDownPool layer
``liftswap::lift_down_pool_bands``     x -> (bands laid out for a lifted convolution, costs)
                                       (both: of x's stride-1 max pool given its ``max_window``)
``liftswap::lift_up_pool``             (y, details) -> x (even sizes): every LiftUpPool layer
``liftswap::max_pool_stride1``         the stride-1 max pool of ``preserve`` conversions
=====================================  =======================================================

Each has a fake (shape) rule, an autograd rule that saves only the inputs and weights (its
backward is one more operator, ``*_backward``, which recomputes the forward), and kernels
registered per device: CPU runs the fused C++ kernel (:mod:`.cpu`), CUDA the Triton kernels
(:mod:`.cuda`), and every other device, dtype or size those do not serve runs the PyTorch
reference (:mod:`.reference`), forward and backward (on CUDA, with kernel sizes other than 3,
its residuals as Triton kernels: :mod:`.cuda_residual`). torch.compile keeps each operator whole,
so compiled models run the same kernels. CPU autocast runs the operators in float32 (the kernel's
precision); CUDA autocast hands the Triton kernels half-precision inputs as they are.

:func:`down_pool`, :func:`up_pool` and :func:`max_pool_stride1` are the entry points the layers
call. They call the operators, except where a graph is being recorded for use without liftswap
(torch.export, torch.jit.trace: the reference's standard ops are recorded) or where autograd
must see every op (functorch transforms, forward-mode AD, tensor subclasses: the reference
runs op by op). Inside :func:`liftswap.export_onnx` the operators are recorded, and
:mod:`.onnx` writes their ONNX graphs.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._compat import is_exporting
from . import cpu, cuda, cuda_residual, reference
from .onnx import onnx_exporting
from .reference import OperatorWeights

__all__ = ["down_pool", "down_pool_bands", "up_pool", "max_pool_stride1", "OperatorWeights"]

# The arguments both pool operators take after their tensor inputs: the layer's P, U and gamma.
_ARGS = (
    "Tensor p_dw, Tensor? p_dw_b, Tensor p_pw, Tensor? p_pw_b, Tensor u_dw, Tensor? u_dw_b, Tensor u_pw, "
    "Tensor? u_pw_b, Tensor? gamma, int[] axes, str output, float p_base, float u_base"
)
_N_ARGS = 13
_N_TENSORS = 9  # the 8 weights and gamma


class Args(NamedTuple):
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

    @staticmethod
    def of(predict: OperatorWeights, update: OperatorWeights, gamma: Tensor | None, axes, output: str) -> "Args":
        return Args(predict.dw_weight, predict.dw_bias, predict.pw_weight, predict.pw_bias,
                    update.dw_weight, update.dw_bias, update.pw_weight, update.pw_bias,
                    gamma if output == "gated" else None, [int(a) for a in axes], output,
                    float(predict.base), float(update.base))  # fmt: skip

    def predict(self) -> OperatorWeights:
        return OperatorWeights(self.p_base, self.p_dw, self.p_dw_b, _flat_pw(self.p_pw), self.p_pw_b)

    def update(self) -> OperatorWeights:
        return OperatorWeights(self.u_base, self.u_dw, self.u_dw_b, _flat_pw(self.u_pw), self.u_pw_b)

    def tensors(self) -> tuple:
        return tuple(self)[:_N_TENSORS]


def _flat_pw(pw: Tensor) -> Tensor:
    """A pointwise weight as (C,): the layers pass it so (a view that changes nothing costs ~1 us)."""
    return pw if pw.dim() == 1 else pw.reshape(-1)


def _backend(x: Tensor, a: Args, *backends):
    """The first of ``backends`` that serves ``x`` with these weights, or None (the reference)."""
    for backend in backends:
        if backend.usable(x, *a.tensors()):
            return backend
    return None


def _pooled_shape(shape, axes) -> list[int]:
    shape = list(shape)
    for dim in axes:
        shape[dim] = (shape[dim] + 1) // 2
    return shape


def _grads_out(tensors: Sequence[Tensor | None], grads: Sequence[Tensor | None], needs: Sequence[bool], like: Tensor,
               fresh: bool = False) -> list[Tensor]:  # fmt: skip
    """A backward operator's returns: each needed gradient (zeros where the input had no
    effect), an empty tensor for the others. ``fresh``: the gradients are new contiguous
    tensors, none a view of another (the kernels'): nothing to check."""
    out, storages = [], None if fresh else {t.untyped_storage().data_ptr() for t in tensors if t is not None}
    for t, g, need in zip(tensors, grads, needs):
        if not need or t is None:
            out.append(like.new_empty(0))
            continue
        if g is None:
            g = torch.zeros_like(t)
        elif not fresh:
            g = g.contiguous()  # the fake rule says contiguous
            if g.untyped_storage().data_ptr() in storages:  # views of one buffer: an operator's returns may not alias
                g = g.clone()
            storages.add(g.untyped_storage().data_ptr())
        out.append(g)
    return out


def _grads_in(grads: Sequence[Tensor], tensors: Sequence[Tensor | None], needs: Sequence[bool]) -> list[Tensor | None]:
    """Inverse of :func:`_grads_out`, for autograd: None where no gradient was made."""
    return [g if need and t is not None else None for g, t, need in zip(grads, tensors, needs)]


def _reference_grads(fn, tensors: Sequence[Tensor | None], needs: Sequence[bool], outs_grads,
                     create_graph: bool = False) -> list[Tensor | None]:  # fmt: skip
    """Gradients of ``fn(*tensors)`` by autograd over the reference ops, recomputed here.

    Computed in the promoted dtype of the tensors: under CUDA autocast a half-precision input
    meets float32 weights, and the backward runs outside autocast. ``create_graph``: for a
    backward with ``create_graph=True`` (gradient penalties, meta-learning), gradients that are
    differentiable in turn, of ``tensors`` themselves (the saved inputs: autograd records the
    recomputation too); the kernels' backward has no derivative of its own.
    """
    dtype = tensors[0].dtype
    for t in tensors:
        if t is not None and t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    leaves, inside = tensors, contextlib.nullcontext()
    if not create_graph:  # leaves of their own, recorded inside the operator's kernel
        leaves = [None if t is None else t.detach().requires_grad_(need) for t, need in zip(tensors, needs)]
        inside = _autograd_inside_operator()
    wanted = [t for t, need in zip(leaves, needs) if need and t is not None]
    with inside, torch.enable_grad():
        outs = fn(*[None if t is None else t.to(dtype) for t in leaves])
        pairs = [(o, g) for o, g in zip(outs, outs_grads) if g is not None and o is not None and o.requires_grad]
        if not pairs or not wanted:
            return [None] * len(tensors)
        got = torch.autograd.grad([o for o, _ in pairs], wanted, [g.to(o.dtype) for o, g in pairs], create_graph=create_graph,
                                  allow_unused=True)  # fmt: skip
    got = iter(got)
    return [next(got) if need and t is not None else None for t, need in zip(leaves, needs)]


@contextlib.contextmanager
def _autograd_inside_operator():
    """Autograd recording inside an operator's kernel, which the dispatcher runs with autograd
    excluded: the reference backward recomputes the forward and differentiates it."""
    key = torch._C.DispatchKey.AutogradFunctionality
    before = torch._C._dispatch_tls_is_dispatch_key_excluded(key)
    torch._C._dispatch_tls_set_dispatch_key_excluded(key, False)
    try:
        yield
    finally:
        torch._C._dispatch_tls_set_dispatch_key_excluded(key, before)


# --- liftswap::lift_down_pool ------------------------------------------------------------------


def _residual(x: Tensor, a: Args, twice: bool = False):
    """What computes the reference's residuals on x's device: on CUDA one Triton kernel each way
    for any kernel size (:mod:`.cuda_residual`), else None (the PyTorch ops). ``twice``: the
    PyTorch ops, differentiable twice (the Triton kernel's backward is not)."""
    return cuda_residual.residual if not twice and cuda_residual.usable(x, *a.tensors()) else None


def _down_reference(x: Tensor, a: Args, with_costs: bool, twice: bool = False):
    y, details, c_u, c_p = reference.down_pool(x, a.predict(), a.update(), a.axes, a.output, a.gamma, with_costs,
                                               residual=_residual(x, a, twice))  # fmt: skip
    costs = torch.stack((c_u, c_p)) if with_costs else reference.empty_costs(x)
    # x's dtype, as the fake rule says (under autocast the convolutions ran in lower precision)
    y, details = y.to(x.dtype), details.to(x.dtype)
    return (y.clone() if a.output == "LL" else y), details, costs  # y may not alias the details


def _down_impl(*backends):
    def impl(x: Tensor, *args):
        a, with_costs, with_details = Args(*args[:_N_ARGS]), args[_N_ARGS], _with_details(args)
        window = _window(args, _N_ARGS + 2)
        backend = _backend(x, a, *backends)
        if window is not None and backend is cuda and cuda.max_window_usable(x, a.axes, *window, (1, 1)):
            return cuda.down_forward(x, a.predict(), a.update(), a.axes, a.output, a.gamma, with_costs, with_details, window)
        if window is not None:  # (not where _max_first puts a window: a fallback)
            x = _max_pool_of(x, window, False)[0]
        if backend is None:
            y, details, costs = _down_reference(x, a, with_costs)
        elif backend is cuda:  # its 2-D kernel then writes y alone
            y, details, costs = cuda.down_forward(x, a.predict(), a.update(), a.axes, a.output, a.gamma, with_costs, with_details)
        else:
            y, details, costs = backend.down_forward(x, a.predict(), a.update(), a.axes, a.output, a.gamma, with_costs)
        if not with_details and details.shape[1]:
            details = _no_details(x, a.axes)
        return y, details, costs

    return impl


def _with_details(args) -> bool:
    """The operator's with_details argument (graphs leave out its default, True)."""
    return args[_N_ARGS + 1] if len(args) > _N_ARGS + 1 else True


def _window_arg_at(args, at: int) -> list:
    """The operator's max_window argument at ``args[at]`` (graphs leave out its default, [])."""
    return list(args[at]) if len(args) > at else []


def _window(args, at: int):
    """The operator's max_window argument at ``args[at]`` as :func:`_parse_window` reads it."""
    return _parse_window(_window_arg_at(args, at))


def _parse_window(flat):
    """A max_window argument as ((kernel sizes), (paddings)) of a 2-D stride-1 max pool, or None."""
    return ((flat[0], flat[1]), (flat[2], flat[3])) if flat else None


def _max_pool_of(x: Tensor, window, winners: bool) -> tuple[Tensor, Tensor]:
    """:func:`max_pool_stride1`'s kernels on x with ``window`` (dilation 1): (the pool, its winning
    taps, or none without ``winners``)."""
    kernels = _MAX_POOL_KERNELS.get(x.device.type, _max_pool_default)
    return kernels(x, list(window[0]), list(window[1]), [1, 1], winners)


def _pool_shape(shape, window) -> list[int]:
    """The shape of the stride-1 max pool of ``window`` of a tensor of ``shape``."""
    return list(shape) if window is None else _stride1_shape(shape, *window, [1] * len(window[0]))


def _no_details(x: Tensor, axes) -> Tensor:
    """The details output of a call without details: (N, 0, C, *pooled)."""
    shape = _pooled_shape(x.shape, axes)
    return x.new_empty([shape[0], 0] + shape[1:])


def _costs_fake(x: Tensor, with_costs: bool) -> Tensor:
    """The costs output: (c_u, c_p), or no element without ``with_costs`` (nothing to launch), in
    :func:`reference.costs_dtype` (float32 for a bfloat16 x: no conversion either way)."""
    return x.new_empty(2, dtype=reference.costs_dtype(x.dtype)) if with_costs else reference.empty_costs(x)


def _down_fake(x: Tensor, *args):
    axes, costs = args[9], _costs_fake(x, args[_N_ARGS])
    shape = _pooled_shape(_pool_shape(x.shape, _window(args, _N_ARGS + 2)), axes)
    if not _with_details(args):
        return x.new_empty(shape), _no_details(x, axes), costs
    bands = x.new_empty([2 ** len(axes)] + shape)  # the details are bands 1.. of one (nb, N, ...) buffer
    return x.new_empty(shape), bands[1:].movedim(0, 1), costs


def _down_backward_impl(*backends):
    def impl(x: Tensor, *args):
        a = Args(*args[:_N_ARGS])
        g_y, g_details, g_costs, needs = args[_N_ARGS : _N_ARGS + 4]
        window = _window(args, _N_ARGS + 4)
        if window is not None:
            return _max_pool_first_backward(x, window, needs, lambda h: impl(h, *args[: _N_ARGS + 4]))
        tensors = (x,) + a.tensors()
        backend = _backend(x, a, *backends)
        if backend is None:
            with_costs = g_costs is not None

            def fn(x, *ts):
                b = a._replace(**dict(zip(Args._fields[:_N_TENSORS], ts)))
                y, details, costs = _down_reference(x, b, with_costs)
                return y, details, costs

            grads = _reference_grads(fn, tensors, needs, (g_y, g_details, g_costs))
        else:
            want_gamma = bool(needs[-1]) and a.output == "gated"
            g_x, g_gamma, g_weights = backend.down_backward(
                x, a.predict(), a.update(), a.axes, a.output, a.gamma, g_y, g_details, g_costs, want_gamma
            )
            # the Triton path's gradients are tensors of their own; the C++ kernel's weights' are views of one
            return _grads_out(tensors, [g_x, *g_weights, g_gamma], needs, x, fresh=backend is cuda)
        return _grads_out(tensors, grads, needs, x)

    return impl


def _max_pool_first_backward(x: Tensor, window, needs, backward) -> list[Tensor]:
    """The gradients of an operator run on x's stride-1 max pool of ``window``: the pool again,
    with its winners where x's gradient is needed, the operator's ``backward`` from it, then the
    pool's (the forward kept x alone)."""
    h, winners = _max_pool_of(x, window, bool(needs[0]))
    grads = backward(h)
    del h
    if needs[0]:
        route = _MAX_POOL_BACKWARD_KERNELS.get(x.device.type, _max_pool_backward_default)
        grads[0] = route(grads[0].contiguous(), winners, list(x.shape), list(window[0]), list(window[1]), [1, 1])
    return grads


def _down_backward_fake(x: Tensor, *args):
    tensors = (x,) + tuple(args[:_N_TENSORS])
    needs = args[_N_ARGS + 3]
    return [t.new_empty(t.shape) if need and t is not None else x.new_empty(0) for t, need in zip(tensors, needs)]


def _down_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (often the details) get no zero-filled gradient
    x, args = inputs[0], inputs[1 : _N_ARGS + 1]
    ctx.save_for_backward(x, *args[:_N_TENSORS])
    ctx.rest = args[_N_TENSORS:]
    ctx.window = _window_arg_at(inputs, _N_ARGS + 3)


def _no_costs(g_costs: Tensor | None) -> Tensor | None:
    """The costs' gradient, None where the forward made none (a tracer's zeros for its (0,) costs)."""
    return None if g_costs is None or g_costs.numel() == 0 else g_costs


def _down_reference_of(rest, with_costs: bool, layout: str | None = None, window=()):
    """fn(x, *weights): the down pool's outputs through the reference's PyTorch ops, the weights
    those saved for backward and ``rest`` the operator's arguments after them; ``layout``: the
    bands operator's outputs; ``window``: its max_window argument."""
    window = _parse_window(window)

    def fn(x, *ts):
        if window is not None:
            x = reference.max_pool_stride1(x, *window, (1, 1))
        a = Args(*ts, *rest[: _N_ARGS - _N_TENSORS])
        y, details, costs = _down_reference(x, a, with_costs, twice=True)
        return (y, details, costs) if layout is None else (reference.lay_out_bands(y, details, a.axes, layout), costs)

    return fn


def _down_grad(ctx, g_y, g_details, g_costs):
    saved = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[: 1 + _N_TENSORS])
    g_costs = _no_costs(g_costs)
    if torch.is_grad_enabled():  # create_graph=True
        fn = _down_reference_of(ctx.rest, g_costs is not None, window=ctx.window)
        grads = _reference_grads(fn, saved, needs, (g_y, g_details, g_costs), True)
        return (*grads, None, None, None, None, None, None, None)
    grads = ctx.backward(*saved, *ctx.rest, g_y, g_details, g_costs, needs, *_trailing_window(ctx.window))
    return (*_grads_in(grads, saved, needs), None, None, None, None, None, None, None)


def _trailing_window(window) -> tuple:
    """The trailing max_window argument of a backward operator's call: none where it is the default."""
    return (window,) if window else ()


# --- liftswap::lift_down_pool_bands -----------------------------------------------------------
# The down pool's bands, unscaled, laid out for what reads them (surgery/convs.py): "polyphase",
# every band in its polyphase place (reference.polyphase), what a stride-2 convolution reads; or
# "approximation", the approximation band alone, what a 1x1 stride-2 convolution reads. The CPU
# kernel writes the first in place, and without costs computes only what the second needs.
_LAYOUTS = ("polyphase", "approximation")


def _bands_impl(*backends):
    def impl(x: Tensor, *args):
        a, layout, with_costs = Args(*args[:_N_ARGS]), args[_N_ARGS], args[_N_ARGS + 1]
        window = _window(args, _N_ARGS + 2)
        backend = _backend(x, a, *backends)
        if window is not None and backend is cuda and cuda.max_window_usable(x, a.axes, *window, (1, 1)):
            return cuda.down_forward_bands(x, a.predict(), a.update(), a.axes, layout, with_costs, window)
        if window is not None:  # (not where _max_first puts a window: a fallback)
            x = _max_pool_of(x, window, False)[0]
        if backend is cpu and (layout == "approximation" or cpu.polyphase_usable(x, a.axes)):
            return cpu.down_forward_bands(x, a.predict(), a.update(), a.axes, layout, with_costs)
        if backend is cuda and cuda.bands_usable(x, a.axes):
            return cuda.down_forward_bands(x, a.predict(), a.update(), a.axes, layout, with_costs)
        y, details, costs = _down_impl(*backends)(x, *args[:_N_ARGS], with_costs)
        return reference.lay_out_bands(y, details, a.axes, layout).contiguous(), costs

    return impl


def _bands_fake(x: Tensor, *args):
    axes, layout, costs = args[9], args[_N_ARGS], _costs_fake(x, args[_N_ARGS + 1])
    shape = _pool_shape(x.shape, _window(args, _N_ARGS + 2))
    if layout == "approximation":
        return x.new_empty(_pooled_shape(shape, axes)), costs
    for dim in axes:
        shape[dim] += shape[dim] % 2
    return x.new_empty(shape), costs


def _bands_backward_impl(*backends):
    def impl(x: Tensor, *args):
        a = Args(*args[:_N_ARGS])
        layout, g_out, g_costs, needs = args[_N_ARGS : _N_ARGS + 4]
        window = _window(args, _N_ARGS + 4)
        if window is not None:
            return _max_pool_first_backward(x, window, needs, lambda h: impl(h, *args[: _N_ARGS + 4]))
        if layout == "polyphase" and _backend(x, a, *backends) is cpu and cpu.polyphase_usable(x, a.axes):
            g_x, _, g_weights = cpu.down_backward_polyphase(x, a.predict(), a.update(), a.axes, g_out, g_costs)
            return _grads_out((x,) + a.tensors(), [g_x, *g_weights, None], needs, x)
        if layout == "approximation" or g_out is None:
            g_y, g_details = g_out, None
        else:
            g_y, g_details = reference.polyphase_split(g_out, a.axes)
        return _down_backward_impl(*backends)(x, *args[:_N_ARGS], g_y, g_details, g_costs, needs)

    return impl


def _bands_setup(ctx, inputs, output):
    _down_setup(ctx, inputs[: _N_ARGS + 1], output)
    ctx.layout = inputs[_N_ARGS + 1]
    ctx.window = _window_arg_at(inputs, _N_ARGS + 3)


def _bands_grad(ctx, g_out, g_costs):
    saved = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[: 1 + _N_TENSORS])
    g_costs = _no_costs(g_costs)
    if torch.is_grad_enabled():  # create_graph=True
        fn = _down_reference_of(ctx.rest, g_costs is not None, ctx.layout, ctx.window)
        return (*_reference_grads(fn, saved, needs, (g_out, g_costs), True), None, None, None, None, None, None, None)
    grads = ctx.backward(*saved, *ctx.rest, ctx.layout, g_out, g_costs, needs, *_trailing_window(ctx.window))
    return (*_grads_in(grads, saved, needs), None, None, None, None, None, None, None)


# --- liftswap::lift_up_pool --------------------------------------------------------------------


def _one_band(details: Tensor) -> Tensor:
    """One band of details (N, nb, C, ...), shaped as y, for a backend's usable() (which bounds a
    channel's plane); details without a band as they are (no backend serves them)."""
    return details[:, 0] if details.dim() > 2 and details.shape[1] > 0 else details


def _up_reference(y: Tensor, details: Tensor, a: Args, twice: bool = False) -> Tensor:
    up = reference.up_pool(y, details, a.predict(), a.update(), a.axes, a.output, a.gamma, residual=_residual(y, a, twice))
    return up.to(y.dtype)


def _up_impl(*backends):
    def impl(y: Tensor, details: Tensor, *args):
        a = Args(*args)
        backend = _backend(y, a, *backends)
        if backend is None or not backend.usable(_one_band(details)):
            return _up_reference(y, details, a)
        return backend.up_forward(y, details, a.predict(), a.update(), a.axes, a.output, a.gamma)

    return impl


def _up_fake(y: Tensor, details: Tensor, *args):
    shape = list(y.shape)
    for dim in args[9]:
        shape[dim] *= 2
    return y.new_empty(shape)


def _up_backward_impl(*backends):
    def impl(y: Tensor, details: Tensor, *args):
        a = Args(*args[:_N_ARGS])
        g_x, needs = args[_N_ARGS:]
        tensors = (y, details) + a.tensors()
        backend = _backend(y, a, *backends)
        if backend is None or not backend.usable(_one_band(details)):

            def fn(y, details, *ts):
                return (_up_reference(y, details, a._replace(**dict(zip(Args._fields[:_N_TENSORS], ts)))),)

            grads = _reference_grads(fn, tensors, needs, (g_x,))
        else:
            want_gamma = bool(needs[-1]) and a.output == "gated"
            g_y, g_details, g_gamma, g_weights = backend.up_backward(
                y, details, a.predict(), a.update(), a.axes, a.output, a.gamma, g_x, want_gamma
            )
            grads = [g_y, g_details, *g_weights, g_gamma]  # (y's and the details' are views of one buffer)
        return _grads_out(tensors, grads, needs, y)

    return impl


def _up_backward_fake(y: Tensor, details: Tensor, *args):
    tensors = (y, details) + tuple(args[:_N_TENSORS])
    needs = args[-1]
    return [t.new_empty(t.shape) if need and t is not None else y.new_empty(0) for t, need in zip(tensors, needs)]


def _up_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[: 2 + _N_TENSORS])
    ctx.rest = inputs[2 + _N_TENSORS :]


def _up_grad(ctx, g_x):
    saved = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[: 2 + _N_TENSORS])
    if torch.is_grad_enabled():  # create_graph=True

        def fn(y, details, *ts):
            return (_up_reference(y, details, Args(*ts, *ctx.rest), twice=True),)

        return (*_reference_grads(fn, saved, needs, (g_x,), True), None, None, None, None)
    grads = ctx.backward(*saved, *ctx.rest, g_x.contiguous(), needs)
    return (*_grads_in(grads, saved, needs), None, None, None, None)


# --- liftswap::max_pool_stride1 ----------------------------------------------------------------

def _max_pool1d(x: Tensor, k, s, p, d) -> Tensor:
    # max_pool1d's export specialises the length (torch 2.14); the 2d op with a unit axis does not.
    return F.max_pool2d(x.unsqueeze(-2), (1, k[0]), (1, s), (0, p[0]), (1, d[0])).squeeze(-2)


_MAX = {1: _max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _max_pool_default(x: Tensor, kernel_size, padding, dilation, winners: bool) -> tuple[Tensor, Tensor]:
    out = _MAX[x.dim() - 2](x, kernel_size, 1, padding, dilation)
    return out, _winners(x, out, kernel_size, padding, dilation, winners)


def _winners(x: Tensor, out: Tensor, kernel_size, padding, dilation, winners: bool) -> Tensor:
    if not winners:  # no backward to come (no grad): nothing to route
        return torch.empty(0, dtype=torch.uint8, device=x.device)
    return reference.max_pool_winners(x, out, kernel_size, padding, dilation)


def _max_pool_cpu(x: Tensor, kernel_size, padding, dilation, winners: bool) -> tuple[Tensor, Tensor]:
    if cpu.max_pool_usable(x, kernel_size):
        return cpu.max_pool_forward(x, kernel_size, padding, dilation, winners)
    if cuda.max_pool_usable(x, kernel_size):  # Triton's interpreter on CPU tensors (tests)
        return cuda.max_pool_forward(x, kernel_size, padding, dilation, winners)
    out = reference.max_pool_stride1(x, kernel_size, padding, dilation)
    return out, _winners(x, out, kernel_size, padding, dilation, winners)


def _max_pool_cuda(x: Tensor, kernel_size, padding, dilation, winners: bool) -> tuple[Tensor, Tensor]:
    if cuda.max_pool_usable(x, kernel_size):
        return cuda.max_pool_forward(x, kernel_size, padding, dilation, winners)
    return _max_pool_default(x, kernel_size, padding, dilation, winners)


def _stride1_shape(shape, kernel_size, padding, dilation) -> list[int]:
    """The shape of a stride-1 pool's output over the axes after (N, C)."""
    return list(shape[:2]) + [s + 2 * p - d * (k - 1) for s, k, p, d in zip(shape[2:], kernel_size, padding, dilation)]


def _max_pool_fake(x: Tensor, kernel_size, padding, dilation, winners: bool) -> tuple[Tensor, Tensor]:
    shape = _stride1_shape(x.shape, kernel_size, padding, dilation)
    return x.new_empty(shape), x.new_empty(shape if winners else [0], dtype=torch.uint8)


def _max_pool_backward_default(g: Tensor, winners: Tensor, size, kernel_size, padding, dilation) -> Tensor:
    return reference.max_pool_stride1_backward(g, winners, size, kernel_size, padding, dilation)


def _max_pool_backward_cpu(g: Tensor, winners: Tensor, size, kernel_size, padding, dilation) -> Tensor:
    if len(size) in (3, 4) and cpu.usable(g):
        return cpu.max_pool_backward(g, winners, size, kernel_size, padding, dilation)
    if cuda.max_pool_usable(g, kernel_size):
        return cuda.max_pool_backward(g, winners, size, kernel_size, padding, dilation)
    return reference.max_pool_stride1_backward(g, winners, size, kernel_size, padding, dilation)


def _max_pool_backward_cuda(g: Tensor, winners: Tensor, size, kernel_size, padding, dilation) -> Tensor:
    if cuda.max_pool_usable(g, kernel_size):
        return cuda.max_pool_backward(g, winners, size, kernel_size, padding, dilation)
    return reference.max_pool_stride1_backward(g, winners, size, kernel_size, padding, dilation)


def _max_pool_backward_fake(g: Tensor, winners: Tensor, size, kernel_size, padding, dilation) -> Tensor:
    return g.new_empty(size)


def _max_pool_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])  # one byte per output: which tap won (MaxPool keeps 8)
    ctx.rest = (list(inputs[0].shape), *inputs[1:4])


def _max_pool_grad(ctx, g, _):
    (winners,) = ctx.saved_tensors
    if winners.numel() == 0 and g.numel() > 0:
        raise RuntimeError("liftswap::max_pool_stride1 ran with winners=False, which keeps nothing to route a gradient")
    if torch.is_grad_enabled():  # create_graph=True: the routing as PyTorch ops, differentiable in g
        return reference.max_pool_stride1_backward(g, winners, *ctx.rest), None, None, None, None
    return ctx.backward(g.contiguous(), winners, *ctx.rest), None, None, None, None


_MAX_POOL_KERNELS = {"cpu": _max_pool_cpu, "cuda": _max_pool_cuda}
_MAX_POOL_BACKWARD_KERNELS = {"cpu": _max_pool_backward_cpu, "cuda": _max_pool_backward_cuda}


# --- registration ------------------------------------------------------------------------------


# Registered with torch.library.Library, not torch.library.custom_op: custom_op's Python
# wrappers (argument defaults refilled from the schema, aliasing checks, dynamo guards) cost
# the host ~90 us per forward+backward, more than the layer's own launches (benchmarks/host_overhead.py).
_LIB = torch.library.Library("liftswap", "DEF")
# operator -> its direct caller (_register_autograd): the kernels and autograd rule without the
# dispatcher, whose boxing of the 16 arguments into Python twice (Autograd key, then the device's
# kernel) and back cost the host more than a layer's Triton launches (benchmarks/launch_overhead.py)
_DIRECT: dict = {}
# Eager calls on plain tensors take the direct callers; LIFTSWAP_DIRECT_CALLS=0 sends them through the dispatcher.
_DIRECT_CALLS = os.environ.get("LIFTSWAP_DIRECT_CALLS", "1") != "0"


def _define(name: str, schema: str, default, fake, kernels: dict):
    """Operator ``liftswap::name``: ``default`` on every device, ``kernels`` per device type,
    ``fake`` for meta tensors and tracing."""
    _LIB.define(name + schema, tags=(torch.Tag.pt2_compliant_tag,))
    torch.library.register_fake(f"liftswap::{name}", fake, lib=_LIB)
    _LIB.impl(name, default, "CompositeExplicitAutograd")
    for device, fn in kernels.items():
        _LIB.impl(name, fn, device.upper())
    return getattr(torch.ops.liftswap, name).default


def _register_autograd(op, backward, kernels: dict, backward_kernels: dict, grad, setup) -> None:
    """The autograd rule of ``op``, whose ``*_backward`` operator is ``backward``, and its direct
    caller (:data:`_DIRECT`). The rule is an autograd.Function whose forward runs the operator's
    kernel below autograd (redispatching with the keyset it came with, as custom_op does: tracers
    such as AOTAutograd's see one call) and calls ``setup(ctx, inputs, outputs)``, and whose
    backward is ``grad`` (which calls ``ctx.backward``). The direct caller runs the same kernels
    (``kernels`` / ``backward_kernels`` per device type) and the same ``setup`` and ``grad``
    without the dispatcher, for calls :func:`_route` finds nothing else would see."""

    class Rule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            *args, keyset = args
            with torch._C._AutoDispatchBelowAutograd():
                out = op.redispatch(keyset & torch._C._after_autograd_keyset, *args)
            setup(ctx, args, out)
            ctx.backward = backward
            return out

        @staticmethod
        def backward(ctx, *grads):
            return (*grad(ctx, *grads), None)  # (the keyset's: trailing Nones past the inputs are dropped)

    def autograd_kernel(keyset, *args):
        if torch.is_grad_enabled():
            return Rule.apply(*args, keyset)
        with torch._C._AutoDispatchBelowAutograd():  # nothing to record: no Function and its context
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    class Direct(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            out = kernels[args[0].device.type](*args)
            setup(ctx, args, out)
            ctx.backward = backward_direct
            return out

        @staticmethod
        def backward(ctx, *grads):
            return grad(ctx, *grads)

    def backward_direct(*args):  # (create_graph=True never calls it: see _reference_grads)
        return _profiled(backward, backward_kernels[args[0].device.type], args)

    def direct(*args):
        if torch.is_grad_enabled():
            return _profiled(op, Direct.apply, args)
        return _profiled(op, kernels[args[0].device.type], args)

    Rule.__name__ = Rule.__qualname__ = f"{op._opname}_autograd"
    Direct.__name__ = Direct.__qualname__ = f"{op._opname}_direct"
    _LIB.impl(op._opname, autograd_kernel, "Autograd", with_keyset=True)
    _DIRECT[op] = direct


def _profiled(op, fn, args):
    """``fn(*args)``, inside a profiler range named as ``op`` while a profiler records (the
    dispatcher records one for every operator call)."""
    if torch._C._autograd._profiler_enabled():
        with torch.profiler.record_function(op.name()):
            return fn(*args)
    return fn(*args)


def _define_pool(name: str, schema: str, impl, fake, backward_schema: str, backward_impl, backward_fake, grad, setup):
    """A pool operator and its ``*_backward`` operator, their kernels per device made by ``impl`` /
    ``backward_impl`` from the backends to try (CPU: the C++ kernel, then Triton's interpreter in
    tests; CUDA: Triton; the reference otherwise), and the autograd rule that calls the backward."""
    kernels = {"cpu": impl(cpu, cuda), "cuda": impl(cuda)}
    backward_kernels = {"cpu": backward_impl(cpu, cuda), "cuda": backward_impl(cuda)}
    op = _define(name, schema, impl(), fake, kernels)
    backward = _define(f"{name}_backward", backward_schema, backward_impl(), backward_fake, backward_kernels)
    _register_autograd(op, backward, kernels, backward_kernels, grad, setup)
    return op


def _register() -> tuple:
    down = _define_pool("lift_down_pool", f"(Tensor x, {_ARGS}, bool with_costs, bool with_details=True, int[] max_window=[]) -> (Tensor, Tensor, Tensor)",
                        _down_impl, _down_fake,
                        f"(Tensor x, {_ARGS}, Tensor? g_y, Tensor? g_details, Tensor? g_costs, bool[] needs, int[] max_window=[]) -> Tensor[]",
                        _down_backward_impl, _down_backward_fake, _down_grad, _down_setup)  # fmt: skip
    bands = _define_pool("lift_down_pool_bands", f"(Tensor x, {_ARGS}, str layout, bool with_costs, int[] max_window=[]) -> (Tensor, Tensor)",
                         _bands_impl, _bands_fake,
                         f"(Tensor x, {_ARGS}, str layout, Tensor? g_out, Tensor? g_costs, bool[] needs, int[] max_window=[]) -> Tensor[]",
                         _bands_backward_impl, _down_backward_fake, _bands_grad, _bands_setup)  # fmt: skip
    up = _define_pool("lift_up_pool", f"(Tensor y, Tensor details, {_ARGS}) -> Tensor", _up_impl, _up_fake,
                      f"(Tensor y, Tensor details, {_ARGS}, Tensor g_x, bool[] needs) -> Tensor[]",
                      _up_backward_impl, _up_backward_fake, _up_grad, _up_setup)  # fmt: skip
    kernels, backward_kernels = _MAX_POOL_KERNELS, _MAX_POOL_BACKWARD_KERNELS
    pool = _define("max_pool_stride1", "(Tensor x, int[] kernel_size, int[] padding, int[] dilation, bool winners) -> (Tensor, Tensor)",
                   _max_pool_default, _max_pool_fake, kernels)  # fmt: skip
    pool_backward = _define("max_pool_stride1_backward",
                            "(Tensor g, Tensor winners, SymInt[] size, int[] kernel_size, int[] padding, int[] dilation) -> Tensor",
                            _max_pool_backward_default, _max_pool_backward_fake, backward_kernels)  # fmt: skip
    _register_autograd(pool, pool_backward, kernels, backward_kernels, _max_pool_grad, _max_pool_setup)
    if hasattr(torch.library, "register_autocast"):  # torch >= 2.5
        # The CPU kernel computes in float32 / float64: CPU autocast hands it float32.
        for op in (down, bands, up, pool):
            torch.library.register_autocast(op, "cpu", torch.float32)
    return down, bands, up, pool


_DOWN, _BANDS, _UP, _MAX_POOL = _register()


# --- entry points ------------------------------------------------------------------------------


_KEY = torch._C.DispatchKey


def _route(*tensors: Tensor | None, onnx_graph: bool = True) -> str:
    """"direct" (the operator's kernels and autograd rule, called without the dispatcher), "op"
    (the operator), "export" (the reference recorded as standard ops) or "reference".
    ``onnx_graph``: :mod:`.onnx` writes this operator's ONNX graph."""
    if onnx_graph and onnx_exporting():
        return "op"
    if is_exporting() or torch.jit.is_tracing():
        return "export"
    if torch.compiler.is_compiling():  # (dynamo itself runs on the functorch stack: no check below)
        return "op"
    if torch._C._functorch.peek_interpreter_stack() is not None or torch.autograd.forward_ad._current_level >= 0:
        return "reference"
    device, direct = tensors[0].device, _DIRECT_CALLS
    for t in tensors:
        if t is not None:
            if type(t) not in (Tensor, torch.nn.Parameter):
                return "reference"
            direct = direct and t.device == device
    # Direct where the dispatcher would call the autograd rule and this device's kernel and nothing
    # else: no dispatch or function mode (fake tensors, functionalisation, op counters), no CPU
    # autocast (its rule casts to float32; CUDA has none), plain CPU or CUDA tensors on one device.
    if (direct and device.type in ("cpu", "cuda") and not torch._C._len_torch_dispatch_stack()
            and not torch._C._is_torch_function_mode_enabled()
            and (device.type != "cpu" or torch._C._dispatch_tls_is_dispatch_key_excluded(_KEY.AutocastCPU))):  # fmt: skip
        return "direct"
    return "op"


def _call(route: str, op, *args):
    """Operator ``op`` on ``args``: its direct caller where ``route`` is "direct", else through the dispatcher."""
    return _DIRECT[op](*args) if route == "direct" else op(*args)


def down_pool(x: Tensor, predict: OperatorWeights, update: OperatorWeights, axes: Sequence[int], output: str = "LL",
              gamma: Tensor | None = None, with_costs: bool = False, with_details: bool = True, max_window=None):  # fmt: skip
    """``(y, details (N, nd, C, *pooled), costs)`` of a LiftDownPool layer, ``costs`` the
    regulariser's (c_u, c_p) as one (2,) tensor, None unless ``with_costs``; see
    :func:`liftswap.layers.lift_down_pool`. Without ``with_details`` the operator may skip
    writing them (details then has no band, or all where no operator runs). ``max_window``:
    see :func:`_max_first`."""
    a = Args.of(predict, update, gamma, axes, output)
    route = _route(x, *a.tensors())
    window = ()
    if max_window is not None:
        x, window = _max_first(x, a, max_window, route)
    if route == "export" and not with_costs:
        y, details = reference.down_pool_for_export(x, predict, update, a.axes, output, a.gamma)
        return y, details, None
    if route not in ("op", "direct"):
        y, details, c_u, c_p = reference.down_pool(x, predict, update, a.axes, output, a.gamma, with_costs)
        return y, details, (torch.stack((c_u, c_p)) if with_costs else None)
    y, details, costs = _call(route, _DOWN, x, *a, with_costs, with_details, *_trailing_window(window))
    return y, details, (costs if with_costs else None)


def down_pool_bands(x: Tensor, predict: OperatorWeights, update: OperatorWeights, axes: Sequence[int], layout: str,
                    with_costs: bool = False, max_window=None):  # fmt: skip
    """``(out, costs)``: a LiftDownPool layer's bands, unscaled, laid out as ``layout`` says:
    ``"polyphase"``, every band in its polyphase place (:func:`reference.polyphase`), or
    ``"approximation"``, the approximation band alone (costs None unless ``with_costs``).
    Exports record the down pool (and the depth-to-space) as standard ops. ``max_window``: see
    :func:`_max_first`."""
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    a = Args.of(predict, update, None, axes, "LL")
    route = _route(x, *a.tensors(), onnx_graph=False)
    window = ()
    if max_window is not None:
        x, window = _max_first(x, a, max_window, route)
    if route in ("op", "direct"):
        out, costs = _call(route, _BANDS, x, *a, layout, with_costs, *_trailing_window(window))
        return out, (costs if with_costs else None)
    y, details, costs = down_pool(x, predict, update, a.axes, "LL", None, with_costs)  # (x: pooled already)
    return reference.lay_out_bands(y, details, a.axes, layout), costs


def _max_first(x: Tensor, a: Args, max_window, route: str):
    """``(x, window)``: the down pool operator's input and max_window argument when ``max_window``
    = (kernel_size, padding, dilation) puts :func:`max_pool_stride1` before it (the ``preserve``
    mode's max pools). Where the CUDA kernels serve it (:func:`cuda.max_down_usable`), an operator
    call (eager or compiled, not an ONNX graph) takes x and the window, and its 2-D kernel computes
    the pool as it reads x: the operator keeps x alone for backward, which runs the pool again.
    Else ``(max_pool_stride1(x, *max_window), ())``."""
    k, p, d = (tuple(map(int, t)) for t in max_window)
    if route in ("direct", "op") and not onnx_exporting() and cuda.max_down_usable(x, a.axes, k, p, d, *a.tensors()):
        if x.is_cuda or not cpu.usable(x, *a.tensors()):  # (a CPU tensor: Triton's interpreter, in tests)
            return x, (*k, *p)
    return max_pool_stride1(x, k, p, d), ()


def up_pool(y: Tensor, details: Tensor, predict: OperatorWeights, update: OperatorWeights, axes: Sequence[int],
            output: str = "LL", gamma: Tensor | None = None) -> Tensor:  # fmt: skip
    """A LiftUpPool layer's output before cropping (even sizes); see :func:`liftswap.layers.lift_up_pool`."""
    a = Args.of(predict, update, gamma, axes, output)
    route = _route(y, details, *a.tensors())
    if route not in ("op", "direct"):
        return reference.up_pool(y, details, predict, update, a.axes, output, a.gamma, export=route == "export")
    return _call(route, _UP, y, details, *a)


def max_pool_stride1(x: Tensor, kernel_size: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """``max_pool{1,2,3}d(x, kernel_size, 1, padding, dilation)``: on CPU the fused kernel (1d, 2d)
    or :func:`reference.max_pool_stride1`'s maximum passes, elsewhere PyTorch's pooling. Each
    gradient goes to the window's row-major first maximum, as PyTorch's max pooling routes it;
    backward keeps one byte per output (the winning tap), where MaxPool keeps an int64 index."""
    k, p, d = (list(map(int, v)) for v in (kernel_size, padding, dilation))
    route = _route(x, onnx_graph=False)
    if route == "export":  # exports keep the pooling op, which onnxruntime runs well
        return _MAX[x.dim() - 2](x, k, 1, p, d)
    if route not in ("op", "direct") or math.prod(k) > 256:  # (the winner's tap index is one byte)
        return reference.max_pool_stride1(x, k, p, d)
    winners = torch.is_grad_enabled() and x.requires_grad  # else no backward: the values alone
    return _call(route, _MAX_POOL, x, k, p, d, winners)[0]
