"""LiftPool: learned lifting-scheme pooling (Zhao & Snoek, ICLR 2021) and its exact inverse.

One lifting step along one axis (SPEC 1)::

    split    x_e = x[0::2], x_o = x[1::2]
    predict  d = x_o - P(x_e)        detail, high-pass
    update   s = x_e + U(d)          approximation, low-pass

P and U are ``base * t + tanh(pw(relu(dw_K(pad(t)))))``. Undoing the step needs no property
of P or U, so the inverse is exact for any weights.

The functional forms (:func:`lift`, :func:`unlift`, :func:`lift_down_pool`, :func:`lift_up_pool`)
hold the math; the modules own the parameters and call them. On CPU float32/float64 in eager
mode, :func:`lift`, :func:`lift_down_pool` and :func:`lift_up_pool` run the same math through the
fused kernel (:mod:`.native`); on CUDA the lifting steps (3 taps) run as Triton kernels
(:mod:`.lift_triton`); elsewhere the PyTorch ops below run, and under torch.export a graph
shaped for onnxruntime. Nothing here branches in Python on a tensor's size, so torch.export / ONNX
keep odd-size handling for every input size.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import is_exporting
from . import lift_triton, native
from .onnx_ops import onnx_exporting
from .recompute import recompute

__all__ = [
    "LiftOperator",
    "LiftDownPool1d",
    "LiftDownPool2d",
    "LiftDownPool3d",
    "LiftUpPool1d",
    "LiftUpPool2d",
    "LiftUpPool3d",
    "lift",
    "unlift",
    "lift_down_pool",
    "lift_up_pool",
    "band_names",
]

INITS = ("haar", "lazy", "paper")
OUTPUTS = ("LL", "sum", "gated")
# (P base, U base) per init mode: haar gives s = (x_e + x_o) / 2, d = x_o - x_e; lazy gives s = x_e, d = x_o.
_BASES = {"haar": (1.0, 0.5), "lazy": (0.0, 0.0), "paper": (0.0, 0.0)}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class OperatorWeights(NamedTuple):
    """The tensors of one lifting operator (P or U), as the functional forms take them."""

    base: float
    dw_weight: Tensor  # (C, 1, K)
    dw_bias: Tensor | None  # (C,)
    pw_weight: Tensor  # (C,)
    pw_bias: Tensor | None  # (C,)


def _tensors(w: OperatorWeights) -> tuple:
    """The operator's tensors (by field: torch 2.6's dynamo fails on slicing a NamedTuple)."""
    return w.dw_weight, w.dw_bias, w.pw_weight, w.pw_bias


def _along(t: Tensor, dim: int, index: slice) -> Tensor:
    idx = [slice(None)] * t.dim()
    idx[dim] = index
    return t[tuple(idx)]


def _replicate_pad(t: Tensor, dim: int, before: int, after: int) -> Tensor:
    if is_exporting():  # one ONNX Pad(edge); the size may be symbolic (odd-length padding)
        pads = [0, 0] * (t.dim() - 2)
        pads[2 * (-dim - 1)], pads[2 * (-dim - 1) + 1] = before, after
        return F.pad(t, pads, mode="replicate")
    # Edge slices concatenated, not F.pad(mode="replicate"): the cat backward is cheap and
    # inductor mis-strides replication_pad's backward (torch 2.14).
    parts = []
    if before:
        first = _along(t, dim, slice(0, 1))
        parts.append(first if before == 1 else torch.cat([first] * before, dim=dim))
    parts.append(t)
    if after:
        last = _along(t, dim, slice(-1, None))
        parts.append(last if after == 1 else torch.cat([last] * after, dim=dim))
    return torch.cat(parts, dim=dim) if len(parts) > 1 else t


def _channel_view(v: Tensor, spatial_dims: int) -> Tensor:
    return v.view((1, -1) + (1,) * spatial_dims)


def _residual(t: Tensor, dim: int, w: OperatorWeights) -> Tensor:
    """r(t) = tanh(pw(relu(dw_K(pad(t))))) along ``dim``: the learned part of P or U."""
    spatial = t.dim() - 2
    k = w.dw_weight.shape[-1]
    shape = [1] * spatial
    shape[spatial + dim] = k
    kernel = w.dw_weight.reshape([w.dw_weight.shape[0], 1] + shape)
    if is_exporting():
        # For onnxruntime: Pad(edge) + Conv + Relu + Conv(1x1) + Tanh, which it fuses into two
        # convolutions (activations inside); the eager tricks below become Transposes and
        # ScatterNDs in ONNX, and its Tanh is as fast as its Sigmoid.
        h = torch.relu(_CONV[spatial](_replicate_pad(t, dim, k // 2, k // 2), kernel, w.dw_bias, groups=t.shape[1]))
        pointwise = w.pw_weight.reshape([-1, 1] + [1] * spatial)
        return torch.tanh(_CONV[spatial](h, pointwise, w.pw_bias, groups=t.shape[1]))
    if k == 3:
        # Zero-padded convolution plus the two edge taps that replicate padding adds back:
        # no padded copy of t.
        padding = [0] * spatial
        padding[spatial + dim] = 1
        h = _CONV[spatial](t, kernel, w.dw_bias, padding=padding, groups=t.shape[1])
        taps = w.dw_weight.reshape(-1, 3)
        n = t.shape[dim]
        edges = torch.cat(
            (t.narrow(dim, 0, 1) * _channel_view(taps[:, 0], spatial), t.narrow(dim, n - 1, 1) * _channel_view(taps[:, 2], spatial)),
            dim=dim,
        ).to(h.dtype)  # autocast runs the convolution in lower precision
        if torch.compiler.is_compiling():
            # inductor mis-compiles the in-place form's backward (torch 2.14)
            index = torch.stack((torch.zeros((), dtype=torch.long), torch.full((), n - 1, dtype=torch.long))).to(t.device)
            h = h.index_add(t.dim() + dim, index, edges)
        else:  # in place (h is fresh), and no index tensor: on CUDA its copy to the device would wait
            h.narrow(dim, 0, 1).add_(edges.narrow(dim, 0, 1))
            h.narrow(dim, n - 1, 1).add_(edges.narrow(dim, 1, 1))
    else:
        h = _CONV[spatial](_replicate_pad(t, dim, k // 2, k // 2), kernel, w.dw_bias, groups=t.shape[1])
    h = torch.relu(h)
    # tanh(z) = 2 sigmoid(2z) - 1: PyTorch's CPU sigmoid is several times faster than its tanh.
    scale = _channel_view(2.0 * w.pw_weight, spatial)
    if w.pw_bias is not None:
        h = torch.addcmul(_channel_view(2.0 * w.pw_bias, spatial), h, scale)
    else:
        h = h * scale
    return torch.sigmoid(h).mul(2.0).sub_(1.0)


def apply_operator(t: Tensor, dim: int, w: OperatorWeights) -> Tensor:
    """P(t) or U(t) along axis ``dim`` (negative) of ``t`` with shape (N, C, *spatial).

    Example:
        >>> op = LiftOperator(4, kernel_size=3, base=0.5)
        >>> t = torch.randn(2, 4, 6)
        >>> torch.equal(apply_operator(t, -1, op.weights()), 0.5 * t)  # r = 0 at zero init
        True
    """
    r = _residual(t, dim, w)
    return r if w.base == 0.0 else r + w.base * t


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
    if _native_usable(x, predict, update, None):
        s, details, c_u, c_p = native.down_pool(x, predict, update, (dim,), "LL", None, with_costs)
        return LiftResult(s, details[:, 0], c_u, c_p)
    bands, c_u, c_p = _lift_stacked(x, dim, predict, update, with_costs)
    s, d = bands.chunk(2, dim=0)
    return LiftResult(s, d, c_u, c_p)


def _native_usable(x: Tensor, predict: OperatorWeights, update: OperatorWeights, gamma: Tensor | None) -> bool:
    return native.usable(x, *_tensors(predict), *_tensors(update), gamma)


def _lift_stacked(
    x: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights, with_costs: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """:func:`lift` with ``s`` and ``d`` stacked along the batch, as the next axis lifts them."""
    if lift_triton.usable(x, *_tensors(predict), *_tensors(update)):  # CUDA: one kernel per lift
        bands = lift_triton.lift(x, dim, predict, update)
        s, d = bands.chunk(2, dim=0)
        x_o = _odd_half(x, dim) if with_costs else None
    else:
        s, d, x_o = _lift_ops(x, dim, predict, update)
        bands = torch.cat((s, d), dim=0)
    if not with_costs:
        return bands, None, None
    return bands, (s - x_o).square().mean(), d.square().mean()


def _odd_half(x: Tensor, dim: int) -> Tensor:
    """``x_o``: the odd samples along ``dim``; an odd axis repeats its last sample (replicate padding by one)."""
    length = x.shape[dim]
    # the slice [0:L % 2] of the last sample is empty or not, with no branch on the size
    last = _along(_along(x, dim, slice(length - 1, length)), dim, slice(0, length % 2))
    return torch.cat((_along(x, dim, slice(1, None, 2)), last), dim=dim)


def _lift_ops(x: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights) -> tuple[Tensor, Tensor, Tensor]:
    """One lifting step in PyTorch ops: ``(s, d, x_o)``."""
    # Contiguous halves keep the element-wise ops below vectorised.
    x_e = _along(x, dim, slice(0, None, 2)).contiguous()
    x_o = _odd_half(x, dim)
    s, d = _lift_step(x_e, x_o, dim, predict, update)
    return s, d, x_o


def _lift_step(x_e: Tensor, x_o: Tensor, dim: int, predict: OperatorWeights, update: OperatorWeights) -> tuple[Tensor, Tensor]:
    """``d = x_o - P(x_e)``, ``s = x_e + U(d)`` for halves already split: ``(s, d)``."""
    d = x_o - _residual(x_e, dim, predict)
    if predict.base != 0.0:
        d.sub_(x_e, alpha=predict.base)
    s = x_e + _residual(d, dim, update)
    if update.base != 0.0:
        s.add_(d, alpha=update.base)
    return s, d


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
    x_e = s - apply_operator(d, dim, update)
    x_o = d + apply_operator(x_e, dim, predict)
    pos = x_e.dim() + dim
    return torch.stack((x_e, x_o), dim=pos + 1).flatten(pos, pos + 1)


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


def _detail_term(details: Tensor, output: str, gamma: Tensor | None) -> Tensor | None:
    """What ``output`` adds to the approximation band; ``details`` is (nd, N, C, *pooled)."""
    if output == "LL":
        return None
    if output == "sum":
        return details.sum(dim=0)
    if output == "gated":
        if gamma is None:
            raise ValueError("output='gated' needs gamma of shape (n_detail_bands, C)")
        gamma = gamma.view(gamma.shape + (1,) * (details.dim() - 3)).unsqueeze(1)  # (nd, 1, C, 1...)
        return (gamma * details).sum(dim=0)
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


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
    if _native_usable(x, predict, update, gamma if output == "gated" else None):
        return DownPoolResult(*native.down_pool(x, predict, update, axes, output, gamma, with_costs))
    if lift_triton.usable(x, *_tensors(predict), *_tensors(update), gamma if output == "gated" else None, compiling=True):
        return DownPoolResult(*lift_triton.down_pool(x, predict, update, axes, output, gamma, with_costs))
    if is_exporting() and not with_costs:
        return _lift_down_pool_for_export(x, predict, update, axes, output, gamma)
    n = x.shape[0]
    bands = x
    c_u = c_p = None
    for i, dim in enumerate(reversed(tuple(axes))):
        count = 2**i  # bands lifted in this call; the costs are per 1D lift
        bands, cu, cp = _lift_stacked(bands, dim, predict, update, with_costs)
        if with_costs:
            c_u = cu * count if c_u is None else c_u + cu * count
            c_p = cp * count if c_p is None else c_p + cp * count
    bands = bands.view((2 ** len(axes), n) + bands.shape[1:])  # (n_bands, N, C, *pooled)
    approx, details = bands[0], bands[1:]
    term = _detail_term(details, output, gamma)
    y = approx if term is None else approx + term
    return DownPoolResult(y, details.movedim(0, 1), c_u, c_p)


def _polyphase_components(x: Tensor, axes: Sequence[int]) -> dict[tuple, Tensor]:
    """The ``2 ** len(axes)`` polyphase components of ``x``, keyed by their phase bits along
    ``axes`` (outermost first); an odd lifted axis is replicate-padded by one at the end first.

    One padding and one reshape for all axes: every component (and every band lifted from them)
    has the shape ``(N, C, *ceil(size / 2))``, so torch.export reasons about one simple size per
    axis instead of a chain of strided slices. (ONNX exports do not come here: there each layer is
    one operator, see ``onnx_ops.py``.)
    """
    spatial = x.dim() - 2
    pads = [0] * (2 * spatial)
    shape = [x.shape[0], x.shape[1]]
    phase_dims = []
    for i in range(spatial):
        dim = i - spatial
        if dim in axes:
            half = (x.shape[dim] + 1) // 2
            pads[2 * (-dim - 1) + 1] = 2 * half - x.shape[dim]
            phase_dims.append(len(shape) + 1)
            shape += [half, 2]
        else:
            shape.append(x.shape[dim])
    v = F.pad(x, pads, mode="replicate").reshape(shape)
    out = {}
    for bits in itertools.product((0, 1), repeat=len(phase_dims)):
        index = [slice(None)] * v.dim()
        for pos, bit in zip(phase_dims, bits):
            index[pos] = bit
        out[bits] = v[tuple(index)]
    return out


def _lift_down_pool_for_export(x: Tensor, predict, update, axes, output: str, gamma: Tensor | None) -> DownPoolResult:
    """:func:`lift_down_pool` under torch.export: the input split once into its
    polyphase components (see :func:`_polyphase_components`), then each 1-D lift pairs two
    components of the same size, innermost axis first; the output is a chain of multiply-adds
    (no ReduceSum over stacked bands). A lift along an axis acts on each line of samples on its
    own, so lifting the components equals lifting the strided halves of the whole tensor."""
    axes = tuple(axes)
    comps = _polyphase_components(x, axes)
    for j in reversed(range(len(axes))):
        dim = axes[j]
        lifted = {}
        for key, x_e in comps.items():
            if key[j] == 1:
                continue
            s, d = _lift_step(x_e, comps[key[:j] + (1,) + key[j + 1 :]], dim, predict, update)
            lifted[key] = s  # bit 0 -> L, bit 1 -> H: the keys become band letters
            lifted[key[:j] + (1,) + key[j + 1 :]] = d
        comps = lifted
    bands = [comps[key] for key in sorted(comps)]  # binary order, the outermost axis the highest bit
    y = bands[0]
    for i, band in enumerate(bands[1:]):
        if output == "sum":
            y = y + band
        elif output == "gated":
            y = y + _channel_view(gamma[i], x.dim() - 2) * band
    return DownPoolResult(y, torch.stack(bands[1:], dim=1), None, None)


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
    if _native_usable(details, predict, update, gamma if output == "gated" else None) and native.usable(y):
        bands = native.up_pool(y, details, predict, update, axes, output, gamma)
    elif lift_triton.usable(
        y, *_tensors(predict), *_tensors(update), gamma if output == "gated" else None, compiling=True
    ) and lift_triton.usable(details, compiling=True):
        bands = lift_triton.up_pool(y, details, predict, update, axes, output, gamma)
    else:
        det = details.movedim(1, 0)  # (nd, N, C, *pooled)
        term = _detail_term(det, output, gamma)
        approx = y if term is None else y - term
        bands = torch.cat((approx.unsqueeze(0), det), dim=0).flatten(0, 1)
        for dim in axes:
            half = bands.shape[0] // 2
            bands = unlift(bands[:half], bands[half:], dim, predict, update)
    return _crop_to(bands, axes, output_size)


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
        return OperatorWeights(self.base, self.dw.weight, self.dw.bias, self.pw.weight.view(-1), self.pw.bias)

    def forward(self, t: Tensor, dim: int = -1) -> Tensor:
        return apply_operator(t, dim, self.weights())

    def extra_repr(self) -> str:
        return f"base={self.base}"


def _operator_params(predict: LiftOperator, update: LiftOperator, gamma: Tensor | None) -> list[Tensor]:
    params = []
    for op in (predict, update):
        params += [op.dw.weight, op.dw.bias, op.pw.weight, op.pw.bias]
    return params + ([gamma] if gamma is not None else [])


def _weights_from(params: Sequence[Tensor], p_base: float, u_base: float):
    """Inverse of _operator_params: (predict, update, gamma) for the functional forms."""
    p, u = params[0:4], params[4:8]
    predict = OperatorWeights(p_base, p[0], p[1], p[2].reshape(-1), p[3])
    update = OperatorWeights(u_base, u[0], u[1], u[2].reshape(-1), u[3])
    return predict, update, (params[8] if len(params) > 8 else None)


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
        self.lambda_u = float(lambda_u)
        self.lambda_p = float(lambda_p)
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

    def forward(self, x: Tensor):
        if _is_fx_proxy(x):
            return _fx_leaf_call(self, x)
        _check_input(x, self._spatial, self.channels, type(self).__name__)
        training = self.training
        params = _operator_params(self.predict, self.update, self.gamma)
        p_base, u_base, axes, output = self.predict.base, self.update.base, self.axes, self.output
        if onnx_exporting():  # one node for the exporter (liftswap.layers.onnx_ops)
            y, details = torch.ops.liftswap.down_pool(x, *params[:8], self.gamma, list(axes), output, p_base, u_base)
            self.last_regularization = None
            return (y, details) if self.return_details else y

        def run(x: Tensor, *params: Tensor) -> tuple[Tensor, ...]:
            predict, update, gamma = _weights_from(params, p_base, u_base)
            res = lift_down_pool(x, predict, update, axes, output, gamma, training)
            return (res.y, res.details, res.c_u, res.c_p) if training else (res.y, res.details)

        if native.usable(x, *params) or lift_triton.usable(x, *params, compiling=True):
            out = run(x, *params)  # the kernels save only x and the parameters themselves
        else:
            out = recompute(run, (x, *params))
        if training and x.shape[0] == 0:  # an empty batch costs nothing (the means would be NaN)
            self.last_regularization = x.new_zeros((), dtype=out[0].dtype)
        elif training:
            self.last_regularization = self.lambda_u * out[2] + self.lambda_p * out[3]
        elif self.last_regularization is not None:
            self.last_regularization = None
        if self.return_details:
            return out[0], out[1]
        return out[0]

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
        params = _operator_params(down.predict, down.update, down.gamma)
        p_base, u_base, axes, output = down.predict.base, down.update.base, down.axes, down.output
        if onnx_exporting():  # one node for the exporter (liftswap.layers.onnx_ops)
            x = torch.ops.liftswap.up_pool(y, details, *params[:8], down.gamma, list(axes), output, p_base, u_base)
            return _crop_to(x, axes, output_size)

        def run(y: Tensor, details: Tensor, *params: Tensor) -> tuple[Tensor]:
            predict, update, gamma = _weights_from(params, p_base, u_base)
            return (lift_up_pool(y, details, predict, update, axes, output, gamma, output_size),)

        if native.usable(y, details, *params) or (
            lift_triton.usable(y, *params, compiling=True) and lift_triton.usable(details, compiling=True)
        ):
            return run(y, details, *params)[0]  # the kernels save only their inputs and the parameters
        return recompute(run, (y, details, *params))[0]

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
