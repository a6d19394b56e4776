"""The host side of a layer call on a GPU, measured without one: PyTorch ops dispatched and host time.

On CUDA a small layer is bound by what the host does per call (Python, dispatch, one launch per
op), not by the device. This counts the ops a LiftDownPool2d / LiftUpPool2d call dispatches
(TorchDispatchMode: a ``liftswap::`` operator counts as one, what runs inside it is not seen),
the ATen ops that do work, inside the operators too (the profiler's outermost ATen ops, views,
allocations and no-op conversions left out: on CUDA each is about one launch) and the Triton launches, and times
the call on tiny CPU tensors with the Triton launches stubbed out, for the PyTorch
implementation against the Triton path (run on CPU tensors through lift_triton.on_cpu, which
needs TRITON_INTERPRET=1: set here before liftswap is imported), at kernel size 3 (the fused
kernels) and 5 (the residual kernels inside the reference's composition); the ATen ops around a
training forward on the bfloat16 input CUDA autocast hands a layer (the regulariser's). Last, the calls
``gpu_goals.py`` times for its layer rows (a no-grad forward; a forward, ``.sum()`` and
``autograd.grad``) of a LiftDownPool2d against MaxPool2d(3, 2, 1), timed in turns: at batch 8 a
GPU runs those rows about as fast as the host issues them, so this ratio (Triton launches
stubbed, their own host cost not in it) is a floor under theirs.

    python benchmarks/host_overhead.py [--repeats 200] [--out benchmarks/results/host_overhead.json]
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before Triton and liftswap are imported

import argparse  # noqa: E402
import collections  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import benchutil  # noqa: E402
from benchutil import interleaved_times, stubbed_launches, write_json  # noqa: E402
from gpu_goals import _layer_calls  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import liftswap  # noqa: E402
from liftswap.ops import cpu as native, cuda as lift_triton  # noqa: E402


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


# ATen ops that move no data or launch nothing on CUDA
_NO_WORK = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "as_strided", "slice", "select", "unsqueeze", "squeeze", "permute",
    "expand", "t", "transpose", "detach", "alias", "narrow", "empty", "empty_like", "new_empty", "empty_strided", "unbind",
    "split", "split_with_sizes", "movedim", "flatten", "lift_fresh", "resize_", "result_type", "promote_types",
    "is_nonzero", "requires_grad_", "detach_", "set_",
}  # fmt: skip
_IF_THEY_COPY = {"to", "contiguous", "type_as"}  # work only when they call another op


def _working_ops(prof) -> int:
    """ATen ops that do work, inside liftswap's operators too: the outermost ATen op of each
    call (a mean or a stack counts once, as on CUDA, though on CPU it calls others), views,
    allocations and conversions to what a tensor already is left out."""
    n = 0
    for e in prof.events():
        if not e.name.startswith("aten::") or e.name[6:] in _NO_WORK:
            continue
        parent = e.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        inner = any(c.name.startswith("aten::") for c in e.cpu_children)
        n += parent is None and (inner or e.name[6:] not in _IF_THEY_COPY)
    return n


def _step(down, up, x, train: bool):
    def run():
        if not train:
            with torch.no_grad():
                y, details = down(x)
                return up(y, details, output_size=x.shape[2:])
        y, details = down(x)
        loss = up(y, details, output_size=x.shape[2:]).sum() + y.sum() + liftswap.regularization_loss(down)
        loss.backward()

    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "host_overhead.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    paths = {"PyTorch ops": lambda: lift_triton.enabled(False), "Triton kernels (launches stubbed)": lift_triton.on_cpu}
    rows = []
    for k in (3, 5):
        down = liftswap.LiftDownPool2d(4, kernel_size=k, return_details=True).train()
        up = liftswap.LiftUpPool2d(down)
        for path, context in paths.items():
            with native.enabled(False), stubbed_launches(), context():
                for what, train in (("down + up, no grad", False), ("down + up, forward+backward", True)):
                    step = _step(down, up, x, train)
                    for _ in range(5):
                        step()
                    benchutil.LAUNCHES.clear()
                    with _CountOps() as counter:
                        step()
                    launches = sum(benchutil.LAUNCHES.values())
                    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                        step()
                    t0 = time.perf_counter()
                    for _ in range(args.repeats):
                        step()
                    host_ms = (time.perf_counter() - t0) / args.repeats * 1e3
                    ops, working = sum(counter.ops.values()), _working_ops(prof)
                    rows.append({"path": path, "kernel_size": k, "call": what, "aten_ops": ops, "working_aten_ops": working,
                                 "triton_launches": launches, "host_ms": host_ms, "ops": dict(counter.ops)})  # fmt: skip
                    print(f"K={k} {path:<34} {what:<28} {ops:4d} ops ({working:3d} working, operators' insides too)"
                          f"  {launches:3d} Triton launches  {host_ms:6.3f} ms host", flush=True)  # fmt: skip
    # a training forward on a bfloat16 input with float32 weights, as CUDA autocast hands it to the
    # kernels: the regulariser's ops around the launch (costs in float32: a column sum and a dot)
    down = liftswap.LiftDownPool2d(4).train()
    half = x.detach().bfloat16()
    with native.enabled(False), stubbed_launches(), lift_triton.on_cpu():
        for _ in range(5):
            down(half)
        benchutil.LAUNCHES.clear()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            down(half)
        launches, working = sum(benchutil.LAUNCHES.values()), _working_ops(prof)
    rows.append({"path": "Triton kernels (launches stubbed)", "kernel_size": 3, "call": "down, training forward, bfloat16 input",
                 "working_aten_ops": working, "triton_launches": launches})  # fmt: skip
    print(f"K=3 down, training forward, bfloat16 input: {working} working ATen ops, {launches} Triton launch", flush=True)
    goal_rows = []
    with native.enabled(False), stubbed_launches(), lift_triton.on_cpu():
        down, pool = liftswap.LiftDownPool2d(4).train(), torch.nn.MaxPool2d(3, 2, 1)
        calls = {"down": _layer_calls(down, x.detach()), "max": _layer_calls(pool, x.detach())}
        for index, part in enumerate(("fwd", "fwd+bwd")):
            times = interleaved_times({k: v[index] for k, v in calls.items()}, args.repeats * 5)
            goal_rows.append({"call": part, "lift_us": times["down"] * 1e6, "maxpool_us": times["max"] * 1e6,
                              "ratio": times["down"] / times["max"]})  # fmt: skip
            print(f"gpu_goals' {part:<8} call, host: LiftDownPool2d {times['down'] * 1e6:6.1f} us, MaxPool2d "
                  f"{times['max'] * 1e6:5.1f} us: {goal_rows[-1]['ratio']:5.2f}x", flush=True)  # fmt: skip
    write_json(args.out, {"torch": torch.__version__, "shape": list(x.shape), "repeats": args.repeats, "rows": rows,
                          "gpu_goals_calls": goal_rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
