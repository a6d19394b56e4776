"""The modules that stand in a replaced stride-2 convolution or transposed convolution (SPEC 6.1).

Polyphase form (``preserve``): a stride-2 convolution of ``x`` is a sum of stride-1 convolutions
over the polyphase components of the zero-padded input, component ``r`` (per stride-2 axis) taking
the taps of the same parity, ``w[..., r::2]``. A lazy lift's bands *are* those components, so

    zero-pad as the convolution pads -> LiftDownPool(lazy, all bands) -> one conv per band -> sum

computes the original convolution at init with the original multiply-adds, and as P and U learn
the convolution sees wavelet bands instead of raw phases. Equivalently, the bands put back in
their polyphase places (a depth-to-space of the bands) go through the original strided
convolution: one convolution instead of one per band. That form serves every 2-D convolution
strided along both axes whose taps reach more than one band (the CPU kernel writes the bands
in their places as it lifts: no copy) and, elsewhere, dense convolutions with few input
channels (stems), where the per-band convolutions are small and slow and the depth-to-space
copy is cheap (``_INTERLEAVE_CHANNELS``); the per-band form serves the rest, and 1x1 shortcuts,
which read one band.
The weight is sliced at run time from the original ``weight`` parameter, which keeps its
state_dict key. Outputs have the original's length at every input size after crops of fixed
size (see ``LiftConvReplacement.forward``).

A stride-2 transposed convolution is the mirror image: output phase ``q`` of the (uncropped)
transposed convolution is a stride-1 transposed convolution of ``x`` with ``w[..., q::2]``, and
interleaving the phases is the lazy inverse lift. So: one transposed conv per phase ->
LiftUpPool(lazy) -> crop ``padding`` and ``output_padding`` as PyTorch does -> bias.

``paper`` (the placement of the paper's ResNet/MobileNet experiments): the convolution at stride 1,
then a LiftDownPool (paper init, ``sum`` output) along the stride-2 axes; its output length
``ceil((n + 2p - k + 1) / 2)`` is the original's at every size.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.lift_pool import LIFT_DOWN_POOLS, LIFT_UP_POOLS, _fx_leaf_call, _is_fx_proxy

__all__ = ["LiftConvReplacement", "LiftConvTransposeReplacement", "build_conv_replacement", "conv_macs_added"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
# Where the bands come as four tensors (1-D, 3-D, one axis lifted): dense convolutions with at most
# this many input channels run once over the re-interleaved bands instead of once per band.
# Measured on CPU, batch 8, forward (docs/results.md), with PyTorch's depth-to-space copy: a
# 7x7 stem 3->64 at 224 px 28 -> 16 ms, 3x3 16->64 at 112 px 11.0 -> 9.5 ms, but 32->64 at 112 px
# 23.7 -> 28.4 ms and 128->128 at 56 px 21.5 -> 29.5 ms (the extra copy outweighs the calls).
_INTERLEAVE_CHANNELS = 16
# Tests set "per band" or "interleaved" to run one form everywhere; "auto" is the rule above.
_FORM = "auto"
_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _same_pads(x: Tensor, k: Sequence[int], s: Sequence[int], d: Sequence[int]) -> list:
    """TF 'same' padding as timm's ``pad_same`` computes it (F.pad's list, last axis first)."""
    pads = []
    for a in reversed(range(len(k))):
        size = x.shape[2 + a]
        total = max((-(-size // s[a]) - 1) * s[a] + (k[a] - 1) * d[a] + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _parities(band: int, lifted: Sequence[int]) -> dict[int, int]:
    """Axis -> the band's parity along it (0 even, 1 odd), for each lifted axis.

    Bands are numbered as LiftDownPool orders them: one bit per lifted axis, the last axis lowest.
    """
    return {a: (band >> (len(lifted) - 1 - i)) & 1 for i, a in enumerate(lifted)}


def _band_index(band: int, lifted: Sequence[int], dims: int, shift: dict[int, int] | None = None) -> tuple:
    """The weight slice of one band: the taps ``w[(r + shift) % 2 :: 2]`` along each lifted axis."""
    index = [slice(None)] * (2 + dims)
    for a, parity in _parities(band, lifted).items():
        index[2 + a] = slice((parity + (shift or {}).get(a, 0)) % 2, None, 2)
    return tuple(index)


class _ConvAttributes(nn.Module):
    """The replaced convolution's parameters (same objects, same state_dict keys) and arguments."""

    _liftswap_layer = True

    def __init__(self, conv: nn.Module, same_padding: bool) -> None:
        super().__init__()
        self.weight = conv.weight
        if conv.bias is not None:
            self.bias = conv.bias
        else:
            self.register_parameter("bias", None)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
        self.padding = tuple(conv.padding) if not isinstance(conv.padding, str) else (0,) * len(conv.kernel_size)
        self.dilation, self.groups = tuple(conv.dilation), conv.groups
        self.same_padding = bool(same_padding)
        self.dims = len(self.kernel_size)
        self.op = type(conv).__name__
        # the stride-2 axes, as indices 0..dims-1 of the spatial axes
        self.lifted = tuple(a for a, s in enumerate(self.stride) if s == 2)

    def _bias_view(self) -> Tensor:
        return self.bias.view((1, -1) + (1,) * self.dims)


