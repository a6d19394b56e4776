"""LiftDownPool / LiftUpPool against independent references (PyTorch pooling, slow loops, exact inverse)."""

import itertools
import weakref

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import liftswap
from liftswap.layers import lift_down_pool, lift_up_pool
from liftswap.ops import reference
from liftswap.layers.lift_pool import LIFT_DOWN_POOLS, LIFT_UP_POOLS

INITS = ("haar", "lazy", "paper")
OUTPUTS = ("LL", "sum", "gated")
AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def weighted_sum(outs) -> torch.Tensor:
    """A loss that weighs every element of ``outs`` differently (fixed weights)."""
    return sum((o * torch.cos(torch.arange(o.numel(), dtype=o.dtype)).view_as(o)).sum() for o in outs)


def rel_err(got, ref, floor: float = 1e-30) -> float:
    """The largest ``|got - ref|`` relative to ``ref``'s largest magnitude (at least ``floor``), over
    a tensor or a sequence of tensors; a NaN anywhere is ``inf`` (a failure)."""
    pairs = zip(got, ref) if isinstance(got, (list, tuple)) else [(got, ref)]
    errs = [((a - b).abs().max() / b.abs().max().clamp_min(floor)).item() for a, b in pairs]
    return float("inf") if any(e != e for e in errs) else max(errs)


