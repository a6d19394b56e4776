"""liftswap.ops.triton_launch without a GPU: Triton builds the kernels for sm_90 and runs its host
launch path on CPU tensors up to a launcher that launches nothing (benchmarks/benchutil.noop_driver);
what each path hands that launcher is compared with what ``JITFunction.run`` hands it."""

import os
import sys

import pytest
import torch

triton = pytest.importorskip("triton")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import liftswap  # noqa: E402
from liftswap.ops import cpu as native, cuda as lift_triton, triton_launch  # noqa: E402

pytestmark = pytest.mark.skipif(
    not isinstance(getattr(lift_triton, "_lift_backward_kernel", None), triton.runtime.jit.JITFunction) or not triton_launch._FAST,
    reason="needs compiled (not interpreted) Triton kernels and Triton >= 3.4 (launch hooks in triton.knobs)",
)


@pytest.fixture
def driver(monkeypatch):
    from benchutil import NoOpLauncher, noop_driver

    monkeypatch.setattr(triton_launch, "_LAUNCHERS", {})
    runs = []
    run = triton.runtime.jit.JITFunction.run

    def counted(self, *args, **kwargs):
        runs.append(self.fn.__name__)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(triton.runtime.jit.JITFunction, "run", counted)
    monkeypatch.setattr(NoOpLauncher, "record", True)
    monkeypatch.setattr(NoOpLauncher, "calls", [])
    try:
        with noop_driver(), native.enabled(False):
            yield NoOpLauncher.calls, runs
    except Exception as e:  # pragma: no cover - a Triton whose internals differ, or no ptxas
        if "noop_driver" in str(e) or isinstance(e, (ImportError, AttributeError, RuntimeError)):
            pytest.skip(f"Triton's host launch path cannot run without a GPU here: {e}")
        raise


def _step(layer, x):
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (gx,) = torch.autograd.grad(y.sum() + liftswap.regularization_loss(layer), [x])
    return gx


def _described(call):
    """A launcher call as comparable values: tensors by dtype, shape and strides; the launch
    metadata and hooks (positions 6 to 8) left out, as a launch without hooks reads none of them."""
    kept = call[:6] + call[9:]
    return [(t.dtype, tuple(t.shape), t.stride()) if isinstance(t, torch.Tensor) else t for t in kept]


def test_direct_launches_hand_the_launcher_what_run_does(driver):
    calls, runs = driver
    layer = liftswap.LiftDownPool1d(4, init="paper").train()
    x = torch.randn(2, 4, 17)
    for _ in range(2):  # each kernel's first launch (the build), then its checked one: through run()
        _step(layer, x)
    kernels = {"_lift_forward_kernel", "_lift_backward_kernel", "_grad_sums_kernel"}  # (a 1-D layer's step: 3 launches)
    assert len(runs) == len(calls) == 6 and set(runs) == kernels
    assert all(type(v) is tuple for v in triton_launch._LAUNCHERS.values())  # both checked: direct from now
    runs.clear()
    calls.clear()
    _step(layer, x)
    direct = list(calls)
    assert runs == [] and len(direct) == 3  # the launcher called, run() not
    calls.clear()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(triton_launch, "_FAST", False)
        _step(layer, x)
    assert len(runs) == 3
    assert [_described(c) for c in direct] == [_described(c) for c in calls]
    assert direct[0][9] is not calls[0][9] and direct[0][9].shape == x.shape  # the tensors of each call, not kept ones


def test_new_specialisations_and_hooks_go_through_run(driver):
    calls, runs = driver
    layer = liftswap.LiftDownPool1d(4).train()
    x = torch.randn(2, 4, 16)
    for _ in range(3):
        _step(layer, x)
    runs.clear()
    _step(layer, torch.randn(2, 4, 20))  # other sizes: other integers, a new key (built, then checked)
    assert runs == ["_lift_forward_kernel", "_lift_backward_kernel"]  # (the sums' integers are the same)
    runs.clear()
    odd = torch.randn(2 * 4 * 16 + 1)[1:].view(2, 4, 16)  # 4 bytes past an allocation: not 16-byte aligned
    assert odd.is_contiguous() and odd.data_ptr() % 16
    with torch.no_grad():
        layer.eval()(odd)
    assert runs == ["_lift_forward_kernel"]  # Triton specialises on alignment: its own path decides
    runs.clear()
    layer.train()
    hook = triton.knobs.runtime.launch_enter_hook
    seen = []
    hook.add(seen.append)
    try:
        _step(layer, x)
    finally:
        hook.remove(seen.append)
    assert len(runs) == 3  # a profiler's hook sees every launch: Triton's path
    runs.clear()
    _step(layer, x)
    assert runs == []


def test_a_check_that_fails_keeps_run(driver, monkeypatch):
    calls, runs = driver
    monkeypatch.setattr(triton_launch, "_same", lambda got, want: False)  # a Triton whose launcher takes other arguments
    layer = liftswap.LiftDownPool1d(4).train()
    x = torch.randn(2, 4, 16)
    for _ in range(4):
        _step(layer, x)
    assert len(runs) == 12 and set(triton_launch._LAUNCHERS.values()) == {False}
