"""The Triton kernels (liftswap/ops/cuda.py) run by Triton's interpreter on CPU tensors.

Run by tests/test_triton.py in a subprocess with TRITON_INTERPRET=1 (it must be set before
Triton and liftswap are imported); references are the PyTorch ops path in float64.
"""

import os

import pytest
import torch

import liftswap
from liftswap.ops import cpu as native, cuda as lift_triton, cuda_residual
from liftswap.layers import lift, unlift
from liftswap.layers.lift_pool import LIFT_DOWN_POOLS, LIFT_UP_POOLS, LiftOperator
from liftswap.ops import reference
from liftswap.ops.operators import Args
from test_layers import randomize, weighted_sum

# Collected on its own (pytest --doctest-modules imports it) it skips: tests/test_triton.py runs it.
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="run by tests/test_triton.py")


def max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize(
    "shape,dim",
    [
        ((2, 3, 9, 10), -1),  # W, even length
        ((2, 3, 9, 10), -2),  # H, odd length: the last sample repeats
        ((2, 3, 7, 5), -1),  # odd W
        ((1, 2, 1, 6), -2),  # length 1: every tap folds onto one sample
        ((1, 2, 3, 2), -1),  # length 2
        ((1, 2, 5, 3), -1),  # length 3
        ((2, 3, 4, 5, 7), -3),  # 3d, D axis
        ((2, 3, 11), -1),  # 1d
        ((1, 2, 40, 30), -1),  # a plane over several programs (600 outputs, 512 per program)
        ((1, 2, 40, 30), -2),
    ],
)
@pytest.mark.parametrize("bases", [(1.0, 0.5), (0.0, 0.0)])
def test_lift_matches_pytorch_float64(shape, dim, bases):
    c = shape[1]
    p = randomize(LiftOperator(c, base=bases[0], zero_init=False), seed=1).double()
    u = randomize(LiftOperator(c, base=bases[1], zero_init=False), seed=2).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    params = [*p.parameters(), *u.parameters()]
    s, d, _ = reference.lift(x, dim, p.weights(), u.weights())
    ref = torch.cat((s, d))
    with native.enabled(False), lift_triton.on_cpu():
        assert lift_triton.usable(x, p.dw.weight)
        got = torch.cat(lift(x, dim, p.weights(), u.weights())[:2])
    g = torch.randn_like(ref)
    assert got.shape == ref.shape
    assert max_diff([got], [ref]) < 1e-12
    assert max_diff(torch.autograd.grad(got, [x, *params], g), torch.autograd.grad(ref, [x, *params], g)) < 1e-11


@pytest.mark.parametrize("steps", [1, 3, 8])
@pytest.mark.parametrize("shape,dim", [((2, 3, 9, 10), -2), ((1, 2, 3, 2), -1), ((1, 2, 40, 30), -1), ((2, 3, 4, 5, 7), -3)])
def test_positions_per_thread(steps, shape, dim, monkeypatch):
    """The lift's forward and backward and the inverse lift's backward, their windows sliding over
    any number of positions per thread (past the axis' end, a part-filled last chunk, one
    position): the bands and costs, and the gradients of the inputs and of every weight, as the
    PyTorch reference's (autograd through it)."""
    c = shape[1]
    p = randomize(LiftOperator(c, base=1.0, zero_init=False), seed=3).double()
    u = randomize(LiftOperator(c, base=0.5, zero_init=False), seed=4).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    half = list(shape)
    half[dim] = (half[dim] + 1) // 2
    s_in, d_in = torch.randn(half, dtype=torch.float64, requires_grad=True), torch.randn(half, dtype=torch.float64, requires_grad=True)
    params = [x, s_in, d_in, *p.parameters(), *u.parameters()]

    def loss():
        s, d, cost_u, cost_p = lift(x, dim, p.weights(), u.weights(), with_costs=True)
        inverse = unlift(s_in, d_in, dim, p.weights(), u.weights())  # the up pool's backward slides too
        return s.sin().sum() + d.cos().sum() + 3 * cost_u + 2 * cost_p + (inverse * inverse.detach().sin()).sum()

    with native.enabled(False), lift_triton.enabled(False):
        ref_bands = lift(x, dim, p.weights(), u.weights(), with_costs=True)
        ref = torch.autograd.grad(loss(), params)
    monkeypatch.setattr(lift_triton, "_STEPS", steps)
    monkeypatch.setattr(lift_triton, "_LOOP_STEPS", steps)
    with native.enabled(False), lift_triton.on_cpu():
        got_bands = lift(x, dim, p.weights(), u.weights(), with_costs=True)
        got = torch.autograd.grad(loss(), params)
    assert max_diff(got_bands, ref_bands) < 1e-12
    assert max_diff(got, ref) < 1e-11


MODES = [("haar", "gated"), ("paper", "sum"), ("lazy", "LL"), ("paper", "gated")]


def _sweep(cases, fast):
    """``cases`` as pytest params; those ``fast`` rejects are marked slow (the interpreter takes ~18 s a 3-D case)."""
    return [c if fast(*c) else pytest.param(*c, marks=pytest.mark.slow) for c in cases]