def randomize(module, seed=0):
    """Random weights everywhere (P, U, gamma), so nothing is at its special init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module


def make_pair(dims, channels=3, dtype=torch.float32, **kw):
    down = LIFT_DOWN_POOLS[dims](channels, return_details=True, **kw).to(dtype)
    return down, LIFT_UP_POOLS[dims](down)


# ---------------------------------------------------------------- slow reference of one lift


def slow_operator(t, w):
    """P or U on a (C, L) tensor by explicit loops over channels and positions."""
    c_count, length = t.shape
    k = w.dw_weight.shape[-1]
    out = torch.empty_like(t)
    for c in range(c_count):
        for i in range(length):
            acc = w.dw_bias[c].item()
            for j in range(k):
                src = min(max(i + j - k // 2, 0), length - 1)  # replicate padding
                acc += w.dw_weight[c, 0, j].item() * t[c, src].item()
            h = max(acc, 0.0) * w.pw_weight[c].item() + w.pw_bias[c].item()
            out[c, i] = w.base * t[c, i] + torch.tanh(torch.tensor(h, dtype=t.dtype))
    return out


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("length", [1, 4, 7])
def test_lift_step_matches_slow_loop(init, length, backend):
    down = randomize(liftswap.LiftDownPool1d(2, kernel_size=5, init=init, output="LL", return_details=True)).double()
    x = torch.randn(1, 2, length, dtype=torch.float64)
    padded = torch.cat([x, x[..., -1:]], dim=-1) if length % 2 else x
    x_e, x_o = padded[0, :, 0::2], padded[0, :, 1::2]
    d = x_o - slow_operator(x_e, down.predict.weights())
    s = x_e + slow_operator(d, down.update.weights())
    y, details = down(x)
    torch.testing.assert_close(y[0], s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(details[0, 0], d, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- exact inverse


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("init,output", list(itertools.product(INITS, OUTPUTS)))
def test_inverse_every_mode_sizes_1_to_33(dims, init, output, backend):
    down, up = make_pair(dims, init=init, output=output)
    randomize(down, seed=dims)
    for size in range(1, 34):
        # 3d: vary one axis over 1..33 and keep the others small and of mixed parity.
        shape = {1: (size,), 2: (size, 34 - size), 3: (size, 3, 2 + size % 3)}[dims]
        x = torch.randn((2, 3) + shape)
        rec = up(*down(x), output_size=x.shape[2:])
        assert rec.shape == x.shape
        assert rel_err(rec, x) <= 1e-5, (size, rel_err(rec, x))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("init", INITS)
def test_inverse_float64(dims, init, backend):
    down, up = make_pair(dims, dtype=torch.float64, init=init, output="gated", kernel_size=5)
    randomize(down, seed=7).double()
    for size in (1, 2, 5, 8, 13):
        x = torch.randn((2, 3) + (size,) * dims, dtype=torch.float64)
        assert rel_err(up(*down(x), output_size=x.shape[2:]), x) <= 1e-10


@settings(max_examples=40, deadline=None)
@given(
    dims=st.integers(1, 3),
    sizes=st.lists(st.integers(1, 12), min_size=3, max_size=3),
    kernel_size=st.sampled_from([1, 3, 5, 7]),
    init=st.sampled_from(INITS),
    output=st.sampled_from(OUTPUTS),
    axes_mask=st.integers(1, 7),
    seed=st.integers(0, 1000),
)
def test_inverse_property(dims, sizes, kernel_size, init, output, axes_mask, seed):
    axes = tuple(-1 - i for i in range(dims) if axes_mask >> i & 1) or (-1,)
    down, up = make_pair(dims, channels=2, kernel_size=kernel_size, init=init, output=output, axes=axes)
    randomize(down, seed)
    x = torch.randn((1, 2) + tuple(sizes[:dims]), generator=torch.Generator().manual_seed(seed))
    y, details = down(x)
    for d in range(-dims, 0):  # lifted axes halve (ceil), the others pass through
        expected = (x.shape[d] + 1) // 2 if d in axes else x.shape[d]
        assert y.shape[d] == expected
    assert details.shape[1] == 2 ** len(axes) - 1
    assert rel_err(up(y, details, output_size=x.shape[2:]), x) <= 1e-5


# ---------------------------------------------------------------- function at init


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("output", ["LL", "gated"])
def test_haar_equals_avg_pool(dims, output, backend):
    pool = LIFT_DOWN_POOLS[dims](3, init="haar", output=output)
    for size in (2, 8, 12):
        x = torch.randn((2, 3) + (size,) * dims)
        assert rel_err(pool(x), AVG[dims](x, 2, 2)) <= 1e-5
    # odd: replicate padding == ceil_mode without counting the pad (avg_pool3d refuses size 1)
    for size in (1 if dims < 3 else 3, 5, 9):
        x = torch.randn((2, 3) + (size,) * dims)
        ref = AVG[dims](x, 2, 2, ceil_mode=True, count_include_pad=False)
        assert rel_err(pool(x), ref) <= 1e-5


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("output", ["LL", "gated"])
def test_lazy_equals_subsampling(dims, output, backend):
    pool = LIFT_DOWN_POOLS[dims](3, init="lazy", output=output)
    for size in (1, 6, 9):
        x = torch.randn((2, 3) + (size,) * dims)
        ref = x[(...,) + (slice(None, None, 2),) * dims]
        assert torch.equal(pool(x), ref)


_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


@pytest.mark.parametrize("dims,k,p,d", [(1, 3, 1, 1), (2, 3, 1, 1), (2, 2, 0, 1), (2, 3, 1, 2), (3, 2, 1, 1)])
@pytest.mark.parametrize("output", ["LL", "gated"])
def test_max_window_pools_the_stride1_max_pool(dims, k, p, d, output, backend):
    """forward(x, max_window=...) is the layer of PyTorch's stride-1 max pool of x: outputs,
    regulariser and every gradient, with details or without."""
    down = randomize(LIFT_DOWN_POOLS[dims](3, init="paper", output=output, return_details=output == "gated"), seed=7).double()
    x = torch.randn((2, 3) + (9, 8, 7)[:dims], dtype=torch.float64, requires_grad=True)
    window = ((k,) * dims, (p,) * dims, (d,) * dims)

    def run(fused):
        out = down(x, max_window=window) if fused else down(_MAX[dims](x, k, 1, p, d))
        out = list(out) if isinstance(out, tuple) else [out]
        loss = sum((o * torch.randn_like(o)).sum() for o in out) + liftswap.regularization_loss(down)
        return [*out, liftswap.regularization_loss(down), *torch.autograd.grad(loss, [x, *down.parameters()])]

    torch.manual_seed(0)
    ref = run(False)
    torch.manual_seed(0)
    got = run(True)
    assert rel_err(got, ref) <= 1e-12
    with torch.no_grad():  # no backward to come: the values alone
        assert rel_err(down(x, max_window=window), down(_MAX[dims](x, k, 1, p, d))) <= 1e-12


def test_haar_bands_are_the_2d_haar_transform(backend):
    pool = liftswap.LiftDownPool2d(2, init="haar", output="sum", return_details=True)
    x = torch.randn(2, 2, 6, 8)
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]  # rows even: W even / W odd
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]  # rows odd
    ll = (a + b + c + d) / 4
    lh = ((b - a) + (d - c)) / 2  # low along H, high along W
    hl = (c + d) / 2 - (a + b) / 2  # high along H, low along W
    hh = (d - c) - (b - a)
    y, details = pool(x)
    torch.testing.assert_close(details, torch.stack([lh, hl, hh], dim=1))
    torch.testing.assert_close(y, ll + lh + hl + hh)
    assert pool.band_names == ["LL", "LH", "HL", "HH"]


def test_band_order_3d_is_binary_with_w_lowest(backend):
    assert liftswap.LiftDownPool3d(1).band_names[:5] == ["LLL", "LLH", "LHL", "LHH", "HLL"]
    pool = liftswap.LiftDownPool3d(1, init="lazy", output="LL", return_details=True)
    x = torch.randn(1, 1, 4, 4, 4)
    _, details = pool(x)
    # lazy: band with bits (D, H, W) is the sub-lattice x[D0::2, H0::2, W0::2]
    for i in range(1, 8):
        bd, bh, bw = i >> 2 & 1, i >> 1 & 1, i & 1
        torch.testing.assert_close(details[:, i - 1], x[..., bd::2, bh::2, bw::2], rtol=0, atol=0)


def test_axes_lift_a_subset(backend):
    video = torch.randn(2, 3, 5, 8, 6)
    pool = liftswap.LiftDownPool3d(3, axes=(-2, -1), output="LL")
    torch.testing.assert_close(pool(video), F.avg_pool3d(video, (1, 2, 2)))
    rows = liftswap.LiftDownPool2d(3, axes=(-2,), output="LL", return_details=True)
    x = torch.randn(2, 3, 8, 5)
    y, details = rows(x)
    torch.testing.assert_close(y, F.avg_pool2d(x, (2, 1)))
    assert details.shape == (2, 1, 3, 4, 5)
    assert rows.band_names == ["L", "H"]


# ---------------------------------------------------------------- output modes


def test_output_modes_combine_bands():
    x = torch.randn(2, 3, 6, 6)
    base = randomize(liftswap.LiftDownPool2d(3, init="paper", output="gated", return_details=True))
    y_gated, details = base(x)
    ll = y_gated - (base.gamma[None, :, :, None, None] * details).sum(1)
    for output, expected in (("LL", ll), ("sum", ll + details.sum(1))):
        other = liftswap.LiftDownPool2d(3, init="paper", output=output)
        other.load_state_dict({k: v for k, v in base.state_dict().items() if k != "gamma"})
        torch.testing.assert_close(other(x), expected, rtol=1e-5, atol=1e-5)


def test_gamma_shape_follows_detail_bands():
    assert liftswap.LiftDownPool2d(5).gamma.shape == (3, 5)
    assert liftswap.LiftDownPool3d(5).gamma.shape == (7, 5)
    assert liftswap.LiftDownPool3d(5, axes=(-1,)).gamma.shape == (1, 5)
    assert liftswap.LiftDownPool2d(5, output="sum").gamma is None


def test_up_shares_parameters_with_down():
    down, up = make_pair(2)
    assert up.down is down
    assert up.down.predict.dw.weight is down.predict.dw.weight
    ids = {id(p) for p in up.parameters()}
    assert ids == {id(p) for p in down.parameters()}


# ---------------------------------------------------------------- regulariser


def test_regularization_closed_form_haar(backend):
    pool = liftswap.LiftDownPool2d(2, init="haar", output="LL", lambda_u=0.3, lambda_p=0.7)
    x = torch.randn(2, 2, 6, 10, dtype=torch.float64)
    pool.double()(x)
    # W lift: s - x_o = (x_e - x_o) / 2 and d = x_o - x_e
    diff_w = x[..., 1::2] - x[..., 0::2]
    c_u, c_p = (diff_w**2).mean() / 4, (diff_w**2).mean()
    for band in ((x[..., 0::2] + x[..., 1::2]) / 2, diff_w):  # both W outputs lifted along H
        diff_h = band[..., 1::2, :] - band[..., 0::2, :]
        c_u, c_p = c_u + (diff_h**2).mean() / 4, c_p + (diff_h**2).mean()
    expected = 0.3 * c_u + 0.7 * c_p
    torch.testing.assert_close(liftswap.regularization_loss(pool), expected, rtol=1e-12, atol=1e-12)
    pool.lambda_u, pool.lambda_p = 2.0, 0.0  # weights set after construction are the ones used
    pool(x)
    torch.testing.assert_close(liftswap.regularization_loss(pool), 2 * c_u, rtol=1e-12, atol=1e-12)
    assert (pool.lambda_u, pool.lambda_p) == (2.0, 0.0) and "lambda_u=2.0" in repr(pool)
    assert "_lambdas" not in pool.state_dict()  # (the tensor the layer keeps them in)


def test_regularization_zero_after_eval_and_none_without_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), liftswap.LiftDownPool2d(4, init="paper"))
    x = torch.randn(2, 3, 8, 8)
    net(x)
    assert liftswap.regularization_loss(net).item() > 0
    net.eval()(x)
    assert liftswap.regularization_loss(net).item() == 0.0
    assert liftswap.regularization_loss(torch.nn.Linear(2, 2)).item() == 0.0


def test_clear_regularization_reaches_every_layer():
    """clear_regularization forgets every layer's value: nested, shared by two parents, beside a
    child set to None (what a patched model's pre-forward hook runs)."""
    from liftswap.layers.regularization import clear_regularization

    shared = liftswap.LiftDownPool2d(4, init="paper")
    inner = torch.nn.Sequential(liftswap.LiftDownPool2d(4, init="paper"), shared)
    net = torch.nn.ModuleDict({"a": inner, "b": torch.nn.Sequential(shared)})
    net.register_module("gone", None)
    x = torch.randn(2, 4, 8, 8)
    inner(x)
    layers = [m for m in net.modules() if isinstance(m, liftswap.LiftDownPool2d)]
    assert len(layers) == 2 and all(m.last_regularization is not None for m in layers)
    clear_regularization(net)
    assert all(m.last_regularization is None for m in layers)
    assert liftswap.regularization_loss(net).item() == 0.0


def test_regularization_holds_no_old_graph():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), liftswap.LiftDownPool2d(4, init="paper"))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    first = None
    live = []
    for step in range(30):
        reg = liftswap.regularization_loss(net)
        if step == 0:
            assert reg.item() == 0.0
        out = net(torch.randn(2, 3, 16, 16))
        reg = liftswap.regularization_loss(net)
        assert reg.requires_grad and reg.item() > 0
        if step == 1:
            first = weakref.ref(reg)
        (out.mean() + reg).backward()
        opt.step()
        opt.zero_grad()
        del out, reg
        live.append(sum(1 for m in net.modules() if getattr(m, "last_regularization", None) is not None))
    assert first() is None  # the step-1 graph was released
    assert set(live) == {1}  # one value per layer, never accumulating
    with torch.no_grad():
        net.eval()(torch.randn(2, 3, 16, 16))
    assert net[1].last_regularization is None


