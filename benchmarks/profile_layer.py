"""Where one layer call's time goes: host (Python, dispatch, launches) against device kernels.

For LiftDownPool2d (haar, gated, train mode), MaxPool2d(3, 2, 1) and a preserve-converted
MaxPool2d(3, 2, 1) (train mode: the regulariser's costs summed too): the host time of a loop
of calls without waiting for the device, the synchronised time, and torch.profiler's table of
the ops and kernels by self time. A layer whose host time exceeds its synchronised device time
is launch-bound: fewer launches and less Python, not faster kernels, make it cheaper.

    python benchmarks/profile_layer.py [--device cuda] [--shape 8,64,112,112] [--out results/profile.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from benchutil import stubbed_launches, write_json
from torch.profiler import ProfilerActivity, profile

import liftswap
from liftswap.ops import cuda as lift_triton


def host_and_total_ms(fn, device: str, calls: int = 20) -> tuple[float, float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    host = time.perf_counter() - t0
    sync()
    total = time.perf_counter() - t0
    return host / calls * 1e3, total / calls * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", default="8,64,112,112")
    ap.add_argument("--rows", type=int, default=15, help="profiler table rows")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "profile.json"))
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    x = torch.randn(shape, device=args.device, requires_grad=True)
    layers = {"MaxPool2d(3,2,1)": torch.nn.MaxPool2d(3, 2, 1), "LiftDownPool2d (haar, gated)": liftswap.LiftDownPool2d(shape[1]),
              # a preserve-converted MaxPool2d(3, 2, 1): without grad one launch, its max pool inside the lift's
              # kernel (LIFTSWAP_TRITON_MAX_INSIDE=0: the pool's launch first)
              "preserve MaxPool2d(3,2,1) site": liftswap.patch(torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, 1)), example_inputs=x[:1].detach())}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    rows = []
    for name, layer in layers.items():
        layer = layer.to(args.device).train()

        def fwd(layer=layer):
            with torch.no_grad():
                layer(x)

        def fwd_bwd(layer=layer):
            layer(x).sum().backward()

        for what, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
            host, total = host_and_total_ms(fn, args.device)
            stubbed = None
            if name.startswith(("Lift", "preserve")) and lift_triton.usable(x):
                with stubbed_launches():  # what the Triton launches themselves cost the host
                    stubbed, _ = host_and_total_ms(fn, args.device)
            with profile(activities=activities) as prof:
                for _ in range(5):
                    fn()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
            events = prof.key_averages()
            device_us = sum(getattr(e, "self_device_time_total", 0) or 0 for e in events) / 5
            # device work items per call (kernels, memsets, copies): what a launch-bound layer pays for
            launches = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA) / 5
            sort = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
            print(
                f"\n== {name}, {what}: host {host:.3f} ms/call, synchronised {total:.3f} ms/call, device kernels {device_us / 1e3:.3f} ms/call"
                f" ({launches:g} per call)"
                + ("" if stubbed is None else f", host without the Triton launches {stubbed:.3f} ms/call")
            )
            print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
            rows.append({"layer": name, "pass": what, "host_ms": host, "total_ms": total, "device_kernels_ms": device_us / 1e3,
                         "device_launches": launches, "host_ms_launches_stubbed": stubbed})  # fmt: skip
    write_json(args.out, {"device": args.device, "shape": list(shape), "torch": torch.__version__, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
