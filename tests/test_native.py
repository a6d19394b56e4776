"""The fused CPU kernel against the PyTorch implementation it replaces (same function, same gradients)."""

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import liftswap
from liftswap.layers import lift, lift_down_pool
from liftswap.ops import cpu as native, cpu_build as native_build, max_pool_stride1
from liftswap.layers.lift_pool import LIFT_DOWN_POOLS, LIFT_UP_POOLS, OperatorWeights
from test_layers import randomize, rel_err as layer_rel_err

needs_kernel = pytest.mark.skipif(not native.available(), reason=f"fused kernel unavailable: {native_build.error()}")


def test_kernel_is_built_where_ci_runs():
    # CI installs with a C++ compiler: there the kernel must be built, or every comparison below would be skipped.
    if os.environ.get("CI"):
        assert native.available(), native_build.error()


def run_both(module, x, seed=1, details_used=True):
    """Outputs, regulariser and every gradient, with the kernel and with PyTorch ops.

    With ``details_used`` False the loss ignores the details: their gradient is None, and the
    kernel's last lift makes the bands' gradient itself.
    """
    results = []
    for use_kernel in (True, False):
        with native.enabled(use_kernel):
            assert native.usable(x) == use_kernel
            xg = x.detach().clone().requires_grad_(True)
            y, details = module(xg)
            reg = module.last_regularization
            g = torch.Generator().manual_seed(seed)
            loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum()
            if details_used:
                loss = loss + (details * torch.randn(details.shape, generator=g, dtype=y.dtype)).sum()
            loss = loss + 3 * reg
            grads = torch.autograd.grad(loss, [xg, *module.parameters()])
            results.append([y, details, reg, *grads])
    return results


def rel_err(a, b):
    """:func:`test_layers.rel_err` relative to at least 1 (the scale of these tests' inputs and
    weights, all O(1)): a parameter gradient sums many O(1) terms, so its rounding error scales
    with them, not with a sum that cancels to near zero (seen: 2e-4 off by 2e-16)."""
    return layer_rel_err(a, b, floor=1.0)


CASES = [  # dims, shape, axes
    (1, (2, 3, 9), None),
    (2, (2, 3, 8, 7), None),
    (2, (2, 3, 1, 5), None),
    (2, (2, 4, 14, 14), None),
    (2, (6, 2, 40, 40), None),  # the kernel's 2-D passes: tiles of 4 planes, the last one short
    (2, (1, 2, 80, 100), None),  # a plane larger than a tile: a tile of one plane
    (2, (1, 1, 257, 258), None),  # a plane over 256 x 256 values: lift by lift
    (2, (2, 3, 5, 6), (-2,)),
    (3, (1, 2, 5, 4, 3), None),
    (3, (1, 2, 3, 4, 5), (-2, -1)),
    (3, (2, 2, 5, 3, 7), (-3, -1)),  # the lifted axes are not neighbours
]


@needs_kernel
@pytest.mark.parametrize("dims,shape,axes", CASES)
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
@pytest.mark.parametrize("init,output", [("haar", "gated"), ("lazy", "LL"), ("paper", "sum")])
@pytest.mark.parametrize("details_used", [True, False])
def test_kernel_equals_pytorch_float64(dims, shape, axes, kernel_size, init, output, details_used):
    pool = randomize(LIFT_DOWN_POOLS[dims](shape[1], kernel_size, init, output, return_details=True, axes=axes)).double()
    x = torch.randn(shape, dtype=torch.float64)
    got, ref = run_both(pool, x, details_used=details_used)
    for a, b in zip(got, ref):
        assert rel_err(a, b) <= 1e-12


@needs_kernel
@pytest.mark.parametrize("dims,shape,axes", CASES)
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("init,output", [("haar", "gated"), ("lazy", "LL"), ("paper", "sum")])
def test_up_pool_kernel_equals_pytorch_float64(dims, shape, axes, kernel_size, init, output):
    down = randomize(LIFT_DOWN_POOLS[dims](shape[1], kernel_size, init, output, return_details=True, axes=axes)).double()
    up = LIFT_UP_POOLS[dims](down)
    with torch.no_grad():
        y0, d0 = down(torch.randn(shape, dtype=torch.float64))
    results = []
    for use_kernel in (True, False):
        with native.enabled(use_kernel):
            y, details = y0.clone().requires_grad_(True), d0.clone().requires_grad_(True)
            x = up(y, details, output_size=shape[2:])
            g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
            results.append([x, *torch.autograd.grad((x * g).sum(), [y, details, *down.parameters()])])
    for a, b in zip(*results):
        assert rel_err(a, b) <= 1e-12


