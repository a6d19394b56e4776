"""The liftswap operators (liftswap/ops/operators.py) on each backend present: torch.library's
opcheck, gradients of the reference backward that runs inside the operator, torch.compile keeping
each operator whole (and running the kernel), and torch.export recording standard ops only.
The Triton backend's opcheck runs under the interpreter (tests/triton_interpreted.py)."""

import pytest
import torch
import torch.nn.functional as F

import liftswap
from liftswap.ops import cpu, max_pool_stride1, reference
from liftswap.ops.operators import Args, down_pool_bands
from test_layers import randomize, rel_err, weighted_sum

POOLS = {1: liftswap.LiftDownPool1d, 2: liftswap.LiftDownPool2d, 3: liftswap.LiftDownPool3d}
UNPOOLS = {1: liftswap.LiftUpPool1d, 2: liftswap.LiftUpPool2d, 3: liftswap.LiftUpPool3d}


def layer(dims, output="gated", channels=2):
    return randomize(POOLS[dims](channels, init="paper", output=output, return_details=True), seed=dims).double()


def args_of(down):
    return Args.of(down.predict.weights(), down.update.weights(), down.gamma, down.axes, down.output)


@pytest.mark.parametrize("dims,output", [(1, "gated"), (2, "LL"), (2, "sum"), (2, "gated"), (3, "gated")])
def test_opcheck_down_and_up_pool(dims, output, backend):
    down = layer(dims, output)
    a = args_of(down)
    x = torch.randn((2, 2) + (5, 6, 3)[:dims], dtype=torch.float64, requires_grad=True)
    for with_costs in (False, True):
        torch.library.opcheck(torch.ops.liftswap.lift_down_pool.default, (x, *a, with_costs))
    y, details, _ = (t.detach() for t in torch.ops.liftswap.lift_down_pool(x, *a, False))  # (leaves: the up pool's inputs)
    torch.library.opcheck(torch.ops.liftswap.lift_up_pool.default, (y.requires_grad_(), details.requires_grad_(), *a))


@pytest.mark.parametrize("shape,k,p,d", [((2, 3, 9), [3], [1], [1]), ((2, 3, 8, 7), [3, 2], [1, 0], [1, 2]), ((1, 2, 4, 5, 4), [3, 3, 3], [1, 1, 1], [1, 1, 1])])
def test_opcheck_max_pool_stride1(shape, k, p, d, backend):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.liftswap.max_pool_stride1.default, (x, k, p, d, True))
    torch.library.opcheck(torch.ops.liftswap.max_pool_stride1.default, (x.detach(), k, p, d, False))  # no backward
    x = torch.randint(0, 3, shape).double().requires_grad_(True)  # small integers: many tied maxima
    ref = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(k)](x, k, 1, p, d)
    out = max_pool_stride1(x, k, p, d)
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    # the gradient goes to each window's first maximum, as PyTorch's pooling routes it (summed in
    # another order where windows overlap)
    assert rel_err(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0]) < 1e-14
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        max_pool_stride1(x, k, p, d)
    assert [(t.dtype, t.shape) for t in saved] == [(torch.uint8, ref.shape)]  # one byte per output


