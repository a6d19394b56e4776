"""LiftPool: learned lifting-scheme pooling (Zhao & Snoek, ICLR 2021) and its exact inverse.

One lifting step along one axis (SPEC 1)::

    split    x_e = x[0::2], x_o = x[1::2]
    predict  d = x_o - P(x_e)        detail, high-pass
    update   s = x_e + U(d)          approximation, low-pass

P and U are ``base * t + tanh(pw(relu(dw_K(pad(t)))))``. Undoing the step needs no property
of P or U, so the inverse is exact for any weights.

The modules own the parameters and call the operators (:mod:`liftswap.ops`): one per layer
family, with a CPU kernel, CUDA kernels and a PyTorch reference behind it. The functional
forms (:func:`lift`, :func:`unlift`, :func:`lift_down_pool`, :func:`lift_up_pool`) call the same
operators with weights given as :class:`OperatorWeights`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import operators
from ..ops.output_modes import OUTPUTS
from ..ops.reference import OperatorWeights, apply_operator, costs_dtype

__all__ = [
    "LiftOperator",
    "LiftDownPool1d",
    "LiftDownPool2d",
    "LiftDownPool3d",
    "LiftUpPool1d",
    "LiftUpPool2d",
    "LiftUpPool3d",
    "OperatorWeights",
    "lift",
    "unlift",
    "lift_down_pool",
    "lift_up_pool",
    "band_names",
]

# The registry of init modes: (P base, U base) per mode, read by the layers and the recipe schema.
# haar gives s = (x_e + x_o) / 2, d = x_o - x_e; lazy gives s = x_e, d = x_o; paper learns from
# PyTorch's default initialisation (no linear part).
_BASES = {"haar": (1.0, 0.5), "lazy": (0.0, 0.0), "paper": (0.0, 0.0)}
INITS = tuple(_BASES)


class LiftResult(NamedTuple):
    s: Tensor
    d: Tensor
    c_u: Tensor | None
    c_p: Tensor | None


def lift(x: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights, with_costs: bool = False) -> LiftResult:
    """One lifting step of ``x`` along ``dim`` (negative): returns ``(s, d, c_u, c_p)``.

    An odd axis is replicate-padded by one at the end. ``c_u = mean((s - x_o)^2)`` and
    ``c_p = mean(d^2)`` are computed when ``with_costs`` (SPEC 4), else None.

    Example:
        >>> p, u = LiftOperator(1, base=1.0), LiftOperator(1, base=0.5)
        >>> s, d, _, _ = lift(torch.tensor([[[1.0, 3.0, 5.0]]]), -1, p.weights(), u.weights())
        >>> s.tolist(), d.tolist()
        ([[[2.0, 5.0]]], [[[2.0, 0.0]]])
    """
    s, details, costs = operators.down_pool(x, predict, update, (dim,), "LL", None, with_costs)
    return LiftResult(s, details[:, 0], *_split(costs))


def unlift(s: Tensor, d: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights) -> Tensor:
    """Exact inverse of :func:`lift`: interleaves ``x_e = s - U(d)`` and ``x_o = d + P(x_e)``.

    The result has even length ``2 * s.shape[dim]`` along ``dim``; crop it for odd sizes.

    Example:
        >>> p, u = LiftOperator(3, base=1.0, zero_init=False), LiftOperator(3, base=0.5, zero_init=False)
        >>> x = torch.randn(2, 3, 8)
        >>> s, d, _, _ = lift(x, -1, p.weights(), u.weights())
        >>> torch.allclose(unlift(s, d, -1, p.weights(), u.weights()), x, atol=1e-6)
        True
    """
    return operators.up_pool(s, d.unsqueeze(1), predict, update, (dim,), "LL", None)


def band_names(n_axes: int) -> list[str]:
    """Band names in band order: W letter lowest bit, ``L`` = 0, ``H`` = 1.

    Example:
        >>> band_names(2)
        ['LL', 'LH', 'HL', 'HH']
    """
    return ["".join("LH"[(i >> (n_axes - 1 - j)) & 1] for j in range(n_axes)) for i in range(2**n_axes)]


class DownPoolResult(NamedTuple):
    y: Tensor
    details: Tensor  # (N, n_detail_bands, C, *pooled)
    c_u: Tensor | None  # sum over the 1D lifts of mean((s - x_o)^2)
    c_p: Tensor | None  # sum over the 1D lifts of mean(d^2)


def _split(costs: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """(c_u, c_p) of the operators' (2,) costs."""
    return (None, None) if costs is None else (costs[0], costs[1])