class LiftConvReplacement(_ConvAttributes):
    """A LiftDownPool and the convolution's own weights standing in a stride-2 ``Conv1d/2d/3d``.

    Args:
        conv: the replaced convolution (its ``weight`` and ``bias`` are taken over, not copied).
        lift: the LiftDownPool over the stride-2 axes (``return_details=True`` for ``polyphase``).
        placement: ``"polyphase"`` (preserve: a conv per band, the original multiply-adds) or
            ``"after"`` (paper: the conv at stride 1, then the lift).
        same_padding: timm's ``Conv2dSame``: TF 'same' padding computed from the input size first.

    Example:
        >>> import liftswap
        >>> conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        >>> lift = liftswap.LiftDownPool2d(8, init="lazy", output="LL", return_details=True)
        >>> new = LiftConvReplacement(conv, lift, "polyphase")
        >>> x = torch.randn(2, 8, 15, 15)
        >>> torch.allclose(new(x), conv(x), atol=1e-5)
        True
    """

    def __init__(self, conv: nn.Module, lift: nn.Module, placement: str, same_padding: bool = False) -> None:
        super().__init__(conv, same_padding)
        if placement not in ("polyphase", "after"):
            raise ValueError(f"placement must be 'polyphase' or 'after', got {placement!r}")
        self.lift = lift
        self.placement = placement
        bands = range(2 ** len(self.lifted))
        taps_in_bands = sum(1 for b in bands if 0 not in self.weight[_band_index(b, self.lifted, self.dims)].shape)
        self.one_band = placement == "polyphase" and taps_in_bands == 1
        if _FORM != "auto":
            self.interleave = placement == "polyphase" and _FORM == "interleaved"
        else:  # not for a 1x1 shortcut: it reads one band, where the lift wrote it
            in_place = self.dims == 2 and self.lifted == (0, 1)
            few = self.groups == 1 and self.in_channels <= _INTERLEAVE_CHANNELS
            self.interleave = placement == "polyphase" and taps_in_bands > 1 and (in_place or few)

    def forward(self, x: Tensor) -> Tensor:
        if _is_fx_proxy(x):
            return _fx_leaf_call(self, x)
        dims, k, p = self.dims, self.kernel_size, self.padding
        if self.same_padding:
            x = F.pad(x, _same_pads(x, k, self.stride, self.dilation))
        conv = _CONV[dims]
        if self.placement == "after":
            if any(p):
                x = F.pad(x, [v for a in reversed(range(dims)) for v in (p[a], p[a])])
            return self.lift(conv(x, self.weight, self.bias, 1, 0, self.dilation, self.groups))
        # Zero-pad as the convolution does; for an even kernel one more zero in front, which makes
        # both bands' taps line up the same way (below). Then every band's output has the
        # original's length after static crops, whatever the parity of the size (the lift's
        # replicated sample of an odd axis is read only by a cropped output), so torch.export
        # sees no parity-dependent shapes. Along a lifted axis, band r takes the taps
        # w[(r + shift) % 2 :: 2]; with shift (even k) band 0 drops its first output; band 1
        # always drops its last.
        shift = {a: 1 - k[a] % 2 for a in self.lifted}
        pads = [v for a in reversed(range(dims)) for v in (p[a] + shift.get(a, 0), p[a])]
        if any(pads):
            x = F.pad(x, pads)
        if self.interleave:
            z = self.lift._bands(x, "polyphase")
            for a in self.lifted:  # the padded input's extent, less the even kernel's extra zero
                n, size = x.shape[2 + a], z.shape[2 + a]  # size: n rounded up to even
                if shift[a] or (size - k[a]) // 2 != (n - k[a]) // 2:
                    z = z.narrow(2 + a, shift[a], n - shift[a])
            return conv(z, self.weight, self.bias, self.stride, 0, 1, self.groups)
        if self.one_band:  # a 1x1 shortcut reads the approximation band alone
            return conv(self.lift._bands(x, "approximation"), self.weight, self.bias, 1, 0, 1, self.groups)
        y, details = self.lift(x)
        out = None
        for b, band in enumerate([y, *details.unbind(1)]):
            crop = [slice(None)] * (2 + dims)
            for a, r in _parities(b, self.lifted).items():
                crop[2 + a] = slice(1 if (r == 0 and shift[a]) else 0, -1 if r == 1 else None)
            w = self.weight[_band_index(b, self.lifted, dims, shift)]
            if 0 in w.shape:  # no tap of this parity (kernel size 1): the band is not read
                continue
            if out is None:  # band 0 (always has taps) carries the bias; the others add in place
                out = conv(band, w, self.bias, 1, 0, 1, self.groups)[tuple(crop)]
            else:
                out = out.add_(conv(band, w, None, 1, 0, 1, self.groups)[tuple(crop)])
        return out

    def extra_repr(self) -> str:
        if self.placement == "after":
            how = "conv at stride 1, then lift"
        elif self.interleave:
            how = "the bands in their polyphase places, then the strided conv"
        elif self.one_band:
            how = "the approximation band, then the conv at stride 1"
        else:
            how = "a conv per lifted band"
        return f"replaces={self.op}(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, groups={self.groups}): {how}"