@pytest.mark.parametrize("shape,window", [((2, 2, 7, 6), [3, 3, 1, 1]), ((1, 2, 5, 8), [2, 3, 0, 1])])
def test_down_pools_of_a_max_window(shape, window, backend):
    """Both down pool operators with ``max_window`` (kernel sizes, paddings: the preserve mode's
    stride-1 max pool, which the CUDA kernel computes as it reads x; elsewhere the pool runs first
    inside the operator): opcheck, and outputs and every gradient (through the outputs and the
    costs, then again with create_graph=True) of autograd through PyTorch's max pool and the
    reference; x and the weights alone are kept for backward."""
    down = layer(2)
    a = args_of(down)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    k, p = window[:2], window[2:]
    torch.library.opcheck(torch.ops.liftswap.lift_down_pool.default, (x, *a, True, True, window))
    lifted = a._replace(gamma=None, output="LL")  # (the bands operator's arguments: unscaled bands)
    torch.library.opcheck(torch.ops.liftswap.lift_down_pool_bands.default, (x, *lifted, "polyphase", True, window))
    weights = [t for t in a.tensors() if t is not None]

    def outputs(pooled):
        y, details, costs = (torch.ops.liftswap.lift_down_pool(x, *a, True, True, window) if pooled is None
                             else torch.ops.liftswap.lift_down_pool(pooled, *a, True))  # fmt: skip
        bands, _ = (torch.ops.liftswap.lift_down_pool_bands(x, *lifted, "polyphase", False, window) if pooled is None
                    else torch.ops.liftswap.lift_down_pool_bands(pooled, *lifted, "polyphase", False))  # fmt: skip
        return [y, details, costs, bands]

    def grads(pooled_fn, twice=False):
        outs = outputs(pooled_fn())
        got = torch.autograd.grad(weighted_sum(outs), [x, *weights], create_graph=twice)
        if twice:
            got = torch.autograd.grad(got[0].sin().sum(), [x, *weights])
        return [*outs, *got]

    with cpu.enabled(False):  # the reference: PyTorch's max pool, then the operators on its output
        ref = grads(lambda: F.max_pool2d(x, k, 1, p))
        ref_twice = grads(lambda: F.max_pool2d(x, k, 1, p), True)
    got = grads(lambda: None)
    assert max(rel_err(g, r) for g, r in zip(got, ref)) < 1e-12
    assert max(rel_err(g, r) for g, r in zip(grads(lambda: None, True), ref_twice)) < 1e-12
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.untyped_storage().data_ptr()) or t, lambda t: t):
        torch.ops.liftswap.lift_down_pool(x, *a, True, True, window)
    assert {t.untyped_storage().data_ptr() for t in [x, *weights]} == set(saved)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradients_equal_autograd_through_the_reference(dims, backend):
    """The operator's backward (the kernel's, or the reference recomputed and differentiated inside
    the operator) against autograd through the reference's ops, every input and weight, float64."""
    down = layer(dims)
    up = UNPOOLS[dims](down)
    x = torch.randn((2, 2) + (7, 6, 5)[:dims], dtype=torch.float64, requires_grad=True)
    params = list(down.parameters())
    g = torch.Generator().manual_seed(dims)

    def loss(y, details, rec, regulariser):
        w = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (y, details, rec)]
        return (y * w[0]).sum() + (details * w[1]).sum() + (rec * w[2]).sum() + 7 * regulariser

    y, details = down(x)
    rec = up(y, details, output_size=x.shape[2:])
    got = torch.autograd.grad(loss(y, details, rec, down.last_regularization), [x, *params])
    g = torch.Generator().manual_seed(dims)
    p, u = down.predict.weights(), down.update.weights()
    ry, rd, c_u, c_p = reference.down_pool(x, p, u, down.axes, "gated", down.gamma, True)
    rrec = reference.up_pool(ry, rd, p, u, down.axes, "gated", down.gamma)[(...,) + tuple(slice(0, n) for n in x.shape[2:])]
    reg = down.lambda_u * c_u + down.lambda_p * c_p
    ref = torch.autograd.grad(loss(ry, rd, rrec, reg), [x, *params])
    assert rel_err(list(got), list(ref), floor=1.0) < 1e-11


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_costs_of_a_half_precision_input_are_float32(dtype, backend):
    """The costs output is float32 for a half-precision input (both operators, and their fake
    rules: opcheck), so the regulariser stays float32 with no conversion, against float64 costs
    of the same rounded input and weights; a layer's regulariser and an empty batch's are float32."""
    down = randomize(liftswap.LiftDownPool2d(2, init="paper"), seed=3).to(dtype)
    a = args_of(down)
    x = torch.randn(2, 2, 7, 6).to(dtype)
    torch.library.opcheck(torch.ops.liftswap.lift_down_pool.default, (x, *a, True))
    torch.library.opcheck(torch.ops.liftswap.lift_down_pool_bands.default, (x, *a, "polyphase", True))
    _, _, costs = torch.ops.liftswap.lift_down_pool(x, *a, True)
    _, bands_costs = torch.ops.liftswap.lift_down_pool_bands(x, *a, "polyphase", True)
    a64 = args_of(down.double())
    _, _, c_u, c_p = reference.down_pool(x.double(), a64.predict(), a64.update(), down.axes, "gated", a64.gamma, True)
    want = torch.stack((c_u, c_p))
    assert costs.dtype == bands_costs.dtype == torch.float32
    # within a rounding of the input's dtype: the intermediates are rounded to it, their errors averaged
    eps = torch.finfo(dtype).eps
    assert rel_err(costs.double(), want) < eps and rel_err(bands_costs.double(), want) < eps
    down.to(dtype)
    down(x)
    assert down.last_regularization.dtype == torch.float32 and liftswap.regularization_loss(down).dtype == torch.float32
    down(x[:0])
    assert down.last_regularization.dtype == torch.float32 and down.last_regularization.item() == 0