# ---------------------------------------------------------------- gradients, functional, compile, fx


def test_copies_mid_training_leave_the_regulariser_behind():
    # copy.deepcopy(model) after a training step (best-model keeping, EMA, SWA) and pickling: the
    # recorded regulariser is a graph of that step, a non-leaf that deepcopy refuses
    import copy
    import io
    import pickle

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), liftswap.LiftDownPool2d(4, init="paper"))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = net.eval()(x)
    (net.train()(x).mean() + liftswap.regularization_loss(net)).backward()
    kept = liftswap.regularization_loss(net)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net)), torch.load(buf, weights_only=False)):
        assert twin[1].last_regularization is None
        assert net[1].last_regularization is kept  # the original keeps its own
        with torch.no_grad():
            assert torch.equal(twin.eval()(x), expected)
        twin.train()(x)  # and a copy records its own
        assert torch.allclose(liftswap.regularization_loss(twin), kept.detach())


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradcheck_down_and_up_after_down(dims, backend):
    down, up = make_pair(dims, channels=2, dtype=torch.float64, init="paper", output="gated")
    randomize(down, seed=3).double()
    x = torch.randn((1, 2) + (3,) * dims, dtype=torch.float64, requires_grad=True)
    params = [down.predict.dw.weight, down.update.pw.weight, down.gamma]

    def down_fn(x, *ps):
        return down(x)

    def roundtrip(x, *ps):
        return up(*down(x), output_size=x.shape[2:])

    assert torch.autograd.gradcheck(down_fn, (x, *params))
    assert torch.autograd.gradcheck(roundtrip, (x, *params))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_module_equals_functional(dims, backend):
    """The module and the functional forms on this backend against the op-by-op reference, float64."""
    down, up = make_pair(dims, dtype=torch.float64, init="paper", output="sum")
    randomize(down).double()
    p, u = down.predict.weights(), down.update.weights()
    x = torch.randn((2, 3) + (7,) * dims, dtype=torch.float64)
    y, details = down(x)
    got = lift_down_pool(x, p, u, down.axes, "sum")
    ref_y, ref_details, _, _ = reference.down_pool(x, p, u, down.axes, "sum", None, False)
    assert rel_err([y, details, got.y, got.details], [ref_y, ref_details] * 2) < 1e-12
    rec = lift_up_pool(y, details, p, u, down.axes, "sum", output_size=x.shape[2:])
    ref_rec = reference.up_pool(y, details, p, u, down.axes, "sum", None)[(...,) + (slice(0, 7),) * dims]
    assert rel_err([up(y, details, output_size=x.shape[2:]), rec], [ref_rec] * 2) < 1e-12

