"""Time and memory of LiftDownPool2d / LiftUpPool2d against MaxPool2d(3, 2, 1) and AvgPool2d(2).

One process, one thread. For each shape and layer: forward under no_grad, forward+backward,
and the bytes autograd saves for backward (unique storages seen by saved_tensors_hooks).
Ratios are to MaxPool2d(3, 2, 1) measured in the same process, all layers timed in turns.
The default layers use the fused CPU kernel when it is available (liftswap/ops/cpu.py),
on CUDA the Triton kernels (liftswap/ops/cuda.py); rows marked [PyTorch ops] run the
same layer with them turned off. ``--compile`` adds rows
marked [compiled]: the same call under ``torch.compile`` (MaxPool2d too, so the compiled
layers can be compared with a compiled baseline). ``--device cuda`` times on the GPU: each
sample is a loop of calls between two synchronisations, and ``held_bytes`` is what the CUDA
allocator holds between forward and backward beyond the output.

    python benchmarks/layers.py [--repeats 5] [--shapes 8,64,112,112 ...] [--layers "haar, gated" ...] [--device cuda] [--compile]
                                [--out benchmarks/results/layers.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import torch
from benchutil import interleaved_times, write_json
from torch import nn

import liftswap
from liftswap.ops import cpu as native, cuda as lift_triton

SHAPES = [(8, 64, 112, 112), (8, 256, 28, 28), (8, 512, 14, 14)]
BASELINE = "MaxPool2d(3,2,1)"
# Shown a second time with the fused CPU kernel off (the PyTorch implementation).
KERNEL_COMPARED = ("LiftDownPool2d (haar, gated)", "LiftUpPool2d (haar, gated)")


class UpAfterDown(nn.Module):
    """LiftUpPool2d timed on its own: the down pass runs outside the timed region."""

    def __init__(self, channels: int):
        super().__init__()
        self.down = liftswap.LiftDownPool2d(channels, return_details=True)
        self.up = liftswap.LiftUpPool2d(self.down)


def layers(channels: int) -> dict[str, nn.Module]:
    return {
        "MaxPool2d(3,2,1)": nn.MaxPool2d(3, 2, 1),
        "AvgPool2d(2)": nn.AvgPool2d(2),
        "LiftDownPool2d (haar, gated)": liftswap.LiftDownPool2d(channels),
        "LiftDownPool2d (haar, LL)": liftswap.LiftDownPool2d(channels, output="LL"),
        "LiftDownPool2d (lazy, gated)": liftswap.LiftDownPool2d(channels, init="lazy"),
        "LiftDownPool2d (paper, sum)": liftswap.LiftDownPool2d(channels, init="paper", output="sum"),
        "LiftUpPool2d (haar, gated)": UpAfterDown(channels),
    }


def saved_bytes(fn) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def held_bytes(fn, device: str) -> int | None:
    """CUDA memory held by the autograd graph after ``fn()``, beyond its output (None on CPU)."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated() - before - out.untyped_storage().nbytes()
    del out
    return held


def prepare(module: nn.Module, shape, device: str = "cpu", compile: bool = False) -> tuple:
    """(forward-only call, forward+backward call, forward call for saved_bytes) for one layer."""
    module = module.to(device)
    x = torch.randn(shape, device=device)
    if isinstance(module, UpAfterDown):
        with torch.no_grad():
            y, details = module.down(x)
        y.requires_grad_(True)
        details.requires_grad_(True)

        def run():
            return module.up(y, details, output_size=x.shape[2:])

        grads_of = (y, details)
    else:
        xg = x.clone().requires_grad_(True)

        def run():
            return module(xg)

        grads_of = (xg,)

    if compile:
        run = torch.compile(run, dynamic=False)

    def fwd():
        with torch.no_grad():
            run()

    def fwd_bwd():
        out = run()
        torch.autograd.grad(out.sum(), grads_of)

    return fwd, fwd_bwd, run


def pytorch_path(fn):
    """``fn`` run with the fused CPU kernel and the Triton kernels turned off: the PyTorch implementation."""

    def wrapped():
        with native.enabled(False), lift_triton.enabled(False):
            return fn()

    return wrapped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--shapes", nargs="*", default=None, help="N,C,H,W each")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows")
    parser.add_argument("--layers", nargs="*", default=None, help="time only the layers whose names contain one of these (and the baseline)")
    parser.add_argument("--inner", type=int, default=None, help="calls per sample (default: 1 on CPU, 20 on CUDA)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "layers.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    on_cuda = args.device.startswith("cuda")
    inner = args.inner or (20 if on_cuda else 1)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes] if args.shapes else SHAPES
    meta = {
        "torch": torch.__version__,
        "liftswap": liftswap.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if on_cuda else "cpu",
        "calls_per_sample": inner,
        "repeats": args.repeats,
        "fused_kernel": native.available(),
        "triton_kernels": on_cuda and lift_triton.available(),
        "timing": "median of interleaved rounds (benchutil.interleaved_times)",
    }
    rows = []
    for shape in shapes:
        if args.compile:  # the compiled calls of all shapes share code objects: fresh caches, no recompile limit
            torch._dynamo.reset()
        mods = {n: m for n, m in layers(shape[1]).items() if args.layers is None or n == BASELINE or any(k in n for k in args.layers)}
        calls = {name: prepare(module.train(), shape, args.device) for name, module in mods.items()}
        for name in list(calls):
            if name in KERNEL_COMPARED:  # the same layers without the CPU kernel / the Triton kernels
                calls[name + " [PyTorch ops]"] = tuple(pytorch_path(f) for f in calls[name])
            if args.compile and (name in KERNEL_COMPARED or name == BASELINE):
                calls[name + " [compiled]"] = prepare(mods[name], shape, args.device, compile=True)
        fwd = interleaved_times({name: c[0] for name, c in calls.items()}, args.repeats, args.device, inner)
        fwd_bwd = interleaved_times({name: c[1] for name, c in calls.items()}, args.repeats, args.device, inner)
        base = BASELINE
        base_saved = saved_bytes(calls[base][2])
        base_held = held_bytes(calls[base][2], args.device)
        for name, c in calls.items():
            saved = saved_bytes(c[2])
            held = held_bytes(c[2], args.device)
            r = {
                "layer": name,
                "shape": list(shape),
                "forward_s": fwd[name],
                "forward_backward_s": fwd_bwd[name],
                "saved_bytes": saved,
                "forward_ratio": fwd[name] / fwd[base],
                "forward_backward_ratio": fwd_bwd[name] / fwd_bwd[base],
                "saved_ratio": saved / base_saved,
                "held_bytes": held,
                "held_ratio": None if held is None else held / base_held,
            }
            rows.append(r)
            print(
                f"{str(shape):>20} {name:<44} fwd {r['forward_s'] * 1e3:8.2f} ms ({r['forward_ratio']:4.2f}x)"
                f"  fwd+bwd {r['forward_backward_s'] * 1e3:8.2f} ms ({r['forward_backward_ratio']:4.2f}x)"
                f"  saved {r['saved_bytes'] / 2**20:7.1f} MiB ({r['saved_ratio']:4.2f}x)"
                + ("" if held is None else f"  held {held / 2**20:7.1f} MiB ({r['held_ratio']:4.2f}x)"),
                flush=True,
            )
        write_json(args.out, {"meta": meta, "rows": rows})  # after each shape: a cut-short run keeps what it measured
    return 0


if __name__ == "__main__":
    sys.exit(main())