@pytest.mark.parametrize("shape", [(2, 2, 7, 6), (2, 2, 8, 9), (1, 2, 1, 1), (1, 2, 259, 258)])
def test_polyphase_places_every_band(shape, backend):
    """``lift_down_pool_bands`` "polyphase" puts band (r, q) of the down pool at rows 2i + r, columns
    2j + q (strided assignments of the reference's bands), with its costs, gradients (every input and
    weight, against autograd through the reference) and opcheck; odd sizes, and planes that the
    CPU kernel writes in place and that go lift by lift (over 256 x 256 values), float64."""
    down = layer(2, "LL")
    a = args_of(down)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    p, u = down.predict.weights(), down.update.weights()
    z, (c_u, c_p) = down_pool_bands(x, p, u, down.axes, "polyphase", True)
    ry, rd, rc_u, rc_p = reference.down_pool(x, p, u, down.axes, "LL", None, True)
    want = x.new_zeros(z.shape)
    for b, band in enumerate([ry, *rd.unbind(1)]):  # band (r, q) at rows 2i + r, columns 2j + q
        want[:, :, b >> 1 :: 2, b & 1 :: 2] = band
    assert z.shape == (shape[0], shape[1], shape[2] + shape[2] % 2, shape[3] + shape[3] % 2)
    assert rel_err([z, c_u, c_p], [want, rc_u, rc_p]) < 1e-13
    w = torch.randn(z.shape, dtype=torch.float64)
    got = torch.autograd.grad((z * w).sum() + 5 * c_u + 3 * c_p, [x, *down.parameters()], allow_unused=True)
    ref = torch.autograd.grad((want * w).sum() + 5 * rc_u + 3 * rc_p, [x, *down.parameters()], allow_unused=True)
    assert rel_err([g for g in got if g is not None], [g for g in ref if g is not None], floor=1.0) < 1e-11
    if shape[2] < 100:
        for with_costs in (False, True):
            torch.library.opcheck(torch.ops.liftswap.lift_down_pool_bands.default, (x, *a, "polyphase", with_costs))


def test_polyphase_of_the_lazy_lift_is_the_input(backend):
    """At lazy init every band is a phase of the input: in their places they are the input itself
    (an odd size's replicated last sample past it), the identity a preserve conversion relies on."""
    down = POOLS[2](3, init="lazy", output="LL", return_details=True).double()
    x = torch.randn(2, 3, 9, 14, dtype=torch.float64)
    z, _ = down_pool_bands(x, down.predict.weights(), down.update.weights(), down.axes, "polyphase")
    assert torch.equal(z[:, :, :9], x) and torch.equal(z[:, :, 9], x[:, :, 8])


@pytest.mark.parametrize("dims,shape", [(2, (2, 2, 7, 6)), (2, (1, 2, 259, 258)), (1, (2, 2, 9)), (3, (1, 2, 3, 5, 4))])
def test_approximation_alone(dims, shape, backend):
    """``lift_down_pool_bands`` "approximation" is the reference's approximation band: without
    costs (a 2-D layer's last lift then runs on half the lines), with costs, gradients and
    opcheck; a LiftDownPool with output "LL" and no details returns it."""
    down = layer(dims, "LL")
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    p, u = down.predict.weights(), down.update.weights()
    ry, _, rc_u, rc_p = reference.down_pool(x, p, u, down.axes, "LL", None, True)
    with torch.no_grad():
        y, costs = down_pool_bands(x, p, u, down.axes, "approximation")
    assert costs is None and rel_err(y, ry) < 1e-13
    y, (c_u, c_p) = down_pool_bands(x, p, u, down.axes, "approximation", True)
    assert rel_err([y, c_u, c_p], [ry, rc_u, rc_p]) < 1e-13
    w = torch.randn(y.shape, dtype=torch.float64)
    got = torch.autograd.grad((y * w).sum() + 5 * c_u, [x, *down.parameters()], allow_unused=True)
    ref = torch.autograd.grad((ry * w).sum() + 5 * rc_u, [x, *down.parameters()], allow_unused=True)
    assert rel_err([g for g in got if g is not None], [g for g in ref if g is not None], floor=1.0) < 1e-11
    down.return_details = False
    assert rel_err(down.eval()(x), ry) < 1e-13
    if shape[-1] < 100:
        for with_costs in (False, True):
            torch.library.opcheck(torch.ops.liftswap.lift_down_pool_bands.default, (x, *args_of(down), "approximation", with_costs))


