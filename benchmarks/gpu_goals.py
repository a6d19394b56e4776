"""The GPU goals table: every row measured in one process and written to goals.json.

LiftDownPool2d (haar, gated, kernel 3) and LiftUpPool2d against ``MaxPool2d(3, 2, 1)`` at
64x112x112, 256x28x28 and 512x14x14, and preserve-converted resnet50 / vgg13_bn against their
originals (batch 64, 224 px, bfloat16 autocast): train step, inference, and the train step under
``torch.compile``; bytes autograd keeps for backward, eager and compiled. Each ratio is timed in
turns against its baseline (``benchutil.interleaved_times``). ``goals.json`` is a list of
``{"name", "measured", "goal", "device", "date", "torch", "triton", "met", ...}``, one entry per
row and shape.

    python benchmarks/gpu_goals.py [--device cuda] [--out benchmarks/results/cuda/goals.json]
    python benchmarks/gpu_goals.py --device cpu --quick   # a dry run of the script: small sizes

``--quick`` shrinks batches, sizes and repeats and runs resnet18 only, to check the script on
any machine; its numbers are not the goals'.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import sys
import warnings

import torch
from benchutil import interleaved_times, write_json
from layers import held_bytes, saved_bytes
from torch import nn

import liftswap

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cuda")
SHAPES = [(64, 112, 112), (256, 28, 28), (512, 14, 14)]
MODELS = {"resnet50": "torchvision:resnet50", "vgg13_bn": "timm:vgg13_bn"}
MODEL_GOALS = {"resnet50": 1.05, "vgg13_bn": 1.10}


def _layer_calls(module: nn.Module, x: torch.Tensor, up: nn.Module | None = None):
    """(no-grad forward, forward+backward) of a pool, or of ``up`` after ``module`` (untimed).
    The no-grad forward is inference: a LiftDownPool in eval mode, as the model rows run it (in
    training mode it would also sum the regulariser's costs, which no gradient reads)."""
    if up is not None:
        with torch.no_grad():
            y, details = module(x)
        y.requires_grad_(True)
        details.requires_grad_(True)
        inputs = (y, details)

        def run():
            return up(y, details, output_size=x.shape[2:])

        infer = run
    else:
        xg = x.clone().requires_grad_(True)
        inputs = (xg,)
        evaluated = copy.deepcopy(module).eval()

        def run():
            return module(xg)

        def infer():
            return evaluated(x)

    def fwd():
        with torch.no_grad():
            infer()

    def fwd_bwd():
        torch.autograd.grad(run().sum(), inputs)

    return fwd, fwd_bwd


def _switched(fn, switch: str, value: bool):
    """``fn`` with a switch of liftswap.ops.cuda set to ``value`` (``_FUSED_2D`` off: the 2-D
    down pool's forward lift by lift, one launch per axis; ``_enabled`` off: the PyTorch ops;
    ``_MAX_INSIDE`` off: a preserve site's max pool launched first)."""
    from liftswap.ops import cuda

    def run():
        before = getattr(cuda, switch)
        setattr(cuda, switch, value)
        try:
            fn()
        finally:
            setattr(cuda, switch, before)

    return run


def layer_rows(args, device: str) -> list[dict]:
    rows = []
    for c, h, w in args.shapes:
        shape = f"{c}x{h}x{w}"
        for batch, parts in ((args.batch, ("fwd", "fwd+bwd")), (args.small_batch, ("fwd+bwd",))):
            x = torch.randn(batch, c, h, w, device=device)
            down = liftswap.LiftDownPool2d(c).to(device)
            calls = {"max": _layer_calls(nn.MaxPool2d(3, 2, 1), x), "down": _layer_calls(down, x)}
            if batch == args.batch:
                up_down = liftswap.LiftDownPool2d(c, return_details=True).to(device)
                calls["up"] = _layer_calls(up_down, x, liftswap.LiftUpPool2d(up_down))
            if batch == args.batch and (c, h, w) == tuple(args.shapes[0]):  # the kernels copy it to NCHW first
                x_cl = x.contiguous(memory_format=torch.channels_last)
                calls["max, channels_last"] = _layer_calls(nn.MaxPool2d(3, 2, 1), x_cl)
                calls["down, channels_last"] = _layer_calls(down, x_cl)
                # 5 taps, as the resnet50 recipe's stem: the residual kernels inside the reference's composition
                calls["down K=5"] = _layer_calls(liftswap.LiftDownPool2d(c, kernel_size=5).to(device), x)
            for part in parts:
                index = 0 if part == "fwd" else 1
                fns = {k: v[index] for k, v in calls.items()}
                if part == "fwd":  # the one-launch forward against the lift-by-lift kernels, for the record
                    fns["down, one launch per axis"] = _switched(fns["down"], "_FUSED_2D", False)
                if "down K=5" in fns:
                    fns["down K=5, PyTorch ops"] = _switched(fns["down K=5"], "_enabled", False)
                times = interleaved_times(fns, args.repeats, device, inner=args.inner)
                if part == "fwd":
                    rows.append(_row(f"LiftDownPool2d fwd batch {batch} {shape}, one launch per axis (not a goal)",
                                     times["down, one launch per axis"] / times["max"], 1.5, args))  # fmt: skip
                    print(_line(rows[-1]), flush=True)
                goal = 1.5 if part == "fwd" else (2.0 if batch == args.batch else 3.0)
                rows.append(_row(f"LiftDownPool2d {part} batch {batch} {shape}", times["down"] / times["max"], goal, args,
                                 lift_ms=times["down"] * 1e3, maxpool_ms=times["max"] * 1e3))  # fmt: skip
                print(_line(rows[-1]), flush=True)
                if "down, channels_last" in fns:
                    rows.append(_row(f"LiftDownPool2d {part} batch {batch} {shape}, channels_last input (not a goal)",
                                     times["down, channels_last"] / times["max, channels_last"], goal, args))  # fmt: skip
                    print(_line(rows[-1]), flush=True)
                if "down K=5" in fns:
                    rows.append(_row(f"LiftDownPool2d kernel_size 5 {part} batch {batch} {shape} (not a goal)",
                                     times["down K=5"] / times["max"], goal, args,
                                     pytorch_ops=round(times["down K=5, PyTorch ops"] / times["max"], 4)))  # fmt: skip
                    print(_line(rows[-1]) + f"  (PyTorch ops: {rows[-1]['pytorch_ops']:.3f}x)", flush=True)
                if "up" in calls and part == "fwd+bwd":
                    rows.append(_row(f"LiftUpPool2d fwd+bwd batch {batch} {shape}", times["up"] / times["max"], 2.0, args,
                                     lift_ms=times["up"] * 1e3, maxpool_ms=times["max"] * 1e3))  # fmt: skip
                    print(_line(rows[-1]), flush=True)
    return rows


def saved_rows(args, device: str) -> list[dict]:
    """Bytes autograd keeps for backward, the lift against MaxPool (eager and compiled), and a
    preserve-converted ``MaxPool2d(3, 2, 1)`` site against the pool it replaces (eager)."""
    c, h, w = args.shapes[0]
    x = torch.randn(args.batch, c, h, w, device=device, requires_grad=True)
    rows = []
    for how in ("eager", "compiled"):
        down, pool = liftswap.LiftDownPool2d(c).to(device), nn.MaxPool2d(3, 2, 1)
        if how == "compiled":
            down, pool = torch.compile(down), torch.compile(pool)
            down(x).sum().backward()  # compile before measuring
            pool(x).sum().backward()
        lift, base = saved_bytes(lambda: down(x)), saved_bytes(lambda: pool(x))
        rows.append(_row(f"bytes kept for backward {how}, LiftDownPool2d / MaxPool2d batch {args.batch} {c}x{h}x{w}",
                         lift / base, 1.0, args, lift_bytes=lift, maxpool_bytes=base))  # fmt: skip
        print(_line(rows[-1]), flush=True)
        # what the graph holds that was not alive before (x is: the operators keep x alone, so the
        # storage row above counts x, which a ReLU before the pool keeps anyway); CUDA only
        lift, base = held_bytes(lambda: down(x), device), held_bytes(lambda: pool(x), device)
        if lift is not None:
            rows.append(_row(f"memory held for backward {how} (allocated, beyond the output; not a goal), LiftDownPool2d / "
                             f"MaxPool2d batch {args.batch} {c}x{h}x{w}", lift / max(base, 1), 1.0, args, lift_bytes=lift,
                             maxpool_bytes=base))  # fmt: skip
            print(_line(rows[-1]), flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        site = liftswap.patch(nn.Sequential(nn.MaxPool2d(3, 2, 1)), example_inputs=x[:2].detach()).to(device).train()
    pool = nn.MaxPool2d(3, 2, 1)
    lift, base = saved_bytes(lambda: site(x)), saved_bytes(lambda: pool(x))
    rows.append(_row(f"bytes kept for backward eager, preserve site / MaxPool2d(3, 2, 1) batch {args.batch} {c}x{h}x{w}",
                     lift / base, 1.0, args, lift_bytes=lift, maxpool_bytes=base))  # fmt: skip
    print(_line(rows[-1]), flush=True)
    return rows


def model_rows(args, device: str, rows: list[dict]) -> None:
    """Appends the model rows to ``rows`` as they are measured, the compiled ones last (slowest)."""
    dtype, kind = torch.bfloat16, device.split(":")[0]
    pairs = {}
    for short, source in args.models.items():
        original = liftswap.build_model(source)
        x = torch.randn(args.model_batch, 3, args.size, args.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = liftswap.patch(original.eval(), example_inputs=x[:2])
        pairs[short] = ({"original": original.to(device), "converted": converted.to(device)}, x.to(device))

    def train_step(m, x, compiled=False):
        forward = torch.compile(m) if compiled else m

        def step():
            m.train()
            m.zero_grad(set_to_none=True)
            with torch.autocast(kind, dtype=dtype):
                loss = forward(x).float().square().mean() + liftswap.regularization_loss(m)
            loss.backward()

        return step

    def infer(m, x):
        def step():
            m.eval()
            with torch.no_grad(), torch.autocast(kind, dtype=dtype):
                m(x)

        return step

    makers = (("train step", train_step), ("inference", infer), ("train step, torch.compile", lambda m, x: train_step(m, x, True)))
    for what, make in makers:
        for short, (pair, x) in pairs.items():
            times = interleaved_times({k: make(m, x) for k, m in pair.items()}, args.model_repeats, device)
            rows.append(_row(f"{short} {what} batch {args.model_batch} bf16 autocast", times["converted"] / times["original"],
                             MODEL_GOALS.get(short, 1.05), args, converted_s=times["converted"], original_s=times["original"]))  # fmt: skip
            print(_line(rows[-1]), flush=True)
            write_json(args.out, rows)  # a run cut short keeps the rows it made


def _row(name: str, measured: float, goal: float, args, **extra) -> dict:
    triton = sys.modules.get("triton")
    return {
        "name": name,
        "measured": round(measured, 4),
        "goal": goal,
        "met": measured <= goal,
        "device": args.device_name,
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "triton": getattr(triton, "__version__", None),
        **extra,
    }


def _line(r: dict) -> str:
    return f"{r['name']:<72} {r['measured']:7.3f}x  goal <= {r['goal']:.2f}x  {'met' if r['met'] else 'NOT met'}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes and resnet18 only: a dry run of the script")
    ap.add_argument("--parts", nargs="+", choices=("layers", "saved", "models"), default=["layers", "saved", "models"])
    ap.add_argument("--out", default=os.path.join(RESULTS, "goals.json"))
    args = ap.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device (use --device cpu --quick for a dry run)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    args.device_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    if device.startswith("cuda"):
        import triton  # noqa: F401 - its version goes into the rows

    if args.quick:
        args.shapes, args.batch, args.small_batch, args.repeats, args.inner = [(16, 28, 28), (64, 7, 7)], 4, 2, 3, 1
        args.models, args.model_batch, args.size, args.model_repeats = {"resnet18": "torchvision:resnet18"}, 2, 64, 2
    else:
        args.shapes, args.batch, args.small_batch, args.repeats, args.inner = SHAPES, 64, 8, 15, 10
        args.models, args.model_batch, args.size, args.model_repeats = MODELS, 64, 224, 10
    rows: list[dict] = []
    for part, fn in (("layers", layer_rows), ("saved", saved_rows)):
        if part in args.parts:
            rows += fn(args, device)
            write_json(args.out, rows)  # a run cut short keeps the rows it made
    if "models" in args.parts:
        model_rows(args, device, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
