"""What launching liftswap's Triton kernels costs the host, measured without a GPU.

``benchutil.noop_driver`` lets Triton build the kernels for sm_90 and run its whole host launch
path on CPU tensors, up to a launcher that launches nothing: what is timed is everything a call
costs the host but Triton's CudaLauncher and the driver's launch call (the same for both paths
compared). The calls ``gpu_goals.py`` times for its layer rows (a no-grad forward; a forward,
``.sum()`` and ``autograd.grad``) of LiftDownPool2d (haar, gated, 3 taps) and LiftUpPool2d three
ways, against MaxPool2d(3, 2, 1), timed in turns: ``run()``, the operators called through the
dispatcher and the kernels launched through ``kernel[grid]`` (``JITFunction.run``); ``dispatcher``,
the same with ``liftswap.ops.triton_launch.launch``'s direct launches; ``direct``, the operators'
direct callers too (``operators._DIRECT``, what an eager call runs). A preserve-converted
MaxPool2d(3, 2, 1) site, no grad and forward+backward, with its max pool inside the lift's kernel
and launched first. Then one launch of the backward kernel alone both ways. The first run builds the kernels (about a minute; Triton
caches them).

    python benchmarks/launch_overhead.py [--repeats 1000] [--out benchmarks/results/launch_overhead.json]
"""

from __future__ import annotations

import os

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("error: unset TRITON_INTERPRET: this measures the compiled kernels' launch path")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from benchutil import interleaved_times, noop_driver, write_json  # noqa: E402
from gpu_goals import _layer_calls, _switched  # noqa: E402

import liftswap  # noqa: E402
from liftswap.ops import cpu as native, cuda as lift_triton, operators, triton_launch  # noqa: E402