def _check_output(output: str, gamma: Tensor | None) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "gated" and gamma is None:
        raise ValueError("output='gated' needs gamma of shape (n_detail_bands, C)")


def lift_down_pool(
    x: Tensor,
    predict: OperatorWeights,
    update: OperatorWeights,
    axes: Sequence[int],
    output: str = "LL",
    gamma: Tensor | None = None,
    with_costs: bool = False,
) -> DownPoolResult:
    """Lift ``x`` (N, C, *spatial) along ``axes`` (negative, outermost first) into 2**len(axes) bands.

    Lifts run innermost axis first (W, then H, then D). All bands produced so far are lifted
    along the next axis in one batched call; stacking them ``[s..., d...]`` along the batch
    yields band order with the innermost letter as the lowest bit.

    Example:
        >>> p, u = LiftOperator(2, base=1.0), LiftOperator(2, base=0.5)
        >>> x = torch.randn(1, 2, 4, 6)
        >>> y, details, _, _ = lift_down_pool(x, p.weights(), u.weights(), axes=(-2, -1))
        >>> torch.allclose(y, F.avg_pool2d(x, 2)), tuple(details.shape)
        (True, (1, 3, 2, 2, 3))
    """
    _check_output(output, gamma)
    y, details, costs = operators.down_pool(x, predict, update, tuple(axes), output, gamma, with_costs)
    return DownPoolResult(y, details, *_split(costs))


