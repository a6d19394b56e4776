"""The layers on a CUDA device against a float64 CPU reference (skipped without a GPU).

On CUDA the layers run the Triton kernels (liftswap/ops/cuda.py); these tests pin them
against the PyTorch ops and float64, the exact inverse, the custom operators under torch.compile,
autocast and a patched model. CI has no GPU: these run on a lent H200 (docs/kernels.md, "On a GPU";
benchmarks/results/cuda/test_cuda.log).
"""

import pytest
import torch

import liftswap
from liftswap.ops import cuda as lift_triton
from liftswap.layers.lift_pool import LIFT_DOWN_POOLS, LIFT_UP_POOLS
from test_layers import randomize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def norm_rel_err(a, b):
    """|a - b| / |b| in the 2-norm (half-precision rounding spreads over every element)."""
    return ((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm().clamp_min(1e-30)).item()


def forward_backward(down, up, x, details_used=True):
    """Outputs and gradients (input and every parameter) of a down (+ up) pass."""
    x = x.clone().requires_grad_(True)
    y, details = down(x)
    rec = up(y, details, output_size=x.shape[2:])
    loss = y.square().sum() + liftswap.regularization_loss(down)
    if details_used:  # else the kernels take y's gradient alone
        loss = loss + details.sin().sum() + rec.cos().sum()
    grads = torch.autograd.grad(loss, [x, *down.parameters()])
    return [y, details, rec, *grads]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("init,output", [("haar", "gated"), ("paper", "sum"), ("lazy", "LL")])
def test_cuda_matches_float64_cpu(dims, init, output):
    down = randomize(LIFT_DOWN_POOLS[dims](4, init=init, output=output, return_details=True), seed=dims)
    x = torch.randn((2, 4) + (9, 10, 7)[:dims], dtype=torch.float64)
    ref = forward_backward(down.double(), LIFT_UP_POOLS[dims](down), x)
    down_cuda = down.float().cuda()
    got = forward_backward(down_cuda, LIFT_UP_POOLS[dims](down_cuda), x.float().cuda())
    assert all(g.is_cuda for g in got)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert norm_rel_err(g, r) < 1e-5  # float32 rounding, far under any real error


@pytest.mark.parametrize("details_used", [True, False])
@pytest.mark.parametrize("shape", [(2, 4, 70, 66), (1, 3, 5, 1), (3, 2, 1, 9)])
def test_cuda_triton_matches_pytorch_ops(shape, details_used):
    """The Triton kernels against the PyTorch ops on the same GPU, planes over many programs included."""
    down = randomize(liftswap.LiftDownPool2d(shape[1], init="paper", return_details=True)).cuda()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(shape, device="cuda")
    assert lift_triton.usable(x, down.predict.dw.weight)
    got = forward_backward(down, up, x, details_used)
    with lift_triton.enabled(False):
        ref = forward_backward(down, up, x, details_used)
    for g, r in zip(got, ref):
        assert norm_rel_err(g, r) < 1e-5


@pytest.mark.parametrize("layout", ["polyphase", "approximation"])
def test_cuda_bands_for_lifted_convolutions(layout):
    """``lift_down_pool_bands`` on CUDA (Triton down pool, then the layout) against float64 CPU:
    output, costs and gradients."""
    from liftswap.ops.operators import down_pool_bands

    down = randomize(liftswap.LiftDownPool2d(4, init="paper", output="LL", return_details=True), seed=5)
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    outs = []
    for d, t in ((down.double(), x), (down.float().cuda(), x.float().cuda())):
        t = t.clone().requires_grad_(True)
        out, c_u, c_p = down_pool_bands(t, d.predict.weights(), d.update.weights(), d.axes, layout, True)
        loss = out.sin().sum() + 3 * c_u + 2 * c_p
        outs.append([out, c_u, c_p, *torch.autograd.grad(loss, [t, *d.parameters()], allow_unused=True)])
        down = down.cpu()
    for g, r in zip(*outs[::-1]):
        if r is not None:
            assert norm_rel_err(g, r) < 1e-5


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_kernel_size_5_matches_float64_cpu(dims, dtype, monkeypatch):
    """5 taps: the reference's composition with the residual kernels (liftswap/ops/cuda_residual.py),
    in float32 and in bfloat16 (float32 arithmetic in the kernel, the composition's additions in
    bfloat16), against float64 on the CPU."""
    from liftswap.ops import cuda_residual

    down = randomize(LIFT_DOWN_POOLS[dims](4, kernel_size=5, init="paper", output="gated", return_details=True), seed=dims)
    x = torch.randn((2, 4) + (33, 30)[:dims], dtype=torch.float64)
    ref = forward_backward(down.double(), LIFT_UP_POOLS[dims](down), x)
    counts = []
    kernel = cuda_residual._residual_forward_kernel
    monkeypatch.setattr(cuda_residual, "_residual_forward_kernel", type("K", (), {"__getitem__": lambda _, g: counts.append(1) or kernel[g]})())
    down_cuda = down.to("cuda", dtype)
    got = forward_backward(down_cuda, LIFT_UP_POOLS[dims](down_cuda), x.to("cuda", dtype))
    assert counts
    for g, r in zip(got, ref):
        assert norm_rel_err(g, r) < (1e-5 if dtype == torch.float32 else 3e-2)


def test_cuda_inverse_is_exact():
    down = randomize(liftswap.LiftDownPool2d(8, init="paper", return_details=True)).cuda()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(4, 8, 33, 30, device="cuda")
    with torch.no_grad():
        rec = up(*down(x), output_size=x.shape[2:])
    assert norm_rel_err(rec, x) < 1e-6


@pytest.mark.parametrize("output", ["gated", "sum"])
@pytest.mark.parametrize("shape", [(2, 4, 70, 66), (1, 3, 5, 1), (3, 2, 14, 14)])
def test_cuda_without_details_matches_pytorch_ops(shape, output):
    """A layer without return_details (the kernel writes y alone) against the PyTorch ops on the
    same GPU: y, the regulariser and every gradient."""
    down = randomize(liftswap.LiftDownPool2d(shape[1], init="haar", output=output)).cuda()
    x = torch.randn(shape, device="cuda", requires_grad=True)

    def run():
        y = down(x)
        loss = (y * y.detach().cos()).sum() + liftswap.regularization_loss(down)
        return [y, liftswap.regularization_loss(down), *torch.autograd.grad(loss, [x, *down.parameters()])]

    got = run()
    with lift_triton.enabled(False):
        ref = run()
    for g, r in zip(got, ref):
        assert norm_rel_err(g, r) < 1e-5


def test_cuda_compile_matches_eager(monkeypatch):
    """Compiled, the down and up pools are the kernels' custom operators."""
    down = randomize(liftswap.LiftDownPool2d(8, init="paper", return_details=True)).cuda()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(2, 8, 16, 15, device="cuda")
    eager = forward_backward(down, up, x)
    calls = []
    for name in ("_down_forward", "_up_forward"):
        monkeypatch.setattr(lift_triton, name, lambda *a, _f=getattr(lift_triton, name), _n=name: calls.append(_n) or _f(*a))
    compiled_down, compiled_up = torch.compile(down), torch.compile(up)
    got = forward_backward(compiled_down, compiled_up, x)
    assert {"_down_forward", "_up_forward"} <= set(calls)
    for g, r in zip(got, eager):
        assert norm_rel_err(g, r) < 1e-5


def test_cuda_graph_replay_equals_eager():
    """A whole training step (down, up, regulariser, gradients) captured in a CUDA graph and
    replayed on new data in its static input equals eager: no host synchronisation inside."""
    torch.manual_seed(0)
    down = randomize(liftswap.LiftDownPool2d(8, return_details=True)).cuda()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(2, 8, 17, 18, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up on a side stream, as torch.cuda.graph asks (Triton compiles here)
            forward_backward(down, up, x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = forward_backward(down, up, x)
    fresh = torch.randn_like(x)
    x.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    for g, r in zip(static_out, forward_backward(down, up, fresh)):
        assert norm_rel_err(g, r) < 1e-6


def test_cuda_compile_reduce_overhead_runs_the_kernels(monkeypatch):
    """torch.compile(mode="reduce-overhead") (CUDA graphs) runs the operators' Triton kernels."""
    down = randomize(liftswap.LiftDownPool2d(8, return_details=True)).cuda().eval()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(2, 8, 16, 15, device="cuda")
    with torch.no_grad():
        y_ref, d_ref = down(x)
        rec_ref = up(y_ref, d_ref, output_size=x.shape[2:])
    calls = []
    for name in ("down_forward", "up_forward"):
        monkeypatch.setattr(lift_triton, name, lambda *a, _f=getattr(lift_triton, name), _n=name: calls.append(_n) or _f(*a))
    torch._dynamo.reset()

    def round_trip(t):
        y, details = down(t)
        return y, up(y, details, output_size=t.shape[2:])

    compiled = torch.compile(round_trip, mode="reduce-overhead")
    with torch.no_grad():
        for _ in range(3):  # record, then replay
            y, rec = compiled(x)
    assert {"down_forward", "up_forward"} <= set(calls)
    assert norm_rel_err(y, y_ref) < 1e-6 and norm_rel_err(rec, rec_ref) < 1e-6


def test_cuda_autocast_bf16_keeps_float32():
    """Like MaxPool, the layer keeps its input's dtype under autocast: the Triton kernels compute
    in float32, so autocast changes nothing; the PyTorch ops path runs its convolutions in bf16."""
    down = randomize(liftswap.LiftDownPool2d(8, init="paper", return_details=True)).cuda()
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(2, 8, 16, 16, device="cuda")
    ref = forward_backward(down, up, x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = forward_backward(down, up, x)
        with lift_triton.enabled(False):
            ops = forward_backward(down, up, x)
    for g, r in zip(got[:2], ref[:2]):  # y and details: the Triton kernels' outputs
        assert g.dtype == torch.float32 and norm_rel_err(g, r) < 1e-6
    for g in ops:
        assert torch.isfinite(g).all()
    for g, r in zip(ops[:3], ref[:3]):
        assert norm_rel_err(g, r) < 1e-2  # bf16 convolutions: 8 bits of mantissa
    down(x)
    reg = down.last_regularization
    with torch.autocast("cuda", dtype=torch.bfloat16):
        down(x.bfloat16())  # a bfloat16 activation, as a convolution before the layer hands it
    # the costs come out of the kernel in float32: the regulariser is not rounded to bfloat16
    assert down.last_regularization.dtype == torch.float32
    assert abs(down.last_regularization.item() - reg.item()) / reg.item() < torch.finfo(torch.bfloat16).eps


def test_cuda_patched_resnet_keeps_function():
    torchvision = pytest.importorskip("torchvision")
    torch.backends.cudnn.allow_tf32 = False  # compare float32 with float32, not TF32 convolutions
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    patched = liftswap.patch(model, example_inputs=x)
    with torch.no_grad():
        want = model.cuda()(x.cuda())
        got = patched.cuda()(x.cuda())
    assert norm_rel_err(got, want) < 1e-5


@pytest.mark.parametrize("window", [(3, 2, 1), (2, 2, 0)])
def test_cuda_preserve_site_trains_with_its_max_pool_inside(window):
    """A preserve-converted max pool trains on CUDA as on the float64 CPU path (output, regulariser,
    the input's and every parameter's gradient), eager, compiled and replayed from a CUDA graph,
    with the max pool inside the down pool's kernel: autograd keeps x and the weights alone."""
    torch.manual_seed(0)
    k, s, p = window
    x = torch.randn(2, 8, 19, 18, dtype=torch.float64)
    site = liftswap.patch(torch.nn.Sequential(torch.nn.MaxPool2d(k, s, p)), example_inputs=x.float()).train()
    randomize(site, seed=3)

    def step(model, t):
        t = t.clone().requires_grad_(True)
        out = model(t)
        loss = out.sin().sum() + liftswap.regularization_loss(site)
        return [out, loss, *torch.autograd.grad(loss, [t, *site.parameters()])]

    ref = step(site.double(), x)
    site.float().cuda()
    xc = x.float().cuda()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.untyped_storage().data_ptr()) or t, lambda t: t):
        site(xc)
    kept = {t.untyped_storage().data_ptr() for t in [*site.parameters(), *site.buffers()]}
    assert set(saved) - kept == {xc.untyped_storage().data_ptr()}  # x, not the pool's output or winners
    for model in (site, torch.compile(site)):
        for g, r in zip(step(model, xc), ref):
            assert norm_rel_err(g, r) < 1e-5
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step(site, xc)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step(site, xc)
    fresh = torch.randn_like(xc)
    xc.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    for g, r in zip(static_out, step(site, fresh)):
        assert norm_rel_err(g, r) < 1e-6
