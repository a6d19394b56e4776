"""Every layer backend against the float64 reference on extreme inputs.

Empty axes, empty batches, +-Inf, NaN, a 1e6 scale and subnormals: each backend either agrees
with the float64 PyTorch computation (the same values where it is finite, the same Inf / NaN
where it is not) or raises the same clear error.
"""

import copy

import pytest
import torch

from liftswap.ops import cpu as native
from liftswap.layers.lift_pool import LIFT_DOWN_POOLS, LIFT_UP_POOLS
from test_layers import randomize

# float32 keeps 24 bits: sums of a few hundred terms stay within 1e-5 of the largest magnitude (SPEC 2's tolerance)
TOL = 1e-5
# (each test runs on every backend present: the `backend` fixture in conftest.py)


def pair(dims, init, output, channels=3):
    # random P, U and gamma; the init's base constants (not parameters) stay
    down = randomize(LIFT_DOWN_POOLS[dims](channels, init=init, output=output, return_details=True), seed=dims)
    return down, LIFT_UP_POOLS[dims](down)


def reference(down, x, grad=False):
    """The float64 PyTorch computation: outputs, reconstruction, and (with ``grad``) gradients."""
    down64 = copy.deepcopy(down).double()
    up64 = LIFT_UP_POOLS[len(down.axes)](down64)
    with native.enabled(False):
        return run(down64, up64, x.double(), grad)


def run(down, up, x, grad=False):
    x = x.clone().requires_grad_(grad)
    y, details = down(x)
    rec = up(y, details, output_size=x.shape[2:])
    out = {"y": y, "details": details, "rec": rec}
    if grad:
        weight = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
        ((y * weight).sum() + details.sum() + down.last_regularization).backward()
        out["x.grad"] = x.grad
        out.update({n: p.grad for n, p in down.named_parameters()})
    return {k: v.detach() for k, v in out.items()}


def _scale(ref: dict, key: str) -> float:
    """The magnitude an error in ``key`` is measured against: its own, floored at float32's smallest
    normal number; the inverse's, at the bands it undoes (it is exact to their rounding only)."""
    keys = ("y", "details", "rec") if key == "rec" else (key,)
    values = [ref[k][torch.isfinite(ref[k])].abs().max().item() for k in keys if torch.isfinite(ref[k]).any()]
    return max(values + [torch.finfo(torch.float32).tiny])


def assert_agrees(got: dict, ref: dict):
    for key, r in ref.items():
        g = got[key].double()
        assert g.shape == r.shape, key
        assert torch.equal(torch.isnan(g), torch.isnan(r)), f"{key}: NaN at other places than the float64 reference"
        inf = torch.isinf(r)
        assert torch.equal(torch.isinf(g), inf) and torch.equal(g[inf], r[inf]), f"{key}: Inf differs"
        finite = torch.isfinite(r)
        if finite.any():
            scale = _scale(ref, key)
            err = (g[finite] - r[finite]).abs().max().item()
            assert err <= TOL * scale, f"{key}: {err:.3g} off at scale {scale:.3g}"


SHAPES = {1: (2, 3, 13), 2: (2, 3, 9, 10), 3: (1, 3, 5, 6, 7)}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("init,output", [("haar", "gated"), ("lazy", "sum"), ("paper", "sum"), ("paper", "LL")])
@pytest.mark.parametrize("case", ["inf", "-inf", "nan", "scale_1e6", "subnormal"])
def test_extreme_values_agree_with_float64(backend, dims, init, output, case):
    down, up = pair(dims, init, output)
    down.train()
    x = torch.randn(SHAPES[dims], generator=torch.Generator().manual_seed(3))
    where = (0, 1) + tuple(s // 2 for s in x.shape[2:])
    if case in ("inf", "-inf", "nan"):
        x[where] = float(case)
    elif case == "scale_1e6":
        x = x * 1e6
    else:
        x = x * 1e-40  # subnormal in float32
    grad = case in ("scale_1e6", "subnormal")
    ref = reference(down, x, grad)
    got = run(down, up, x, grad)
    if grad:
        # P's and U's weight gradients sum tanh'(z) over the positions where relu passes, which
        # at 1e6 inputs are the few with large |z| and for subnormal inputs subnormal products:
        # there 1 - tanh(z)^2 and the products keep a few bits in float32, in PyTorch's own tanh
        # backward as in the kernel (0.3-11% off float64 seen in both). They are checked at
        # ordinary scales (test_layers, test_native); here the outputs, the inverse, x's and gamma's.
        for k in [k for k in ref if k.startswith(("predict.", "update."))]:
            del ref[k]
    assert_agrees(got, ref)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_empty_spatial_axis_is_the_same_clear_error(backend, dims):
    down, _ = pair(dims, "haar", "gated")
    for axis in range(2, dims + 2):
        shape = list(SHAPES[dims])
        shape[axis] = 0
        with pytest.raises(ValueError, match=rf"expects non-empty spatial axes, got input of shape \({', '.join(map(str, shape))}\)"):
            down(torch.randn(shape))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("init,output", [("haar", "gated"), ("paper", "sum")])
def test_empty_batch_is_an_empty_result_as_max_pool_gives(backend, dims, init, output):
    down, up = pair(dims, init, output)
    down.train()
    shape = (0,) + SHAPES[dims][1:]
    x = torch.randn(shape, requires_grad=True)
    y, details = down(x)
    pooled = tuple((s + 1) // 2 for s in shape[2:])
    assert y.shape == (0, 3) + pooled and details.shape == (0, 2**dims - 1, 3) + pooled
    if dims == 2:  # the shape nn.MaxPool2d gives an empty batch
        assert y.shape == torch.nn.MaxPool2d(2, ceil_mode=True)(x).shape
    assert down.last_regularization.item() == 0.0
    rec = up(y, details, output_size=shape[2:])
    assert rec.shape == shape
    (y.sum() + rec.sum() + down.last_regularization).backward()
    assert x.grad.shape == shape