def _paths(fn):
    """fn through run() and the dispatcher, through the dispatcher with direct launches, and
    direct (the module flags, set around each call)."""

    def switched(fast_launch: bool):
        def call():
            triton_launch._FAST, operators._DIRECT_CALLS = fast_launch, False
            try:
                return fn()
            finally:
                triton_launch._FAST, operators._DIRECT_CALLS = True, True

        return call

    return switched(False), switched(True), fn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "launch_overhead.json"))
    args = ap.parse_args(argv)
    if not (triton_launch._FAST and operators._DIRECT_CALLS):
        print("error: LIFTSWAP_TRITON_FAST_LAUNCH=0, LIFTSWAP_DIRECT_CALLS=0 or a Triton without knobs (< 3.4): no direct path "
              "to compare", file=sys.stderr)  # fmt: skip
        return 2
    import triton

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    rows = []
    with noop_driver(), native.enabled(False):
        down, pool = liftswap.LiftDownPool2d(4).train(), torch.nn.MaxPool2d(3, 2, 1)
        up = liftswap.LiftUpPool2d(liftswap.LiftDownPool2d(4, return_details=True))
        calls = {"LiftDownPool2d": _layer_calls(down, x), "LiftUpPool2d": _layer_calls(up.down, x, up=up), "MaxPool2d": _layer_calls(pool, x)}
        paths = ("run", "dispatcher", "direct")
        print(f"{'call':<8} {'layer':<16} {'run() us':>9} {'dispatcher us':>14} {'direct us':>10} {'MaxPool2d us':>13} "
              f"{'run()/max':>10} {'dispatcher/max':>15} {'direct/max':>11}")  # fmt: skip
        for index, part in enumerate(("fwd", "fwd+bwd")):
            fns = {"MaxPool2d": calls["MaxPool2d"][index]}
            for layer in ("LiftDownPool2d", "LiftUpPool2d"):
                fns.update({f"{layer} {path}": fn for path, fn in zip(paths, _paths(calls[layer][index]))})
            times = interleaved_times(fns, args.repeats)
            base = times["MaxPool2d"]
            for layer in ("LiftDownPool2d", "LiftUpPool2d"):
                us = {path: times[f"{layer} {path}"] * 1e6 for path in paths}
                row = {"call": part, "layer": layer, **{f"{p}_us": v for p, v in us.items()}, "maxpool_us": base * 1e6}
                rows.append({**row, **{f"{p}_ratio": v / (base * 1e6) for p, v in us.items()}})
                print(f"{part:<8} {layer:<16} {us['run']:9.1f} {us['dispatcher']:14.1f} {us['direct']:10.1f} {base * 1e6:13.1f} "
                      f"{us['run'] / (base * 1e6):10.2f} {us['dispatcher'] / (base * 1e6):15.2f} {us['direct'] / (base * 1e6):11.2f}")  # fmt: skip
        # a preserve-converted MaxPool2d(3, 2, 1) without grad: its max pool inside the lift's kernel
        # (one launch) or run first (LIFTSWAP_TRITON_MAX_INSIDE=0: two launches and two operators)
        site = liftswap.patch(torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, 1)), example_inputs=x).eval()  # (preserve: the default)

        def preserve():
            with torch.no_grad():
                return site(x)

        times = interleaved_times({"one": _switched(preserve, "_MAX_INSIDE", True), "two": _switched(preserve, "_MAX_INSIDE", False),
                                   "MaxPool2d": calls["MaxPool2d"][0]}, args.repeats)  # fmt: skip
        us = {k: v * 1e6 for k, v in times.items()}
        preserve_row = {"one_launch_us": us["one"], "two_launches_us": us["two"], "maxpool_us": us["MaxPool2d"]}
        print(f"preserve MaxPool2d(3, 2, 1) site, no grad: max pool inside {us['one']:.1f} us ({us['one'] / us['MaxPool2d']:.2f}x), "
              f"first {us['two']:.1f} us ({us['two'] / us['MaxPool2d']:.2f}x); MaxPool2d {us['MaxPool2d']:.1f} us")  # fmt: skip
        # the same site training (forward, .sum(), autograd.grad of x and the weights): the forward
        # one launch and the backward running the pool again, or the pool first (two operators)
        trained = liftswap.patch(torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, 1)), example_inputs=x).train()
        xg = x.clone().requires_grad_(True)
        wanted = [xg, *trained.parameters()]

        def preserve_step():
            return torch.autograd.grad(trained(xg).sum(), wanted)

        times = interleaved_times({"one": _switched(preserve_step, "_MAX_INSIDE", True),
                                   "two": _switched(preserve_step, "_MAX_INSIDE", False), "MaxPool2d": calls["MaxPool2d"][1]},
                                  args.repeats)  # fmt: skip
        us = {k: v * 1e6 for k, v in times.items()}
        preserve_row.update(train_one_launch_us=us["one"], train_two_launches_us=us["two"], train_maxpool_us=us["MaxPool2d"])
        print(f"preserve MaxPool2d(3, 2, 1) site, fwd+bwd: max pool inside {us['one']:.1f} us ({us['one'] / us['MaxPool2d']:.2f}x), "
              f"first {us['two']:.1f} us ({us['two'] / us['MaxPool2d']:.2f}x); MaxPool2d {us['MaxPool2d']:.1f} us")  # fmt: skip
        # one launch of the backward kernel, captured from a layer's backward
        seen = []
        kernel = lift_triton._lift_backward_kernel

        class _Capture:
            def __getitem__(self, grid):
                def capture(*a, **kw):
                    seen.append((grid[0], a, kw))
                    return kernel[grid](*a, **kw)

                return capture

        lift_triton._lift_backward_kernel = _Capture()
        try:
            triton_launch._FAST = False
            calls["LiftDownPool2d"][1]()
        finally:
            lift_triton._lift_backward_kernel = kernel
            triton_launch._FAST = True
        grid, a, kw = seen[0]
        one = {"run()": lambda: kernel[(grid,)](*a, **kw), "direct": lambda: triton_launch.launch(kernel, grid, *a, **kw)}
        times = interleaved_times({k: (lambda f=f: [f() for _ in range(10)]) for k, f in one.items()}, args.repeats // 5)
        launch_us = {k: v / 10 * 1e6 for k, v in times.items()}
        print(f"one backward-kernel launch ({len(a) + len(kw)} arguments): run() {launch_us['run()']:.1f} us, "
              f"direct {launch_us['direct']:.1f} us")  # fmt: skip
    write_json(args.out, {"torch": torch.__version__, "triton": triton.__version__, "shape": list(x.shape), "repeats": args.repeats,
                          "date": time.strftime("%Y-%m-%d"), "rows": rows, "backward_kernel_launch_us": launch_us,
                          "preserve_site_no_grad": preserve_row})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
