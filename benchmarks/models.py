"""End to end: what a preserve-converted model costs against the original, in PyTorch and onnxruntime.

For torchvision resnet50 and timm vgg13_bn (random weights): forward+backward (train mode) and
inference (eval, no grad) in PyTorch, and inference in onnxruntime, original vs converted,
timed in turns in one process (median of repeats). Prints a table, writes JSON. With
``--device cuda`` PyTorch runs on the GPU and onnxruntime uses its CUDA provider (skipped,
with a message, where the installed onnxruntime has none).

    python benchmarks/models.py [--batch 8] [--size 224] [--repeats 3] [--threads 1] [--device cpu]
                                [--parts train infer onnxruntime] [--targets pools,convs]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import torch
from benchutil import interleaved_times, write_json

import liftswap

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MODELS = ["torchvision:resnet50", "timm:vgg13_bn"]
PARTS = ("train", "infer", "onnxruntime")


def onnx_provider(device: str) -> str | None:
    """The onnxruntime execution provider for ``device``, or None where it is not installed."""
    import onnxruntime as ort

    wanted = "CUDAExecutionProvider" if device.startswith("cuda") else "CPUExecutionProvider"
    return wanted if wanted in ort.get_available_providers() else None


def onnx_session(model, x, path, threads: int, provider: str):
    import onnxruntime as ort

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liftswap's export: the graph a user serves (either model)
        liftswap.export_onnx(model.cpu().eval(), path, x[:2], check=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    s = ort.InferenceSession(path, opts, providers=[provider])
    feed = {s.get_inputs()[0].name: x.numpy()}
    return lambda: s.run(None, feed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to time (default: all)")
    ap.add_argument("--targets", default="pools", help="what the conversion lifts: pools, convs or pools,convs")
    ap.add_argument("--out", default=os.path.join(RESULTS, "models.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    on_cuda = args.device.startswith("cuda")
    rows = []
    for source in args.models:
        original = liftswap.build_model(source)
        x = torch.randn(args.batch, 3, args.size, args.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = liftswap.patch(original.eval(), {"targets": args.targets.split(",")}, example_inputs=x[:2])
        pair = {"original": original.to(args.device), "converted": converted.to(args.device)}
        xd = x.to(args.device)

        def train_step(m, x=xd):
            def step():
                m.train()
                m.zero_grad(set_to_none=True)
                (m(x).float().square().mean() + liftswap.regularization_loss(m)).backward()

            return step

        def infer(m, x=xd):
            def step():
                m.eval()
                with torch.no_grad():
                    m(x)

            return step

        row = {"model": source, "batch": args.batch, "size": args.size, "targets": args.targets, "replaced": len(converted.liftswap_plan.replaced)}
        for what, make in (("train_s", train_step), ("infer_s", infer)):
            if what[:-2] not in args.parts:
                continue
            times = interleaved_times({name: make(m) for name, m in pair.items()}, args.repeats, args.device)
            for name in pair:
                row[f"{name}_{what}"] = times[name]
            row[f"ratio_{what[:-2]}"] = row[f"converted_{what}"] / row[f"original_{what}"]
        provider = onnx_provider(args.device) if "onnxruntime" in args.parts else None
        if "onnxruntime" in args.parts and provider is None:
            print(f"onnxruntime: no execution provider for {args.device} installed; not timed", flush=True)
        if provider is not None:
            with tempfile.TemporaryDirectory() as tmp:
                runs = {name: onnx_session(m, x, os.path.join(tmp, f"{name}.onnx"), args.threads, provider) for name, m in pair.items()}
                times = interleaved_times(runs, args.repeats)
                for name in pair:
                    row[f"{name}_onnxruntime_s"] = times[name]
            row["ratio_onnxruntime"] = row["converted_onnxruntime_s"] / row["original_onnxruntime_s"]
        rows.append(row)
        print(
            f"{source:<24}"
            + "".join(
                f"  {part} {row[f'original_{part}_s']:.3f}s -> {row[f'converted_{part}_s']:.3f}s ({row[f'ratio_{part}']:.3f}x)"
                for part in PARTS
                if f"ratio_{part}" in row
            ),
            flush=True,
        )
    meta = {
        "torch": torch.__version__,
        "fused_kernel": liftswap.ops.cpu.available(),
        "device": torch.cuda.get_device_name() if on_cuda else "cpu",
    }
    write_json(args.out, {"args": vars(args), **meta, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