def test_compile_keeps_each_operator_whole(backend, monkeypatch):
    """torch.compile records one node per layer and runs the backend's kernel in it."""
    down = layer(2)
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(2, 2, 9, 8, dtype=torch.float64, requires_grad=True)

    def run(d, u):
        y, details = d(x)
        rec = u(y, details, output_size=x.shape[2:])
        loss = y.square().sum() + details.sin().sum() + rec.cos().sum() + liftswap.regularization_loss(down)
        return [y, details, rec, *torch.autograd.grad(loss, [x, *down.parameters()])]

    ref = run(down, up)
    calls = []
    for name in ("down_forward", "down_backward", "up_forward", "up_backward"):
        monkeypatch.setattr(cpu, name, lambda *a, _f=getattr(cpu, name), _n=name: calls.append(_n) or _f(*a))
    graphs = []

    def backend_fn(gm, inputs):
        graphs.append(str(gm.graph))
        return gm

    torch._dynamo.reset()
    from torch._dynamo.backends.common import aot_autograd

    compiled = aot_autograd(fw_compiler=backend_fn, bw_compiler=backend_fn)
    got = run(torch.compile(down, backend=compiled, fullgraph=True), torch.compile(up, backend=compiled, fullgraph=True))
    assert rel_err(got, ref) < 1e-12
    text = "\n".join(graphs)
    assert "liftswap.lift_down_pool.default" in text and "liftswap.lift_up_pool.default" in text
    assert "liftswap.lift_down_pool_backward.default" in text and "convolution" not in text  # no op-by-op math
    assert set(calls) == ({"down_forward", "down_backward", "up_forward", "up_backward"} if backend == "cpu" else set())


@pytest.mark.skipif(tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 5),
                    reason="torch 2.4's exporter stops at the layer's parameters (docs/versions.md)")