@pytest.mark.parametrize(
    "dims,init,output,details_used",
    _sweep(
        [(d, i, o, u) for d in (1, 2, 3) for i, o in MODES for u in (True, False)],
        lambda d, i, o, u: d == 1 or (d == 2 and (u or o == "gated")) or (d == 3 and u and i == "haar"),
    ),
)
def test_layer_matches_pytorch_float64(dims, init, output, details_used, monkeypatch):
    """The layer through the kernels (combine, costs and their gradients in the kernels) against PyTorch."""
    down = randomize(LIFT_DOWN_POOLS[dims](2, init=init, output=output, return_details=True), seed=dims).double()
    x = torch.randn((2, 2) + (9, 6, 5)[:dims], dtype=torch.float64, requires_grad=True)

    def run():
        y, details = down(x)
        loss = y.square().sum() + liftswap.regularization_loss(down)
        if details_used:
            loss = loss + details.sin().sum()
        return [y, details, loss, *torch.autograd.grad(loss, [x, *down.parameters()])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    calls = []
    monkeypatch.setattr(lift_triton, "down_backward", lambda *a, _f=lift_triton.down_backward: calls.append(1) or _f(*a))
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
    assert calls  # the layer went through the kernels
    assert max_diff(got, ref) < 1e-10


class _Counted:
    """A Triton kernel whose launches are counted (and made)."""

    def __init__(self, kernel, counts, name):
        self.kernel, self.counts, self.name = kernel, counts, name

    def __getitem__(self, grid):
        self.counts[self.name] = self.counts.get(self.name, 0) + 1
        return self.kernel[grid]


@pytest.mark.parametrize("shape", [(2, 3, 9, 6), (2, 3, 7, 5), (1, 2, 1, 1), (1, 2, 1, 5), (1, 2, 2, 3), (1, 2, 3, 1), (1, 2, 40, 30)])
@pytest.mark.parametrize("init,output", MODES)
def test_2d_forward_is_one_launch(shape, init, output, monkeypatch):
    """A 2-D down pool's forward is one launch whose bands, y and costs equal the PyTorch path's
    (odd sizes, length-1 and length-2 axes, a plane over several programs)."""
    down = randomize(liftswap.LiftDownPool2d(shape[1], init=init, output=output, return_details=True), seed=5).double()
    x = torch.randn(shape, dtype=torch.float64)
    with native.enabled(False), lift_triton.enabled(False):
        ref_y, ref_d = down(x)
        ref_reg = liftswap.regularization_loss(down)
    counts = {}
    for name in ("_down2_forward_kernel", "_lift_forward_kernel"):
        monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
    with native.enabled(False), lift_triton.on_cpu():
        y, d = down(x)
        reg = liftswap.regularization_loss(down)
    assert counts == {"_down2_forward_kernel": 1}
    assert max_diff([y, d, reg], [ref_y, ref_d, ref_reg]) < 1e-12


class _Layouts(_Counted):
    """A Triton kernel whose launches' LAYOUT arguments are recorded (and the launches made)."""

    def __getitem__(self, grid):
        launch = self.kernel[grid]
        return lambda *args, **kwargs: self.counts.setdefault(self.name, []).append(kwargs["LAYOUT"]) or launch(*args, **kwargs)


@pytest.mark.parametrize("shape", [(2, 3, 9, 6), (1, 2, 40, 30)])
@pytest.mark.parametrize("output", ["gated", "sum"])
def test_2d_forward_without_details_writes_y_alone(shape, output, monkeypatch):
    """A 2-D down pool whose details nobody reads (return_details=False) writes y and no band
    (LAYOUT 2), in one launch; y, the costs and every gradient equal the PyTorch path's."""
    down = randomize(liftswap.LiftDownPool2d(shape[1], init="haar", output=output), seed=5).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

    def run():
        y = down(x)
        loss = (y * y.detach().cos()).sum() + liftswap.regularization_loss(down)
        return [y, liftswap.regularization_loss(down), *torch.autograd.grad(loss, [x, *down.parameters()])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    layouts = {}
    monkeypatch.setattr(lift_triton, "_down2_forward_kernel", _Layouts(lift_triton._down2_forward_kernel, layouts, "down2"))
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
    assert layouts == {"down2": [2]}
    assert max_diff(got, ref) < 1e-11


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("shape", [(2, 3, 9, 6), (1, 2, 40, 30), (1, 2, 2, 5)])
def test_2d_forwards_outputs_per_thread(rows, shape, monkeypatch):
    """The 2-D down forward's window of first lifts sliding down any number of output rows per
    thread, and the up forward's window of undone columns along any number of positions (past
    the plane's end, a part-filled last chunk, one): bands, y, costs and the inverse as the
    PyTorch path's."""
    down = randomize(liftswap.LiftDownPool2d(shape[1], init="paper", output="gated", return_details=True), seed=9).double()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(shape, dtype=torch.float64)
    with native.enabled(False), lift_triton.enabled(False):
        ref = [*down(x), liftswap.regularization_loss(down)]
        ref.append(up(ref[0], ref[1], output_size=shape[2:]))
    monkeypatch.setattr(lift_triton, "_ROWS", rows)
    monkeypatch.setattr(lift_triton, "_LOOP_STEPS", rows)
    with native.enabled(False), lift_triton.on_cpu():
        got = [*down(x), liftswap.regularization_loss(down)]
        got.append(up(got[0], got[1], output_size=shape[2:]))
    assert max_diff(got, ref) < 1e-12


@pytest.mark.parametrize("shape", [(2, 3, 9, 6), (1, 3, 40, 30)])
@pytest.mark.parametrize("layout", ["polyphase", "approximation"])
def test_bands_for_lifted_convolutions(shape, layout, monkeypatch):
    """``lift_down_pool_bands`` in one launch of the 2-D kernel writing the layout: the PyTorch
    path's bands so laid out, costs and gradients, float64, odd size, a plane over programs."""
    from liftswap.ops.operators import down_pool_bands

    down = randomize(liftswap.LiftDownPool2d(3, init="paper", output="LL", return_details=True), seed=6).double()
    outs, counts = [], {}
    for kernels in (False, True):
        x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        if kernels:
            for name in ("_down2_forward_kernel", "_lift_forward_kernel", "_lift_backward_kernel", "_grad_sums_kernel"):
                monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
        with native.enabled(False), (lift_triton.on_cpu() if kernels else lift_triton.enabled(False)):
            for with_costs in (False, True):
                out, costs = down_pool_bands(x, down.predict.weights(), down.update.weights(), down.axes, layout, with_costs)
            grads = torch.autograd.grad(out.sin().sum() + 3 * costs[0] + 2 * costs[1], [x, *down.parameters()], allow_unused=True)
        outs.append([out, costs, *[g for g in grads if g is not None]])
    # each forward (without, then with costs) one launch; the backward one per axis, after a re-lift
    # of W, and one summing the weights' gradients
    assert counts == {"_down2_forward_kernel": 2, "_lift_backward_kernel": 2, "_lift_forward_kernel": 1, "_grad_sums_kernel": 1}
    assert max_diff(*outs) < 1e-12


@pytest.mark.parametrize(
    "shape,init,output",
    _sweep(
        [(s, i, o) for s in [(2, 3, 9, 6), (1, 2, 1, 5), (1, 2, 2, 3), (1, 2, 3, 1), (1, 2, 7, 4), (1, 2, 40, 30)] for i, o in MODES],
        lambda s, i, o: (i, o) == MODES[0] or s == (2, 3, 9, 6),
    ),
)  # fmt: skip
def test_2d_backward_launches(shape, init, output, monkeypatch):
    """A 2-D down pool's backward is three launches, the first re-lifting W into memory, and one
    summing the weights' and gamma's gradients: the gradients of x, the weights and gamma from y,
    the details and the costs equal the PyTorch path's (odd sizes, 1- to 3-row planes whose
    clamps fold most rows together, a plane over several programs)."""
    down = randomize(liftswap.LiftDownPool2d(shape[1], init=init, output=output, return_details=True), seed=8).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

    def run():
        y, details = down(x)
        loss = (y * y.detach().cos()).sum() + liftswap.regularization_loss(down) + details.sin().sum()
        return torch.autograd.grad(loss, [x, *down.parameters()])

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    counts = {}
    for name in ("_lift_forward_kernel", "_lift_backward_kernel", "_grad_sums_kernel"):
        monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
    assert counts == {"_lift_forward_kernel": 1, "_lift_backward_kernel": 2, "_grad_sums_kernel": 1}
    assert max_diff(got, ref) < 1e-11


@pytest.mark.parametrize("shape", [(2, 3, 9, 6), (2, 3, 7, 5), (1, 2, 1, 1), (1, 2, 2, 5), (1, 2, 3, 1), (1, 2, 40, 30)])
@pytest.mark.parametrize("init,output", MODES)
def test_2d_up_pool_forward_is_one_launch(shape, init, output, monkeypatch):
    """A 2-D up pool's forward is one launch from y and the details (the approximation band
    recovered inside), equal to the PyTorch path and inverting the down pool, with the details
    laid out as given, contiguous, band-major (as a down pool's kernel returns them: read in
    place) or with strided planes (copied first)."""
    down = randomize(liftswap.LiftDownPool2d(shape[1], init=init, output=output, return_details=True), seed=7).double()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(shape, dtype=torch.float64)
    with native.enabled(False), lift_triton.enabled(False):
        y, details = down(x)
        ref = up(y, details, output_size=x.shape[2:])
    counts = {}
    for name in ("_up2_forward_kernel", "_unlift_forward_kernel"):
        monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
    layouts = {
        "as given": details,
        "contiguous": details.contiguous(),
        "band-major": details.movedim(1, 0).contiguous().movedim(0, 1),
        "strided planes": details.transpose(-1, -2).contiguous().transpose(-1, -2),
    }
    with native.enabled(False), lift_triton.on_cpu():
        for layout, d in layouts.items():
            got = up(y, d, output_size=x.shape[2:])
            assert max_diff([got], [ref]) < 1e-12, layout
            assert max_diff([got], [x]) < 1e-10, layout
    assert counts == {"_up2_forward_kernel": len(layouts)}


@pytest.mark.parametrize(
    "k,p,d", [((3, 3), (1, 1), (1, 1)), ((3, 5), (0, 2), (1, 1)), ((3, 3), (1, 1), (1, 2)), ((2, 2), (0, 0), (1, 1)), ((3, 2), (1, 0), (2, 1)), ((5, 5), (2, 2), (1, 1))]
)  # the first three: sliding rows
def test_max_pool_stride1_kernels(k, p, d):
    """The preserve mode's stride-1 max pool in one launch forward and one backward: PyTorch's
    max pool values, the reference's winning taps (ties and NaN: the first) and gradients."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64).round(decimals=1)  # ties
    x[0, 0, 2, 3] = float("nan")
    x[1, 2] = float("-inf")  # a whole plane of -inf: every window's maximum is -inf
    ref = reference.max_pool_stride1(x, k, p, d)
    winners = reference.max_pool_winners(x, ref, k, p, d)
    g = torch.randn_like(ref)
    ref_gx = reference.max_pool_stride1_backward(g, winners, x.shape, k, p, d)
    with native.enabled(False), lift_triton.on_cpu():
        assert lift_triton.max_pool_usable(x, k)
        out, code = lift_triton.max_pool_forward(x, k, p, d)
        gx = lift_triton.max_pool_backward(g, code, x.shape, k, p, d)
        via_op = torch.ops.liftswap.max_pool_stride1(x, k, p, d, True)  # the operator's CPU entry takes the kernels too
        values, none = lift_triton.max_pool_forward(x, k, p, d, winners=False)  # no backward to come
    torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(values, ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(code, winners) and torch.equal(via_op[1], winners) and none.numel() == 0
    # an input's gradient sums the windows it won: row by row here (sliding rows), not tap by tap,
    # so float64 rounding may differ in the last bits (a few ulps of values near 1)
    torch.testing.assert_close(gx, ref_gx, rtol=4 * 2.0**-52, atol=4 * 2.0**-52)


@pytest.mark.parametrize(
    "shape,k,p,output,rows",
    [
        ((2, 3, 9, 8), (3, 3), (1, 1), "gated", 32),  # the ResNet stem's window
        ((2, 3, 9, 8), (2, 2), (0, 0), "LL", 32),  # VGG's: h is one smaller, odd
        ((1, 2, 12, 13), (3, 3), (1, 1), "LL", 1),  # sliding windows, each thread's rows short
        ((1, 2, 2, 3), (3, 3), (1, 1), "gated", 32),  # planes of 1 and 2 pooled rows and columns
        pytest.param((1, 2, 12, 13), (2, 3), (1, 1), "sum", 3, marks=pytest.mark.slow),
        pytest.param((1, 2, 7, 5), (3, 2), (0, 1), "gated", 3, marks=pytest.mark.slow),
        pytest.param((1, 2, 1, 1), (3, 3), (1, 1), "LL", 32, marks=pytest.mark.slow),
        pytest.param((1, 2, 40, 30), (3, 3), (1, 1), "gated", 8, marks=pytest.mark.slow),  # a plane over several programs
    ],
)
def test_max_pool_inside_the_down_pool(shape, k, p, output, rows, monkeypatch):
    """Without grad, a 2-D down pool of a stride-1 max pool (max_window: the preserve mode's) is
    one launch that never writes the pool's output: y, the details and the costs equal the PyTorch
    path's lift of PyTorch's max pool; with NaN and -inf in x, the kernels' lift of PyTorch's max
    pool (the reference's lift spreads NaN through its zero-padded convolutions differently); with
    grad: test_max_pool_inside_the_down_pool_with_grad."""
    torch.manual_seed(0)
    down = randomize(LIFT_DOWN_POOLS[2](shape[1], init="paper", output=output, return_details=output != "LL"), seed=4).double()
    x = torch.randn(shape, dtype=torch.float64)
    special = x.clone()
    special[0, 0, 0, 0] = float("nan")
    special[0, -1, -1] = float("-inf")
    window = (k, p, (1, 1))

    def run(x, fused):
        out = down(x, max_window=window) if fused else down(torch.nn.functional.max_pool2d(x, k, 1, p))
        return [*(out if isinstance(out, tuple) else (out,)), liftswap.regularization_loss(down)]

    with torch.no_grad(), native.enabled(False), lift_triton.enabled(False):
        ref = run(x, False)
    with torch.no_grad(), native.enabled(False), lift_triton.on_cpu():
        ref_special = run(special, False)
    monkeypatch.setattr(lift_triton, "_ROWS", rows)
    counts = {}
    for name in ("_down2_forward_kernel", "_max_pool_forward_kernel"):
        monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
    with torch.no_grad(), native.enabled(False), lift_triton.on_cpu():
        got = run(x, True)
        assert counts == {"_down2_forward_kernel": 1}
        got_special = run(special, True)
    assert max_diff(got, ref) < 1e-12
    for a, b in zip(got_special, ref_special):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    "shape,k,p,output,details",
    [
        ((2, 1, 9, 8), (3, 3), (1, 1), "gated", True),  # the ResNet stem's window, y and the details
        ((1, 2, 7, 6), (2, 2), (0, 0), "LL", False),  # VGG's, y alone (the bands operator's approximation)
        pytest.param((1, 2, 2, 3), (3, 2), (1, 0), "sum", True, marks=pytest.mark.slow),
    ],
)
def test_max_pool_inside_the_down_pool_with_grad(shape, k, p, output, details, monkeypatch):
    """With grad too, a 2-D down pool of a stride-1 max pool is one launch forward that keeps x and
    the weights alone (the two operators would keep the pool's output and winners); its backward
    (the pool again with its winners, the down pool's backward, the pool's) gives the gradients
    of x, the weights and gamma, through y, the details and the regulariser, of autograd through
    PyTorch's max pool and the PyTorch path's lift in float64; with create_graph=True too."""
    torch.manual_seed(0)
    down = randomize(LIFT_DOWN_POOLS[2](shape[1], init="paper", output=output, return_details=details), seed=4).double().train()
    x = torch.randn(shape, dtype=torch.float64)
    params = list(down.parameters())

    def run(fused, twice=False):
        xg = x.clone().requires_grad_()
        saved = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = down(xg, max_window=(k, p, (1, 1))) if fused else down(torch.nn.functional.max_pool2d(xg, k, 1, p))
        outs = list(out) if isinstance(out, tuple) else [out]
        loss = weighted_sum(outs) + liftswap.regularization_loss(down)
        grads = torch.autograd.grad(loss, [xg, *params], create_graph=twice)
        if twice:  # a gradient penalty's: differentiated again, in x and the weights
            grads = torch.autograd.grad(weighted_sum(grads[:1]).square(), [xg, *params], allow_unused=True, materialize_grads=True)
        return [*outs, loss, *grads], sum(saved.values())

    with native.enabled(False), lift_triton.enabled(False):
        ref, _ = run(False)
        ref_twice, _ = run(False, True)
    counts = {}
    for name in ("_down2_forward_kernel", "_max_pool_forward_kernel", "_max_pool_backward_kernel"):
        monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
    with native.enabled(False), lift_triton.on_cpu():
        xg = x.clone().requires_grad_()
        down(xg, max_window=(k, p, (1, 1)))
        assert counts == {"_down2_forward_kernel": 1}  # the forward: one launch
        counts.clear()
        got, kept = run(True)
        assert counts == {"_down2_forward_kernel": 1, "_max_pool_forward_kernel": 1, "_max_pool_backward_kernel": 1}
        got_twice, _ = run(True, True)
    weights = sum(t.numel() * t.element_size() for t in [*params, down._lambdas])
    assert kept == x.numel() * x.element_size() + weights
    assert max_diff(got, ref) < 1e-10
    assert max_diff(got_twice, ref_twice) < 1e-10


def test_preserve_converted_net_through_the_kernels(monkeypatch):
    """A preserve-converted net (each pool: a stride-1 max pool, then a lazy lift) trains through
    the kernels as through the PyTorch path: outputs, regulariser and every gradient."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(3, 2, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.MaxPool2d(2),
    ).double()
    x = torch.randn(1, 3, 13, 12, dtype=torch.float64)
    converted = liftswap.patch(net, example_inputs=x).train()
    randomize(converted, seed=3)

    def run():
        out = converted(x)
        loss = out.square().sum() + liftswap.regularization_loss(converted)
        return [out, loss, *torch.autograd.grad(loss, list(converted.parameters()))]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    counts = {}
    for name in ("_down2_forward_kernel", "_max_pool_forward_kernel", "_max_pool_backward_kernel"):
        monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
    # both pools: the lazy lift with the max pool inside, then in backward the pool again with its winners
    assert counts == {"_down2_forward_kernel": 2, "_max_pool_forward_kernel": 2, "_max_pool_backward_kernel": 2}
    assert max_diff(got, ref) < 1e-10
    with torch.no_grad(), native.enabled(False), lift_triton.enabled(False):
        ref = converted.eval()(x)
    counts.clear()
    with torch.no_grad(), native.enabled(False), lift_triton.on_cpu():
        got = converted(x)
    assert counts == {"_down2_forward_kernel": 2}  # inference: each pool one launch, its max pool inside
    assert max_diff([got], [ref]) < 1e-12


def test_float32_and_kernel_size_5():
    down = randomize(liftswap.LiftDownPool2d(3, init="paper", return_details=True))
    x = torch.randn(2, 3, 12, 9)
    with native.enabled(False), lift_triton.enabled(False):
        ref = down(x)
    with native.enabled(False), lift_triton.on_cpu():
        got = down(x)
        assert not lift_triton.usable(x, torch.zeros(3, 1, 5))  # the fused kernels: 3 taps
        assert cuda_residual.usable(x, torch.zeros(3, 1, 5))  # the residual kernel: any
    assert max_diff(got, ref) < 1e-5


@pytest.mark.parametrize("k", [1, 5, 7])
@pytest.mark.parametrize(
    "shape,dim",
    [((2, 3, 9, 10), -1), ((2, 3, 9, 10), -2), ((1, 2, 1, 6), -2), ((1, 2, 3, 2), -1), ((2, 3, 4, 5, 7), -3), ((2, 3, 11), -1),
     ((1, 2, 40, 30), -1)],
)  # fmt: skip
@pytest.mark.parametrize("biases", [True, False])
def test_residual_any_kernel_size_float64(k, shape, dim, biases):
    """The residual kernel (K taps, replicate padding: at lengths under K every outer tap folds
    onto an end) against the reference's PyTorch ops: r and the gradients of t and every weight."""
    c = shape[1]
    op = randomize(LiftOperator(c, kernel_size=k, zero_init=False), seed=k).double()
    if not biases:
        op.dw.bias, op.pw.bias = None, None
    w = op.weights()
    t = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    leaves = [t] + [v for v in (w.dw_weight, w.dw_bias, w.pw_weight, w.pw_bias) if v is not None]
    ref = reference._residual(t, dim, w)
    with lift_triton.on_cpu():
        got = cuda_residual.residual(t, dim, w)
    g = torch.randn_like(ref)
    assert max_diff([got], [ref]) < 1e-13
    assert max_diff(torch.autograd.grad(got, leaves, g), torch.autograd.grad(ref, leaves, g)) < 1e-12


@pytest.mark.parametrize("dims,k,output", [(2, 5, "gated"), (1, 7, "sum"), (2, 1, "LL"), pytest.param(3, 5, "gated", marks=pytest.mark.slow)])
def test_kernel_sizes_other_than_3(dims, k, output, monkeypatch):
    """Down and up pools of K != 3 taps run the residual kernel (never the reference's PyTorch
    residual): outputs, costs, the exact inverse and every gradient as the PyTorch path's."""
    down = randomize(LIFT_DOWN_POOLS[dims](2, kernel_size=k, init="paper", output=output, return_details=True), seed=k).double()
    up = LIFT_UP_POOLS[dims](down)
    x = torch.randn((2, 2) + (9, 6, 5)[:dims], dtype=torch.float64, requires_grad=True)

    def run():
        y, details = down(x)
        rec = up(y, details, output_size=x.shape[2:])
        loss = y.square().sum() + details.sin().sum() + rec.cos().sum() + liftswap.regularization_loss(down)
        return [y, details, rec, liftswap.regularization_loss(down), *torch.autograd.grad(loss, [x, *down.parameters()])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    assert max_diff([ref[2]], [x]) < 1e-12  # the inverse is exact
    counts = {}
    for name in ("_residual_forward_kernel", "_residual_backward_kernel"):
        monkeypatch.setattr(cuda_residual, name, _Counted(getattr(cuda_residual, name), counts, name))
    monkeypatch.setattr(reference, "_residual", lambda *a: pytest.fail("the reference's residual ran"))
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
    assert counts["_residual_forward_kernel"] > 0 and counts["_residual_backward_kernel"] > 0
    assert max_diff(got, ref) < 1e-10


@pytest.mark.parametrize(
    "dims,init,output",
    _sweep([(d, i, o) for d in (1, 2, 3) for i, o in MODES[:3]], lambda d, i, o: d < 3 or i == "paper"),
)
def test_up_pool_matches_pytorch_float64(dims, init, output, monkeypatch):
    """LiftUpPool through the unlift kernels: the exact inverse, and gradients equal to PyTorch's;
    a 2-D one's inverse lifts read y and the details in place (no stacked copy), also details
    laid out band-major, as a down pool's kernel returns them."""
    down = randomize(LIFT_DOWN_POOLS[dims](2, init=init, output=output, return_details=True), seed=dims).double()
    up = LIFT_UP_POOLS[dims](down)
    x = torch.randn((2, 2) + (9, 6, 5)[:dims], dtype=torch.float64)
    with torch.no_grad(), native.enabled(False), lift_triton.enabled(False):
        y, details = down(x)
    y.requires_grad_(True)
    details.requires_grad_(True)

    def run(details=details):
        rec = up(y, details, output_size=x.shape[2:])
        return [rec, *torch.autograd.grad(rec.sin().sum(), [y, details, *down.parameters()])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    calls, stacked = [], []
    monkeypatch.setattr(lift_triton, "up_backward", lambda *a, _f=lift_triton.up_backward: calls.append(1) or _f(*a))
    monkeypatch.setattr(lift_triton, "up_bands", lambda *a, _f=lift_triton.up_bands: stacked.append(1) or _f(*a))
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
        band_major = details.detach().movedim(1, 0).contiguous().movedim(0, 1).requires_grad_(True)
        got_band_major = run(band_major) if dims == 2 else got
    assert calls and bool(stacked) == (dims != 2)
    assert max_diff([got[0]], [x]) < 1e-12  # the inverse is exact
    assert max_diff(got, ref) < 1e-10 and max_diff(got_band_major, ref) < 1e-10


def test_half_input_and_channels_last():
    """float16 input (float32 arithmetic, float16 output, float32 costs: the regulariser
    unconverted) and a channels-last input, through the kernels."""
    down = randomize(liftswap.LiftDownPool2d(3, init="paper", return_details=True))
    x = torch.randn(2, 3, 10, 9)
    with native.enabled(False), lift_triton.enabled(False):
        ref = down(x)
        ref_reg = down.last_regularization
    with native.enabled(False), lift_triton.on_cpu():
        half = down(x.half())
        half_reg = down.last_regularization
        last = down(x.to(memory_format=torch.channels_last))
        plain = down(x)
    assert half[0].dtype == torch.float16 and half[1].dtype == torch.float16
    for h, r in zip(half, ref):
        assert ((h.float() - r).abs().max() / r.abs().max()).item() < 2e-3  # float16 rounding of input and output
    assert half_reg.dtype == torch.float32  # the input's float16 rounding alone: costs average it
    assert abs(half_reg.item() - ref_reg.item()) / ref_reg.item() < torch.finfo(torch.float16).eps
    assert all(torch.equal(a, b) for a, b in zip(last, plain))
    assert max_diff(plain, ref) < 1e-5


@pytest.mark.parametrize("dims,axes", [(3, (-2, -1)), (3, (-3,)), (2, (-2,)), (2, (-1,))])
def test_axes_subsets(dims, axes):
    """Lifting some axes only: the others pass through the kernels as rows or columns."""
    down = randomize(LIFT_DOWN_POOLS[dims](2, init="paper", output="gated", axes=axes, return_details=True), seed=5).double()
    up = LIFT_UP_POOLS[dims](down)
    x = torch.randn((2, 2) + (5, 7, 6)[:dims], dtype=torch.float64, requires_grad=True)

    def run():
        y, details = down(x)
        rec = up(y, details, output_size=x.shape[2:])
        loss = y.square().sum() + details.sin().sum() + rec.cos().sum() + liftswap.regularization_loss(down)
        return [y, details, rec, *torch.autograd.grad(loss, [x, *down.parameters()])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
    assert max_diff([got[2]], [x]) < 1e-12
    assert max_diff(got, ref) < 1e-10


def test_torch_compile_keeps_the_max_pool_inside(monkeypatch):
    """Compiled, a preserve site is the down pool operator with the max pool's window: one launch
    forward, the pool run again in backward, as eager; outputs and gradients equal the eager
    PyTorch path's (the operators' opcheck with a window: tests/test_operators.py)."""
    down = randomize(LIFT_DOWN_POOLS[2](2, init="lazy", output="gated", return_details=True), seed=8).double()
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    window = ((3, 3), (1, 1), (1, 1))

    def run(layer):
        xg = x.clone().requires_grad_()
        y, details = layer(xg)
        loss = weighted_sum([y, details]) + liftswap.regularization_loss(down)
        return [y, details, *torch.autograd.grad(loss, [xg, *down.parameters()])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run(lambda t: down(torch.nn.functional.max_pool2d(t, 3, 1, 1)))
    counts = {}
    for name in ("_down2_forward_kernel", "_max_pool_forward_kernel", "_max_pool_backward_kernel"):
        monkeypatch.setattr(lift_triton, name, _Counted(getattr(lift_triton, name), counts, name))
    with native.enabled(False), lift_triton.on_cpu():
        compiled = torch.compile(lambda t: down(t, max_window=window), fullgraph=True)
        got = run(compiled)
        counts.clear()
        got = run(compiled)  # (compiled already)
        assert counts == {"_down2_forward_kernel": 1, "_max_pool_forward_kernel": 1, "_max_pool_backward_kernel": 1}
    assert max_diff(got, ref) < 1e-10


@pytest.mark.parametrize("k", [3, 5])
def test_torch_compile_keeps_the_kernels(k, monkeypatch):
    """Under torch.compile the down and up pools are custom operators (the kernels, only inputs
    saved for backward; at 5 taps the residual kernels inside): compiled == eager PyTorch ops,
    and torch.library.opcheck accepts them."""
    down = randomize(liftswap.LiftDownPool2d(3, kernel_size=k, init="paper", return_details=True), seed=7).double()
    up = LIFT_UP_POOLS[2](down)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)

    def run(layer, up_layer):
        y, details = layer(x)
        rec = up_layer(y, details, output_size=x.shape[2:])
        loss = y.square().sum() + details.sin().sum() + rec.cos().sum() + liftswap.regularization_loss(down)
        return [y, details, rec, *torch.autograd.grad(loss, [x, *down.parameters()])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run(down, up)
    calls = []
    kernels = {lift_triton: ("down_forward", "up_forward")} if k == 3 else {cuda_residual: ("residual",)}
    for module, names in kernels.items():
        for name in names:
            monkeypatch.setattr(module, name, lambda *a, _f=getattr(module, name), _n=name: calls.append(_n) or _f(*a))
    with native.enabled(False), lift_triton.on_cpu():
        got = run(torch.compile(down, fullgraph=True), torch.compile(up, fullgraph=True))
        args = Args.of(down.predict.weights(), down.update.weights(), down.gamma, down.axes, "gated")
        checks = ("test_schema", "test_faketensor", "test_autograd_registration")
        torch.library.opcheck(torch.ops.liftswap.lift_down_pool.default, (x, *args, True), test_utils=checks)
        y, details = got[0].detach().requires_grad_(), got[1].detach().requires_grad_()
        torch.library.opcheck(torch.ops.liftswap.lift_up_pool.default, (y, details, *args), test_utils=checks)
        with torch.no_grad():  # eval mode: no costs, another graph
            got_eval = torch.compile(down.eval(), fullgraph=True)(x)
    with native.enabled(False), lift_triton.enabled(False), torch.no_grad():
        ref_eval = down(x)
    assert set(sum(kernels.values(), ())) <= set(calls)  # the compiled graphs ran the kernels
    assert max_diff(got, ref) < 1e-10
    assert max_diff(got_eval, ref_eval) < 1e-12


def test_functional_without_biases():
    """lift_down_pool / lift_up_pool with weights that have no biases (zeros stand in for the kernels)."""
    from liftswap.layers import lift_down_pool, lift_up_pool
    from liftswap.layers.lift_pool import OperatorWeights

    g = torch.Generator().manual_seed(3)
    p = OperatorWeights(1.0, torch.randn(2, 1, 3, generator=g, dtype=torch.float64), None, torch.randn(2, generator=g, dtype=torch.float64), None)
    u = OperatorWeights(0.5, torch.randn(2, 1, 3, generator=g, dtype=torch.float64), None, torch.randn(2, generator=g, dtype=torch.float64), None)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    with native.enabled(False), lift_triton.enabled(False):
        ref = lift_down_pool(x, p, u, (-2, -1), "sum")
    with native.enabled(False), lift_triton.on_cpu():
        got = lift_down_pool(x, p, u, (-2, -1), "sum")
        rec = lift_up_pool(got.y, got.details, p, u, (-2, -1), "sum", output_size=(7, 6))
    assert max_diff(got[:2], ref[:2]) < 1e-12
    assert max_diff([rec], [x]) < 1e-12


def test_backward_saves_only_inputs_and_parameters():
    """Through the kernels too, autograd keeps x and the weights only (test_layers' check)."""
    from test_layers import check_saved_bytes_and_gradients

    calls = []
    monkey = lift_triton.down_forward
    lift_triton.down_forward = lambda *a: calls.append(1) or monkey(*a)
    try:
        with native.enabled(False), lift_triton.on_cpu():
            check_saved_bytes_and_gradients((2, 3, 8, 6))
    finally:
        lift_triton.down_forward = monkey
    assert calls


@pytest.mark.parametrize("init", ["paper", "lazy"])
def test_infinite_input_gives_the_pytorch_paths_inf_and_nan(init):
    """Base-0 operators have no linear term: one +-Inf in x gives the PyTorch path's Inf / NaN pattern
    (not 0 * inf = NaN spread by the kernels), forward and through the inverse."""
    down = randomize(liftswap.LiftDownPool2d(2, init=init, output="sum", return_details=True), seed=4).double()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(2, 2, 9, 10, dtype=torch.float64)
    x[0, 1, 4, 5], x[1, 0, 3, 2] = float("inf"), -float("inf")

    def run():
        y, details = down(x)
        return [y, details, up(y, details, output_size=x.shape[2:])]

    with native.enabled(False), lift_triton.enabled(False):
        ref = run()
    with native.enabled(False), lift_triton.on_cpu():
        got = run()
    for i, (g, r) in enumerate(zip(got, ref)):
        if i < 2:  # the pooled output and details: the same Inf and NaN as the PyTorch path
            assert torch.equal(g.isnan(), r.isnan()) and torch.equal(g.isinf(), r.isinf())
            assert torch.equal(g[r.isinf()], r[r.isinf()])
        # the inverse: where "sum" subtracts an infinite band (inf - inf) the PyTorch path has NaN,
        # which the kernels' per-position order may not spread; equal wherever the reference is finite
        finite = r.isfinite()
        assert g[finite].isfinite().all() and (g[finite] - r[finite]).abs().max() < 1e-10


def test_planes_past_the_int32_offsets_take_the_pytorch_path():
    """The kernels' offsets inside a channel's plane are int32: usable() refuses a plane that,
    doubled along each axis (an up pool's output), passes 2^30 elements (views: no memory)."""
    one = torch.empty(1, dtype=torch.float32)
    with lift_triton.on_cpu():
        assert lift_triton.usable(one.expand(1, 1, 2**14, 2**14))
        assert not lift_triton.usable(one.expand(1, 1, 2**14, 2**14 + 1))
        assert lift_triton.usable(one.expand(1, 1, 2**9, 2**9, 2**9))
        assert not lift_triton.usable(one.expand(1, 1, 2**9, 2**9, 2**9 + 1))
        assert not lift_triton.usable(one.expand(1, 1, 2**29 + 1))