@needs_kernel
def test_two_lift_passes_fuse_planes_that_fit_a_tile(monkeypatch):
    """CASES cover both orders of a 2-D layer's kernel passes: by tiles of planes (one plane per
    tile up to 256 x 256 values), and lift by lift."""
    taken = {}
    for name in ("forward2", "backward2", "unlift2", "unlift_backward2"):
        fused = getattr(native._Kernel, name)

        def spy(self, *args, name=name, fused=fused):
            out = fused(self, *args)
            taken[name] = out is not None
            return out

        monkeypatch.setattr(native._Kernel, name, spy)
    for shape, expect in (((6, 2, 40, 40), True), ((2, 4, 14, 14), True), ((1, 2, 80, 100), True), ((1, 1, 257, 258), False)):
        down = liftswap.LiftDownPool2d(shape[1], return_details=True)
        up = liftswap.LiftUpPool2d(down)
        taken.clear()
        up(*down(torch.randn(shape, requires_grad=True)), output_size=shape[2:]).sum().backward()
        assert taken == dict.fromkeys(("forward2", "backward2", "unlift2", "unlift_backward2"), expect), shape


@needs_kernel
def test_up_pool_gradcheck_through_the_kernel():
    down = randomize(liftswap.LiftDownPool2d(2, init="paper", output="gated", return_details=True)).double()
    up = liftswap.LiftUpPool2d(down)
    y, details = (t.detach().requires_grad_(True) for t in down(torch.randn(1, 2, 5, 6, dtype=torch.float64)))
    assert native.usable(y)
    assert torch.autograd.gradcheck(lambda y, d, *ps: up(y, d, output_size=(5, 6)), (y, details, *down.parameters()))


@needs_kernel
@pytest.mark.parametrize("dims,shape,axes", CASES[:4])
def test_kernel_equals_pytorch_float32(dims, shape, axes):
    pool = randomize(LIFT_DOWN_POOLS[dims](shape[1], init="paper", output="gated", return_details=True, axes=axes))
    got, ref = run_both(pool, torch.randn(shape))
    y, details, reg, gx, *param_grads = zip(got, ref)
    for a, b in (y, details, reg, gx):
        assert rel_err(a, b) <= 1e-5
    for a, b in param_grads:  # sums over many elements, in another order
        assert rel_err(a, b) <= 1e-4


@needs_kernel
def test_gradcheck_through_the_kernel():
    pool = randomize(liftswap.LiftDownPool2d(2, init="paper", output="gated", return_details=True)).double()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    params = list(pool.parameters())
    assert native.usable(x)

    def fn(x, *ps):
        y, details = pool(x)
        return y, details, pool.last_regularization

    assert torch.autograd.gradcheck(fn, (x, *params))


@needs_kernel
def test_only_details_used_and_frozen_gamma():
    pool = randomize(liftswap.LiftDownPool2d(3, return_details=True)).double()
    pool.gamma.requires_grad_(False)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    grads = []
    for use_kernel in (True, False):
        with native.enabled(use_kernel):
            _, details = pool(x)
            grads.append(torch.autograd.grad(details.square().sum(), [x, pool.predict.dw.weight]))
    for a, b in zip(*grads):
        assert rel_err(a, b) <= 1e-12


@needs_kernel
def test_functional_without_biases_and_single_lift():
    c = 3
    g = torch.Generator().manual_seed(0)

    def weights(base):
        return OperatorWeights(base, torch.randn(c, 1, 3, generator=g, dtype=torch.float64), None, torch.randn(c, generator=g, dtype=torch.float64), None)

    p, u = weights(1.0), weights(0.5)
    x = torch.randn(2, c, 9, 8, dtype=torch.float64)
    for fn in (lambda: lift_down_pool(x, p, u, (-2, -1), "sum", None, True), lambda: lift(x, -2, p, u, True)):
        got = fn()
        with native.enabled(False):
            ref = fn()
        for a, b in zip(got, ref):
            assert rel_err(a, b) <= 1e-12


@needs_kernel
def test_threads_give_identical_results():
    pool = randomize(liftswap.LiftDownPool2d(16, init="paper", return_details=True))
    x = torch.randn(2, 16, 20, 18)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_both(pool, x)[0]
        torch.set_num_threads(2)
        two = run_both(pool, x)[0]
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        assert torch.equal(a, b)  # channels are split between threads, never a sum