class LiftConvTransposeReplacement(_ConvAttributes):
    """A LiftUpPool and the transposed convolution's own weights standing in a stride-2 ``ConvTranspose``.

    ``forward(x, output_size=None)`` as ``ConvTranspose``'s. One stride-1 transposed convolution per
    output phase (``w[..., q::2]``), the phases joined by the LiftUpPool (at lazy init: interleaved),
    then PyTorch's crop of ``padding`` and ``output_padding``, then the bias.

    Example:
        >>> import liftswap
        >>> convt = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        >>> down = liftswap.LiftDownPool2d(8, init="lazy", output="LL", return_details=True)
        >>> new = LiftConvTransposeReplacement(convt, liftswap.LiftUpPool2d(down))
        >>> x = torch.randn(2, 16, 7, 9)
        >>> torch.allclose(new(x), convt(x), atol=1e-5)
        True
    """

    def __init__(self, conv: nn.Module, up: nn.Module) -> None:
        super().__init__(conv, same_padding=False)
        self.output_padding = tuple(conv.output_padding)
        self.up = up

    def _output_padding(self, x: Tensor, output_size) -> tuple:
        if output_size is None:
            return self.output_padding
        size = list(output_size)[-self.dims :]
        if len(size) != self.dims:
            raise ValueError(f"output_size must have {self.dims} or {self.dims + 2} elements, got {list(output_size)}")
        ops = []
        for a in range(self.dims):
            smallest = (x.shape[2 + a] - 1) * self.stride[a] - 2 * self.padding[a] + self.dilation[a] * (self.kernel_size[a] - 1) + 1
            op = int(size[a]) - smallest
            if not 0 <= op < self.stride[a]:
                raise ValueError(
                    f"requested an output size of {list(size)}, but valid sizes range from {smallest} to "
                    f"{smallest + self.stride[a] - 1} along axis {a} (for an input of {list(x.shape[2:])})"
                )
            ops.append(op)
        return tuple(ops)

    def forward(self, x: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        if _is_fx_proxy(x):
            return _fx_leaf_call(self, x, output_size=output_size)
        dims, k, p = self.dims, self.kernel_size, self.padding
        op = self._output_padding(x, output_size)
        # stride-1 axes keep their own padding in each phase's transposed conv; lifted axes crop at the end
        phase_padding = tuple(0 if a in self.lifted else p[a] for a in range(dims))
        phases = []
        for q in range(2 ** len(self.lifted)):
            w = self.weight[_band_index(q, self.lifted, dims)]
            phases.append(None if 0 in w.shape else _CONVT[dims](x, w, None, 1, phase_padding, 0, self.groups))
        # Phase q of a lifted axis has ceil((k - q) / 2) taps, so its length is n + taps - 1. All are
        # padded with zeros (static amounts) to n + ceil(k / 2) - 1 + extra, where extra = 1 only when
        # output_padding reaches past the uncropped output (padding 0, output_padding 1, even k).
        first = phases[0]  # phase 0 always has a tap
        padded = []
        for q, t in enumerate(phases):
            pads = []
            parities = _parities(q, self.lifted)
            for a in reversed(range(dims)):
                if a not in self.lifted:
                    pads += [0, 0]
                    continue
                taps = -(-(k[a] - parities[a]) // 2)
                extra = max(0, -(-(op[a] - p[a] - k[a] % 2) // 2))
                pads += [0, extra + (-(-k[a] // 2) - taps if t is not None else 0)]
            if t is None:  # kernel size 1: this phase gets no tap, zeros as in PyTorch
                t = torch.zeros_like(first)
            padded.append(F.pad(t, pads) if any(pads) else t)
        phases = padded
        z = self.up(phases[0], torch.stack(phases[1:], 1))
        for a in self.lifted:
            n = (x.shape[2 + a] - 1) * 2 - 2 * p[a] + k[a] + op[a]
            z = z.narrow(2 + a, p[a], n)
        return z if self.bias is None else z + self._bias_view()

    def extra_repr(self) -> str:
        return (
            f"replaces={self.op}(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"groups={self.groups}): a transposed conv per phase, joined by the inverse lift"
        )


def build_conv_replacement(site, conv: nn.Module) -> nn.Module:
    """The replacement of a planned conv site (``site.layer`` holds the resolved settings)."""
    layer = site.layer
    axes = tuple(a - site.dims for a, s in enumerate(site.stride) if s == 2)
    channels = site.output_shape[1] if site.kind == "convT" or layer["placement"] == "after" else site.channels
    lift = LIFT_DOWN_POOLS[site.dims](
        channels,
        kernel_size=layer["kernel_size"],
        init=layer["init"],
        output=layer["output"],
        lambda_u=layer["lambda_u"],
        lambda_p=layer["lambda_p"],
        return_details=layer["placement"] != "after",
        axes=axes,
    )
    if site.kind == "convT":
        return LiftConvTransposeReplacement(conv, LIFT_UP_POOLS[site.dims](lift))
    return LiftConvReplacement(conv, lift, layer["placement"], site.same_padding)


def conv_macs_added(site, placement: str, kernel_size: int) -> int:
    """Multiply-adds per sample the replacement adds to the original convolution's.

    The lift: each 1-D lift runs P and U (a ``kernel_size``-tap depthwise filter and a pointwise
    scale) on half the samples of its input, about ``(kernel_size + 2)`` per input value; a layer
    lifting n axes does that n times over the same number of values. ``after`` adds the
    convolution's stride-1 outputs as well.
    """
    n_lifted = sum(1 for s in site.stride if s == 2)
    if site.kind == "convT":  # the inverse lift runs over the output
        return int(n_lifted * math.prod(site.output_shape[1:]) * (kernel_size + 2))
    if placement == "polyphase":  # the convolution's own multiply-adds are unchanged
        return int(n_lifted * math.prod(site.input_shape[1:]) * (kernel_size + 2))
    taps = math.prod(site.kernel_size) * (site.input_shape[1] // site.groups)
    stride1 = [site.input_shape[2 + a] + 2 * site.padding[a] - site.kernel_size[a] + 1 for a in range(site.dims)]
    lifted_values = site.output_shape[1] * math.prod(stride1)
    conv_added = (lifted_values - math.prod(site.output_shape[1:])) * taps
    return int(conv_added + n_lifted * lifted_values * (kernel_size + 2))