def test_parametrized_weights_are_read(backend):
    """A weight under torch.nn.utils.parametrize (not a registered parameter) is what the layer
    uses: its output equals a plain layer's holding the parametrized values."""
    from torch.nn.utils import parametrize

    class Double(torch.nn.Module):
        def forward(self, w):
            return 2 * w

    down = randomize(liftswap.LiftDownPool2d(3, init="paper")).double().eval()
    plain = liftswap.LiftDownPool2d(3, init="paper").double().eval()
    plain.load_state_dict(down.state_dict())
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    before = down(x)
    with torch.no_grad():
        plain.predict.pw.weight.mul_(2)
        plain.update.dw.weight.mul_(2)
    parametrize.register_parametrization(down.predict.pw, "weight", Double())
    parametrize.register_parametrization(down.update.dw, "weight", Double())
    assert rel_err(down(x), plain(x)) < 1e-12 and rel_err(down(x), before) > 1e-3



class _TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = liftswap.LiftDownPool2d(4, init="paper", return_details=True)
        self.up = liftswap.LiftUpPool2d(self.pool)
        self.head = torch.nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y, details = self.pool(torch.relu(self.conv(x)))
        return self.head(self.up(y, details, output_size=x.shape[2:]))


def test_torch_compile_matches_eager(backend):
    torch.manual_seed(0)
    net = _TinyNet()
    randomize(net.pool)
    x = torch.randn(2, 3, 11, 10)
    eager_out = net(x)
    eager_reg = liftswap.regularization_loss(net)
    (eager_out.square().mean() + eager_reg).backward()
    eager_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = torch.compile(net)
    out = compiled(x)
    reg = liftswap.regularization_loss(compiled)
    (out.square().mean() + reg).backward()
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reg, eager_reg, rtol=1e-5, atol=1e-6)
    for p, g in zip(net.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tracer", ["compile", "export", "export_strict", "eager"])
def test_is_exporting_tells_export_from_compile(tracer):
    """The layers' export-only paths (and, on CUDA, the kernels' operators under compile) hinge on
    this. Before torch 2.14 dynamo replaced torch.compiler.is_exporting() by True under compile (on
    the H200's torch 2.11 compiled layers never reached the Triton operators)."""
    from liftswap._compat import is_exporting

    class Branch(torch.nn.Module):
        def forward(self, x):
            return x + 1 if is_exporting() else x - 1

    if tracer == "export_strict" and not hasattr(torch.compiler, "is_exporting"):
        pytest.skip("torch < 2.7 cannot tell strict export (dynamo) from torch.compile")
    x = torch.zeros(3)
    if tracer == "compile":
        torch._dynamo.reset()
        out = torch.compile(Branch(), fullgraph=True)(x)
    elif tracer == "eager":
        out = Branch()(x)
    else:
        out = torch.export.export(Branch(), (x,), strict=tracer == "export_strict").module()(x)
    assert out.tolist() == ([1.0] * 3 if tracer.startswith("export") else [-1.0] * 3)


def test_fx_trace_keeps_each_layer_one_node(backend):
    gm = torch.fx.symbolic_trace(_TinyNet())
    targets = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert targets.count("pool") == 1 and targets.count("up") == 1
    assert not any(str(t).startswith(("pool.", "up.")) for t in targets)
    x = torch.randn(2, 3, 9, 8)
    net = _TinyNet()
    gm = torch.fx.symbolic_trace(net)
    torch.testing.assert_close(gm(x), net(x))


# ---------------------------------------------------------------- errors and repr


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kernel_size": 4}, "kernel_size must be odd.*4"),
        ({"kernel_size": 0}, "kernel_size must be a positive integer.*0"),
        ({"init": "db2"}, "init must be one of.*'db2'"),
        ({"output": "max"}, "output must be one of.*'max'"),
        ({"axes": (-3,)}, "axis -3 is not a spatial axis"),
        ({"axes": (-1, -1)}, "distinct"),
        ({"lambda_u": -1.0}, "lambda_u must be.*-1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        liftswap.LiftDownPool2d(4, **kwargs)


def test_bad_inputs():
    pool = liftswap.LiftDownPool2d(4, return_details=True)
    with pytest.raises(ValueError, match=r"expects a 4D input \(N, C, H, W\), got shape \(4, 8, 8\)"):
        pool(torch.randn(4, 8, 8))
    with pytest.raises(ValueError, match="built for 4 channels, got input with 3"):
        pool(torch.randn(1, 3, 8, 8))
    up = liftswap.LiftUpPool2d(pool)
    y, details = pool(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"details must have shape \(1, 3, 4, 4, 4\)"):
        up(y, details[:, :2])
    with pytest.raises(ValueError, match="takes its paired LiftDownPool2d, got LiftDownPool1d"):
        liftswap.LiftUpPool2d(liftswap.LiftDownPool1d(4))


def test_extra_repr():
    pool = liftswap.LiftDownPool2d(8, kernel_size=5, init="lazy", output="sum", axes=(-1,))
    assert pool.extra_repr().startswith("8, kernel_size=5, init='lazy', output='sum', axes=(-1,)")
    assert "base=0.0" in repr(pool)
    assert "shares P, U and gamma" in repr(liftswap.LiftUpPool2d(pool))


def test_backward_saves_only_inputs_and_parameters(backend):
    """The layers recompute their intermediates in backward: autograd keeps x (and the weights,
    and the regulariser's two, which its backward reads)."""
    check_saved_bytes_and_gradients()


def check_saved_bytes_and_gradients(shape=(2, 8, 32, 32)):
    pool = randomize(liftswap.LiftDownPool2d(shape[1], init="paper", return_details=True))
    x = torch.randn(shape, requires_grad=True)
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, details = pool(x)
    params = sum(p.numel() * p.element_size() for p in [*pool.parameters(), pool._lambdas])
    assert sum(saved.values()) == x.numel() * x.element_size() + params
    # and the gradients are those of autograd through the reference's ops
    (y.sum() + details.square().sum() + liftswap.regularization_loss(pool)).backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref = reference.down_pool(x2, pool.predict.weights(), pool.update.weights(), pool.axes, pool.output, pool.gamma, True)
    ref_y, ref_details, c_u, c_p = ref
    (ref_y.sum() + ref_details.square().sum() + pool.lambda_u * c_u + pool.lambda_p * c_p).backward()
    torch.testing.assert_close(x.grad, x2.grad)