@needs_kernel
def test_threads_give_identical_results_up_pool():
    down = randomize(liftswap.LiftDownPool2d(16, init="paper", return_details=True))
    up = liftswap.LiftUpPool2d(down)
    with torch.no_grad():
        y0, d0 = down(torch.randn(2, 16, 20, 18))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y, details = y0.clone().requires_grad_(True), d0.clone().requires_grad_(True)
            x = up(y, details, output_size=(20, 18))
            g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
            results.append([x, *torch.autograd.grad((x * g).sum(), [y, details, *down.parameters()])])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_kernel
def test_nan_and_non_contiguous_inputs():
    pool = randomize(liftswap.LiftDownPool2d(4, init="paper", return_details=True))
    x = torch.randn(2, 4, 9, 10).to(memory_format=torch.channels_last)
    x[0, 1, 3, 4] = float("nan")
    out = pool(x)
    with native.enabled(False):
        ref = pool(x)
    for a, b in zip(out, ref):
        assert torch.equal(a.isnan(), b.isnan()) and a.isnan().any()
        torch.testing.assert_close(a.nan_to_num(), b.nan_to_num(), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")  # jit.trace is deprecated
def test_pytorch_path_where_the_kernel_does_not_apply():
    x = torch.randn(3, 2, 5, 4)
    assert not native.usable(x.half())
    with native.enabled(False):
        assert not native.usable(x)
    pool = randomize(liftswap.LiftDownPool2d(2, init="paper")).eval()
    # vmap runs the reference op by op: each sample's result equals the batched (kernel) call
    batched = torch.func.vmap(pool)(x.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(batched, pool(x), rtol=1e-5, atol=1e-6)
    traced = torch.jit.trace(pool, x, check_trace=False)  # records standard PyTorch ops
    graph = str(traced.graph)
    assert "PythonOp" not in graph and "liftswap::" not in graph and torch.allclose(traced(x), pool(x), atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # CPU autocast runs the kernel in float32
        y = pool(x.bfloat16())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, pool(x.bfloat16().float()), rtol=0, atol=0)


def test_no_kernel_build_warns_once_and_computes_the_same(tmp_path):
    """An install without the compiled kernel (no compiler at build time) runs the PyTorch path after one warning."""
    script = textwrap.dedent(
        f"""
        import warnings, torch, liftswap, pathlib
        from liftswap.ops import cpu as native, cpu_build as native_build
        native_build._FOLDER = pathlib.Path({str(tmp_path)!r})  # a package folder with no build in it
        pool = liftswap.LiftDownPool2d(3, init="paper")
        x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
        pool.double()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = pool(x); y2 = pool(x)
        with native.enabled(False):
            ref = pool(x)
        msgs = [str(w.message) for w in caught if "fused CPU kernel" in str(w.message)]
        print(len(msgs), native.available(), torch.equal(y, ref) and torch.equal(y2, ref))
        print(msgs[0] if msgs else "")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    first, message = out.splitlines()[:2]
    assert first == "1 False True"
    assert "LIFTSWAP_NATIVE=0" in message and "installed without its compiled kernel" in message


def test_env_switch_turns_the_kernel_off():
    script = "from liftswap.ops import cpu as native; print(native.available())"
    env = dict(os.environ, LIFTSWAP_NATIVE="0")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False" and "fused CPU kernel" not in out.stderr


@needs_kernel
def test_damaged_kernel_build_is_never_loaded(tmp_path):
    """A truncated, altered or unlisted library is refused by its SHA-256, never loaded (SIGBUS / SIGILL)."""
    import shutil

    for f in native_build._FOLDER.iterdir():
        if f.name.startswith("_lift_kernel_") or f.name == "lift_kernel.json":
            shutil.copy(f, tmp_path / f.name)
    base = native_build._path("baseline")
    manifest = native_build._manifest(tmp_path)
    copy = tmp_path / base.name
    assert native_build._verified(copy, manifest)
    data = copy.read_bytes()
    for damaged in (data[: len(data) // 2], data[:4096] + bytes([data[4096] ^ 1]) + data[4097:], b"garbage"):
        copy.write_bytes(damaged)
        assert not native_build._verified(copy, manifest)
    copy.write_bytes(data)
    assert not native_build._verified(copy, {})  # a build the manifest does not list
    script = textwrap.dedent(
        f"""
        import pathlib, warnings
        from liftswap.ops import cpu_build as native_build
        native_build._FOLDER = pathlib.Path({str(tmp_path)!r})
        warnings.simplefilter("ignore")
        print(native_build.library() is None, native_build.error())
        """
    )
    copy.write_bytes(data[: len(data) // 2])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.startswith("True") and "does not match the SHA-256 its build recorded" in out


@needs_kernel
@pytest.mark.parametrize("level", ["baseline", "x86_64_v3", "x86_64_v4"])
def test_every_instruction_set_build_equals_pytorch_float64(level):
    """Each build the CPU runs (LIFTSWAP_CPU_LEVEL caps the choice) computes the PyTorch path's values."""
    script = textwrap.dedent(
        """
        import torch, liftswap
        from liftswap.ops import cpu as native, cpu_build as native_build
        from test_layers import randomize, rel_err as layer_rel_err
        pool = randomize(liftswap.LiftDownPool2d(3, init="paper", return_details=True)).double().train()
        x = torch.randn(2, 3, 9, 10, dtype=torch.float64, requires_grad=True)
        outs = []
        for flag in (True, False):
            with native.enabled(flag):
                y, d = pool(x)
                g = torch.autograd.grad((y.sum() + d.square().sum()), [x, *pool.parameters()])
                outs.append([y, d, *g])
        err = max(((a - b).abs().max() / b.abs().max().clamp_min(1)).item() for a, b in zip(*outs))
        print(native_build.level(), err)
        """
    )
    env = {**os.environ, "LIFTSWAP_CPU_LEVEL": level, "PYTHONPATH": os.path.dirname(__file__)}
    got, err = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout.split()
    if got != level:
        pytest.skip(f"this CPU does not run the {level} build (ran {got})")
    assert float(err) <= 1e-12


@needs_kernel
@pytest.mark.parametrize(
    "shape,kernel_size,padding,dilation",
    [((2, 3, 9, 8), (3, 3), (1, 1), (1, 1)), ((2, 3, 9, 8), (2, 2), (0, 0), (1, 1)), ((2, 3, 10, 11), (3, 2), (1, 0), (2, 1))],
)
def test_stride1_max_pool_equals_max_pool2d_ties_included(shape, kernel_size, padding, dilation):
    x = torch.randint(0, 3, shape).double().requires_grad_(True)  # small integers: many tied maxima
    out = max_pool_stride1(x, kernel_size, padding, dilation)
    ref = torch.nn.functional.max_pool2d(x, kernel_size, 1, padding, dilation)
    assert torch.equal(out, ref)
    g = torch.randn(ref.shape, dtype=ref.dtype)
    assert torch.equal(*(torch.autograd.grad(o, x, g)[0] for o in (out, ref)))  # same winner per window
    with torch.no_grad():  # no backward to come: the kernel's values-only path
        for dtype in (torch.float64, torch.float32):
            x = torch.randn(shape, dtype=dtype)
            ref = torch.nn.functional.max_pool2d(x, kernel_size, 1, padding, dilation)
            assert torch.equal(max_pool_stride1(x, kernel_size, padding, dilation), ref)


@needs_kernel
def test_stride1_max_pool_1d_and_nan():
    x = torch.randn(2, 3, 7)
    assert torch.equal(max_pool_stride1(x, (3,), (1,), (1,)), torch.nn.functional.max_pool1d(x, 3, 1, 1))
    x = torch.randn(1, 1, 5, 5)
    x[0, 0, 2, 2] = float("nan")
    want = torch.nn.functional.max_pool2d(x, 3, 1, 1)
    for grad in (True, False):  # with and without the winners' codes
        out = max_pool_stride1(x.requires_grad_(grad), (3, 3), (1, 1), (1, 1))
        assert torch.equal(out.isnan(), want.isnan()) and torch.equal(out.nan_to_num(), want.nan_to_num())
    x = torch.randn(1, 2, 4, 5, 4)  # 3d: the reference's maximum passes (the kernel does 1d and 2d)
    assert not native.max_pool_usable(x, (3, 3, 3))
    assert torch.equal(max_pool_stride1(x, (3, 3, 3), (1, 1, 1), (1, 1, 1)), torch.nn.functional.max_pool3d(x, 3, 1, 1))


def saved_bytes(fn) -> int:
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved.values())


@needs_kernel
def test_kernel_layers_save_only_inputs_and_parameters():
    down = randomize(liftswap.LiftDownPool2d(8, init="paper", return_details=True))
    up = liftswap.LiftUpPool2d(down)
    x = torch.randn(2, 8, 32, 30, requires_grad=True)
    y, details = (t.detach().requires_grad_(True) for t in down(x))
    params = sum(p.numel() * p.element_size() for p in down.parameters())
    lambdas = down._lambdas.numel() * down._lambdas.element_size()  # the regulariser's two weights
    assert saved_bytes(lambda: down(x)) == x.numel() * x.element_size() + params + lambdas
    # the inputs themselves, not copies: details is a view into the down pool's band buffer
    storages = y.untyped_storage().nbytes() + details.untyped_storage().nbytes()
    assert saved_bytes(lambda: up(y, details, output_size=x.shape[2:])) == storages + params