def lift_up_pool(
    y: Tensor,
    details: Tensor,
    predict: OperatorWeights,
    update: OperatorWeights,
    axes: Sequence[int],
    output: str = "LL",
    gamma: Tensor | None = None,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Inverse of :func:`lift_down_pool`: ``y`` stands in for the pooled output.

    The approximation band is recovered from ``y`` by undoing ``output``, then the lifts are
    undone outermost axis first. ``output_size`` (spatial sizes, or a full size whose last
    entries are the spatial sizes) crops the lifted axes back to the original (odd) size.

    Example:
        >>> p, u = LiftOperator(2, base=1.0), LiftOperator(2, base=0.5)
        >>> x = torch.randn(1, 2, 5, 7)
        >>> y, details, _, _ = lift_down_pool(x, p.weights(), u.weights(), axes=(-2, -1))
        >>> x_rec = lift_up_pool(y, details, p.weights(), u.weights(), (-2, -1), output_size=(5, 7))
        >>> torch.allclose(x_rec, x, atol=1e-6)
        True
    """
    _check_output(output, gamma)
    return _crop_to(operators.up_pool(y, details, predict, update, tuple(axes), output, gamma), axes, output_size)


def _crop_to(x: Tensor, axes: Sequence[int], output_size: Sequence[int] | None) -> Tensor:
    """``x`` cropped along ``axes`` to ``output_size`` (spatial sizes, or a full size whose last
    entries are the spatial sizes); unchanged when it is None."""
    if output_size is None:
        return x
    spatial = x.dim() - 2
    size = tuple(output_size)[-spatial:]
    if len(size) != spatial:
        raise ValueError(f"output_size must give {spatial} spatial sizes, got {tuple(output_size)}")
    for dim in axes:
        if x.shape[dim] != size[spatial + dim]:  # (a full-size narrow's backward fills zeros and copies)
            x = x.narrow(dim, 0, size[spatial + dim])
    return x


class LiftOperator(nn.Module):
    """The predictor P or updater U: ``base * t + tanh(pw(relu(dw_K(pad(t)))))``.

    One instance serves every lifting axis of its layer: its K taps are laid along whichever
    axis is lifted.

    Args:
        channels: number of channels C (the convolutions are depthwise, groups = C).
        kernel_size: odd number of taps K of the depthwise convolution.
        base: the constant linear part (1 or 1/2 for Haar, 0 otherwise).
        zero_init: zero the pointwise weights so that r = 0 and the operator is ``base * t``.
    """

    def __init__(self, channels: int, kernel_size: int = 3, base: float = 0.0, zero_init: bool = True) -> None:
        super().__init__()
        self.base = float(base)
        # Conv1d modules give PyTorch's default initialisation and plain state_dict names.
        self.dw = nn.Conv1d(channels, channels, kernel_size, groups=channels)
        self.pw = nn.Conv1d(channels, channels, 1, groups=channels)
        if zero_init:
            nn.init.zeros_(self.pw.weight)
            nn.init.zeros_(self.pw.bias)

    def weights(self) -> OperatorWeights:
        try:  # read from the registries: nn.Module's attribute lookup costs the host ~1 us per tensor
            dw, pw = self._modules["dw"]._parameters, self._modules["pw"]._parameters
            return OperatorWeights(self.base, dw["weight"], dw["bias"], pw["weight"].view(-1), pw["bias"])
        except KeyError:  # a weight that is not a registered parameter (torch.nn.utils.parametrize)
            return OperatorWeights(self.base, self.dw.weight, self.dw.bias, self.pw.weight.view(-1), self.pw.bias)

    def forward(self, t: Tensor, dim: int = -1) -> Tensor:
        return apply_operator(t, dim, self.weights())

    def extra_repr(self) -> str:
        return f"base={self.base}"


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _normalize_axes(axes: Sequence[int] | int | None, spatial: int, cls: str) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(-spatial, 0))
    if isinstance(axes, int):
        axes = (axes,)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int):
            raise ValueError(f"{cls}: axes must be integers, got {tuple(axes)!r}")
        # Negative axes count from the end; non-negative ones index the (N, C, *spatial) tensor.
        neg = a if a < 0 else a - (spatial + 2)
        if not -spatial <= neg <= -1:
            raise ValueError(
                f"{cls}: axis {a} is not a spatial axis; use {-spatial}..-1 (or {2}..{spatial + 1}), got axes={tuple(axes)!r}"
            )
        out.append(neg)
    if len(set(out)) != len(out) or not out:
        raise ValueError(f"{cls}: axes must be distinct and non-empty, got {tuple(axes)!r}")
    return tuple(sorted(out))


def _check_input(x: Tensor, spatial: int, channels: int, cls: str, name: str = "input") -> None:
    if x.dim() != spatial + 2:
        dims = ("D", "H", "W")[3 - spatial :]
        raise ValueError(f"{cls} expects a {spatial + 2}D {name} (N, C, {', '.join(dims)}), got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{cls} was built for {channels} channels, got {name} with {x.shape[1]} (shape {tuple(x.shape)})")
    if 0 in x.shape[2:]:  # as nn.MaxPool2d: an empty batch is fine, an empty spatial axis is not
        raise ValueError(f"{cls} expects non-empty spatial axes, got {name} of shape {tuple(x.shape)}")


def _is_fx_proxy(x: object) -> bool:
    return isinstance(x, torch.fx.Proxy)


def _fx_leaf_call(module: nn.Module, *args, **kwargs):
    # Traced through by a tracer that does not know us: record one call_module node, as a
    # registered leaf would, so any torch.fx tracer keeps the layer as a single node.
    proxy = next(a for a in args if _is_fx_proxy(a))
    tracer = proxy.tracer
    return tracer.create_proxy("call_module", tracer.path_of_module(module), args, kwargs)


class _LiftDownPoolNd(nn.Module):
    _spatial: int = 0
    _liftswap_layer = True  # surgery never treats calls inside liftswap layers as sites

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        init: str = "haar",
        output: str = "gated",
        lambda_u: float = 0.01,
        lambda_p: float = 0.1,
        return_details: bool = False,
        axes: Sequence[int] | int | None = None,
    ) -> None:
        super().__init__()
        cls = type(self).__name__
        _check_positive_int("channels", channels)
        _check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"{cls}: kernel_size must be odd (the taps are centred), got {kernel_size}")
        if init not in INITS:
            raise ValueError(f"{cls}: init must be one of {INITS}, got {init!r}")
        if output not in OUTPUTS:
            raise ValueError(f"{cls}: output must be one of {OUTPUTS}, got {output!r}")
        for name, lam in (("lambda_u", lambda_u), ("lambda_p", lambda_p)):
            if not isinstance(lam, (int, float)) or isinstance(lam, bool) or lam < 0 or not math.isfinite(lam):
                raise ValueError(f"{cls}: {name} must be a finite number >= 0, got {lam!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.init = init
        self.output = output
        # (lambda_u, lambda_p) as a tensor too, on the layer's device (a buffer kept out of the
        # state dict): the regulariser is one dot product, whose backward is one op
        self.register_buffer("_lambdas", torch.empty(2), persistent=False)
        self.lambda_u = lambda_u
        self.lambda_p = lambda_p
        self.return_details = bool(return_details)
        self.axes = _normalize_axes(axes, self._spatial, cls)
        p_base, u_base = _BASES[init]
        zero_init = init != "paper"
        self.predict = LiftOperator(channels, kernel_size, p_base, zero_init)
        self.update = LiftOperator(channels, kernel_size, u_base, zero_init)
        n_detail = 2 ** len(self.axes) - 1
        if output == "gated":
            self.gamma = nn.Parameter(torch.zeros(n_detail, channels))
        else:
            self.register_parameter("gamma", None)
        # The regulariser of the last training-mode forward; read by regularization_loss().
        self.last_regularization: Tensor | None = None

    @property
    def band_names(self) -> list[str]:
        return band_names(len(self.axes))

    @property
    def lambda_u(self) -> float:
        return self._lambda_u

    @lambda_u.setter
    def lambda_u(self, value: float) -> None:
        self._lambda_u = float(value)
        self._write_lambdas()

    @property
    def lambda_p(self) -> float:
        return self._lambda_p

    @lambda_p.setter
    def lambda_p(self, value: float) -> None:
        self._lambda_p = float(value)
        self._write_lambdas()

    def _write_lambdas(self) -> None:
        if hasattr(self, "_lambda_u") and hasattr(self, "_lambda_p"):
            with torch.no_grad():  # (element by element: a fill each, no copy from the host)
                self._lambdas[0], self._lambdas[1] = self._lambda_u, self._lambda_p

    def __getstate__(self):
        # The last regulariser belongs to the step that made it (a graph), not to the layer: a copy
        # (copy.deepcopy mid-training, as best-model and EMA code do; pickling) starts without one.
        # Kept, deepcopy fails on the non-leaf tensor.
        state = super().__getstate__()
        state["last_regularization"] = None
        return state

    def _apply(self, fn, *args, **kwargs):
        # .double(), .half(), .to(device), .to_empty() round or drop the buffer's values: written again
        out = super()._apply(fn, *args, **kwargs)
        self._write_lambdas()
        return out

    def forward(self, x: Tensor, max_window=None):
        if _is_fx_proxy(x):
            return _fx_leaf_call(self, x) if max_window is None else _fx_leaf_call(self, x, max_window=max_window)
        if self.output == "LL" and not self.return_details:  # no detail band is read: none is written
            return self._bands(x, "approximation", max_window)
        _check_input(x, self._spatial, self.channels, type(self).__name__)
        training = self.training
        out = operators.down_pool(
            x, self.predict.weights(), self.update.weights(), self.axes, self.output, self.gamma, training,
            with_details=self.return_details, max_window=max_window,
        )
        self._keep_regularization(x, out[2])
        if self.return_details:
            return out[0], out[1]
        return out[0]

    def _bands(self, x: Tensor, layout: str, max_window=None) -> Tensor:
        """The bands, unscaled, as a replaced convolution reads them (:mod:`liftswap.surgery.convs`):
        ``"polyphase"`` every band in its polyphase place (N, C, *2 ceil(size / 2)), or
        ``"approximation"`` that band alone. The regulariser is kept as :meth:`forward` keeps it."""
        _check_input(x, self._spatial, self.channels, type(self).__name__)
        w = self.predict.weights(), self.update.weights()
        out, costs = operators.down_pool_bands(x, *w, self.axes, layout, self.training, max_window)
        self._keep_regularization(x, costs)
        return out

    def _keep_regularization(self, x: Tensor, costs: Tensor | None) -> None:
        # The costs are float32 for float32, bfloat16 and float16 inputs (float64 for float64), so
        # under autocast the regulariser stays float32 with no conversion launched.
        if self.training and x.shape[0] == 0:  # an empty batch costs nothing (the means would be NaN)
            self.last_regularization = x.new_zeros((), dtype=costs_dtype(x.dtype))
        elif self.training:  # lambda_u c_u + lambda_p c_p
            lambdas = self._lambdas
            # (a .to() that changes nothing still costs ~1.5 us of host time per call)
            self.last_regularization = torch.dot(costs, lambdas if lambdas.dtype == costs.dtype else lambdas.to(costs.dtype))
        elif self.last_regularization is not None:
            self.last_regularization = None

    def extra_repr(self) -> str:
        s = f"{self.channels}, kernel_size={self.kernel_size}, init={self.init!r}, output={self.output!r}"
        if self.axes != tuple(range(-self._spatial, 0)):
            s += f", axes={self.axes}"
        if self.return_details:
            s += ", return_details=True"
        return s + f", lambda_u={self.lambda_u}, lambda_p={self.lambda_p}"


class _LiftUpPoolNd(nn.Module):
    _liftswap_layer = True
    _spatial: int = 0
    _down_cls: type = _LiftDownPoolNd

    def __init__(self, down: _LiftDownPoolNd) -> None:
        super().__init__()
        if not isinstance(down, self._down_cls):
            raise ValueError(
                f"{type(self).__name__} takes its paired {self._down_cls.__name__}, got {type(down).__name__}"
            )
        # Registered, not copied: P, U and gamma are the down layer's own parameters.
        self.down = down

    def forward(self, y: Tensor, details: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        if _is_fx_proxy(y) or _is_fx_proxy(details):
            return _fx_leaf_call(self, y, details, output_size=output_size)
        down = self.down
        cls = type(self).__name__
        _check_input(y, self._spatial, down.channels, cls)
        n_detail = 2 ** len(down.axes) - 1
        expected = (y.shape[0], n_detail) + tuple(y.shape[1:])
        if tuple(details.shape) != expected:
            raise ValueError(f"{cls}: details must have shape {expected} for y of shape {tuple(y.shape)}, got {tuple(details.shape)}")
        x = operators.up_pool(y, details, down.predict.weights(), down.update.weights(), down.axes, down.output, down.gamma)
        return _crop_to(x, down.axes, output_size)

    def extra_repr(self) -> str:
        return f"{self.down.channels}, shares P, U and gamma with its LiftDownPool"


_DOC = """Learned lifting pooling over {n}d inputs: halves each lifted axis and keeps the detail bands.

    Args:
        channels: number of input channels C.
        kernel_size: odd number of taps K of P and U's depthwise convolution. Default 3.
        init: ``"haar"`` (exact Haar wavelet at init), ``"lazy"`` (exact subsampling at init) or
            ``"paper"`` (PyTorch's default init, as in the paper). Default ``"haar"``.
        output: ``"LL"`` (approximation band), ``"sum"`` (sum of all bands, the paper's choice) or
            ``"gated"`` (``LL + sum_b gamma_b * band_b`` with gamma initialised to 0). Default ``"gated"``.
        lambda_u: weight of ``mean((s - x_o)^2)`` in :func:`liftswap.regularization_loss`.
        lambda_p: weight of ``mean(d^2)`` in :func:`liftswap.regularization_loss`.
        return_details: also return the detail bands, for :class:`LiftUpPool{n}d`.
        axes: spatial axes to lift (negative, e.g. ``(-1,)``); the others pass through. Default all.

    ``forward(x, max_window=None)``: with ``max_window = (kernel_size, padding, dilation)`` the
    layer pools the stride-1 max pool of ``x`` (``max_pool{n}d(x, kernel_size, 1, padding,
    dilation)``), as a ``preserve`` conversion's max pool sites do; a 2-D layer's CUDA kernel
    computes that max pool as it reads ``x``, never writing it (its backward runs it again).

    Shape:
        - Input: :math:`(N, C, {shape_in})`.
        - Output: :math:`(N, C, {shape_out})`, each lifted axis :math:`\\lceil L / 2 \\rceil` (odd sizes
          are replicate-padded by one). With ``return_details``, also details of shape
          :math:`(N, 2^{{a}} - 1, C, {shape_out})` with ``a = len(axes)``, bands in order {bands}.

    Example:
        {example}
    """


class LiftDownPool1d(_LiftDownPoolNd):
    _spatial = 1


class LiftDownPool2d(_LiftDownPoolNd):
    _spatial = 2


class LiftDownPool3d(_LiftDownPoolNd):
    _spatial = 3


LiftDownPool1d.__doc__ = _DOC.format(
    n=1, shape_in="L", shape_out="L_{out}", bands="H", example=""">>> pool = LiftDownPool1d(4)
        >>> pool(torch.randn(2, 4, 9)).shape
        torch.Size([2, 4, 5])""")
LiftDownPool2d.__doc__ = _DOC.format(
    n=2, shape_in="H, W", shape_out="H_{out}, W_{out}", bands="LH, HL, HH", example=""">>> pool = LiftDownPool2d(8, init="haar", output="gated")
        >>> x = torch.randn(2, 8, 32, 32)
        >>> torch.allclose(pool(x), F.avg_pool2d(x, 2), atol=1e-6)  # exact Haar at init
        True
        >>> y, details = LiftDownPool2d(8, return_details=True)(x)
        >>> tuple(details.shape)
        (2, 3, 8, 16, 16)""")
LiftDownPool3d.__doc__ = _DOC.format(
    n=3, shape_in="D, H, W", shape_out="D_{out}, H_{out}, W_{out}", bands="LLH, LHL, ..., HHH",
    example=""">>> pool = LiftDownPool3d(3, axes=(-2, -1))  # frames pooled in H and W only
        >>> pool(torch.randn(1, 3, 5, 8, 8)).shape
        torch.Size([1, 3, 5, 4, 4])""")

_UP_DOC = """Exact inverse of :class:`LiftDownPool{n}d`, sharing its P, U and gamma.

    ``forward(y, details, output_size=None)``: ``y`` stands in for the pooled output; the
    approximation band is recovered from it by undoing the down layer's ``output`` mode, then
    the lifts are undone. ``output_size`` crops back to the original (odd) spatial size.

    Args:
        down: the paired :class:`LiftDownPool{n}d` (shared, not copied).

    Shape:
        - y: :math:`(N, C, *pooled)`; details: :math:`(N, 2^a - 1, C, *pooled)`.
        - Output: :math:`(N, C, *size)`: twice the pooled size on lifted axes, or ``output_size``.

    Example:
        >>> down = LiftDownPool{n}d(4, init="paper", return_details=True)
        >>> up = LiftUpPool{n}d(down)
        >>> x = torch.randn({shape})
        >>> torch.allclose(up(*down(x), output_size=x.shape[2:]), x, atol=1e-5)
        True
    """


class LiftUpPool1d(_LiftUpPoolNd):
    _spatial = 1
    _down_cls = LiftDownPool1d


class LiftUpPool2d(_LiftUpPoolNd):
    _spatial = 2
    _down_cls = LiftDownPool2d


class LiftUpPool3d(_LiftUpPoolNd):
    _spatial = 3
    _down_cls = LiftDownPool3d


LiftUpPool1d.__doc__ = _UP_DOC.format(n=1, shape="2, 4, 11")
LiftUpPool2d.__doc__ = _UP_DOC.format(n=2, shape="2, 4, 9, 6")
LiftUpPool3d.__doc__ = _UP_DOC.format(n=3, shape="1, 4, 3, 5, 6")

LIFT_DOWN_POOLS = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
LIFT_UP_POOLS = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}