def test_export_records_standard_ops(backend):
    """torch.export records the reference's standard ops: the program runs where liftswap is not installed."""
    down = layer(2).eval()
    x = torch.randn(2, 2, 9, 8, dtype=torch.float64)
    program = torch.export.export(down, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("liftswap" in t for t in targets)
    y, details = program.module()(x)
    ref_y, ref_details, _, _ = reference.down_pool(x, down.predict.weights(), down.update.weights(), down.axes, "gated", down.gamma, False)
    assert rel_err([y, details], [ref_y, ref_details]) < 1e-12
    x2 = torch.randn(3, 2, 11, 8, dtype=torch.float64)  # the recorded graph is not specialised to the example's size
    program = torch.export.export(down, (x,), dynamic_shapes=({0: torch.export.Dim("n"), 2: torch.export.Dim("h", min=4)},))
    y2, _ = program.module()(x2)
    assert rel_err(y2, down(x2)[0]) < 1e-12


def _step(down, up, x):
    """Outputs and every gradient of a step through a down pool, an up pool and the regulariser."""
    y, details = down(x)
    rec = up(y, details, output_size=x.shape[2:])
    loss = y.square().sum() + details.sin().sum() + rec.cos().sum() + liftswap.regularization_loss(down)
    return [y, details, rec, *torch.autograd.grad(loss, [x, *down.parameters()])]


@pytest.mark.parametrize("dims", [1, 2])
def test_direct_calls_run_the_operators_kernels_and_rule(dims, backend, monkeypatch):
    """Eager calls on plain tensors skip the dispatcher (``operators._DIRECT``) and run the same
    kernels and autograd rule: the same values, bit for bit, as through the dispatcher, the
    backend's kernel called (not the reference's ops), and no dispatcher call made."""
    from liftswap.ops import operators

    down = layer(dims)
    up = UNPOOLS[dims](down)
    x = torch.randn((2, 2) + (7, 6)[:dims], dtype=torch.float64, requires_grad=True)
    monkeypatch.setattr(operators, "_DIRECT_CALLS", False)
    dispatched = _step(down, up, x)
    monkeypatch.setattr(operators, "_DIRECT_CALLS", True)
    calls = []
    for name in ("down_forward", "down_backward", "up_forward", "up_backward"):
        monkeypatch.setattr(cpu, name, lambda *a, _f=getattr(cpu, name), _n=name: calls.append(_n) or _f(*a))

    class Counter(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append(str(func))
            return func(*args, **(kwargs or {}))

    direct = _step(down, up, x)
    assert all(torch.equal(a, b) for a, b in zip(direct, dispatched))
    assert calls == (["down_forward", "up_forward", "up_backward", "down_backward"] if backend == "cpu" else [])
    assert rel_err(direct[:3], _step(down, up, x)[:3]) == 0  # (and deterministic)
    with Counter():  # a dispatch mode sees each operator as one call: the dispatcher's path
        _step(down, up, x)
    ops = [c for c in calls if c.startswith("liftswap.")]
    assert ops == ["liftswap.lift_down_pool.default", "liftswap.lift_up_pool.default",
                   "liftswap.lift_up_pool_backward.default", "liftswap.lift_down_pool_backward.default"]  # fmt: skip


def test_direct_calls_route_only_what_nothing_else_sees():
    """The direct callers serve plain CPU tensors with no mode, autocast or tracer active; the
    dispatcher everything that must see the operator, and the profiler names the direct calls."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.overrides import TorchFunctionMode

    from liftswap.ops.operators import _route

    x = torch.randn(2, 2, 4, 4)
    w = torch.nn.Parameter(torch.randn(2, 3))
    assert _route(x, w, None) == "direct"
    assert _route(x, w.double(), None) == "direct"  # (a dtype mismatch is the kernel's to judge)
    assert _route(x, torch.randn(2, 3, device="meta")) == "op"  # tensors on two devices
    assert _route(x.to("meta"), w.to("meta")) == "op"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # CPU autocast's rule runs the kernel in float32
        assert _route(x, w) == "op"
    with FakeTensorMode():
        assert _route(x, w) == "op"

    class PassThrough(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with PassThrough():
        assert _route(x, w) == "op"

    class Subclass(torch.Tensor):
        pass

    assert _route(x.as_subclass(Subclass), w) == "reference"  # autograd must see its ops

    down = randomize(liftswap.LiftDownPool2d(2, return_details=True))
    up = liftswap.LiftUpPool2d(down)
    x.requires_grad_(True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _step(down, up, x)
    names = {e.name for e in prof.events()}
    assert {"liftswap::lift_down_pool", "liftswap::lift_down_pool_backward", "liftswap::lift_up_pool",
            "liftswap::lift_up_pool_backward"} <= names  # fmt: skip


@pytest.mark.parametrize("dims", [1, 2])
def test_second_derivatives(dims, backend):
    """A backward with create_graph=True (gradient penalties, meta-learning) gives gradients that
    are differentiable in turn, through every weight: gradgradcheck's finite differences, float64,
    for the down pool with its regulariser, the up pool, the bands operator and the stride-1 max pool."""
    down = layer(dims)
    up = UNPOOLS[dims](down)
    x = torch.randn((1, 2) + (5, 4)[:dims], dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in down.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in down.parameters()]

    def step(x, *ps):
        weights = dict(zip(names, ps))
        y, details = torch.func.functional_call(down, weights, (x,))
        reg = down.last_regularization
        rec = torch.func.functional_call(up, {f"down.{k}": v for k, v in weights.items()}, (y, details), {"output_size": x.shape[2:]})
        return y, details, rec, reg

    assert torch.autograd.gradgradcheck(step, (x, *params), fast_mode=True)
    p, u = down.predict.weights(), down.update.weights()
    for layout in ("polyphase", "approximation"):
        assert torch.autograd.gradgradcheck(lambda x: down_pool_bands(x, p, u, down.axes, layout, True)[0].sin(), (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda x: max_pool_stride1(x, [3] * dims, [1] * dims, [1] * dims).square(), (x,), fast_mode=True)
