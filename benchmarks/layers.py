"""Time and memory of LiftDownPool2d / LiftUpPool2d against MaxPool2d(3, 2, 1) and AvgPool2d(2).

One process, one thread. For each shape and layer: forward under no_grad, forward+backward,
and the bytes autograd saves for backward (unique storages seen by saved_tensors_hooks).
Ratios are to MaxPool2d(3, 2, 1) measured in the same process, all layers timed in turns.
The default layers use the fused CPU kernel when it is available (see liftswap/layers/native.py);
rows marked [PyTorch ops] run the same layer with it turned off.

    python benchmarks/layers.py [--repeats 5] [--shapes 8,64,112,112 ...] [--out benchmarks/results/layers.json]
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
from liftswap.layers import native

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


def prepare(module: nn.Module, shape) -> tuple:
    """(forward-only call, forward+backward call, forward call for saved_bytes) for one layer."""
    x = torch.randn(shape)
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

    def fwd():
        with torch.no_grad():
            run()

    def fwd_bwd():
        out = run()
        torch.autograd.grad(out.sum(), grads_of)

    return fwd, fwd_bwd, run


def pytorch_path(fn):
    """``fn`` run with the fused CPU kernel turned off: the plain PyTorch implementation."""

    def wrapped():
        with native.enabled(False):
            return fn()

    return wrapped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--shapes", nargs="*", default=None, help="N,C,H,W each")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "layers.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes] if args.shapes else SHAPES
    rows = []
    for shape in shapes:
        mods = layers(shape[1])
        calls = {name: prepare(module.train(), shape) for name, module in mods.items()}
        for name in list(calls):  # the same layers without the fused kernel, for comparison
            if name.startswith("Lift") and name in KERNEL_COMPARED:
                calls[name + " [PyTorch ops]"] = tuple(pytorch_path(f) for f in calls[name])
        fwd = interleaved_times({name: c[0] for name, c in calls.items()}, args.repeats)
        fwd_bwd = interleaved_times({name: c[1] for name, c in calls.items()}, args.repeats)
        base = BASELINE
        base_saved = saved_bytes(calls[base][2])
        for name, c in calls.items():
            saved = saved_bytes(c[2])
            r = {
                "layer": name,
                "shape": list(shape),
                "forward_s": fwd[name],
                "forward_backward_s": fwd_bwd[name],
                "saved_bytes": saved,
                "forward_ratio": fwd[name] / fwd[base],
                "forward_backward_ratio": fwd_bwd[name] / fwd_bwd[base],
                "saved_ratio": saved / base_saved,
            }
            rows.append(r)
            print(
                f"{str(shape):>20} {name:<44} fwd {r['forward_s'] * 1e3:8.2f} ms ({r['forward_ratio']:4.2f}x)"
                f"  fwd+bwd {r['forward_backward_s'] * 1e3:8.2f} ms ({r['forward_backward_ratio']:4.2f}x)"
                f"  saved {r['saved_bytes'] / 2**20:7.1f} MiB ({r['saved_ratio']:4.2f}x)",
                flush=True,
            )
    meta = {
        "torch": torch.__version__,
        "liftswap": liftswap.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "fused_kernel": native.available(),
        "timing": "median of interleaved rounds (benchutil.interleaved_times)",
    }
    write_json(args.out, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
