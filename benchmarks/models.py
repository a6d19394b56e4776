"""End to end: what a preserve-converted model costs against the original, in PyTorch and onnxruntime.

For torchvision resnet50 and timm vgg13_bn (random weights): forward+backward (train mode) and
inference (eval, no grad) in PyTorch, and inference in onnxruntime (CPU), original vs converted,
timed in turns in one process (median of repeats). Prints a table, writes JSON.

    python benchmarks/models.py [--batch 8] [--size 224] [--repeats 3] [--threads 1] [--parts train infer onnxruntime]
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


def onnx_session(model, x, path, threads: int):
    import onnxruntime as ort

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), path, dynamo=True, verbose=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x.numpy()}
    return lambda: s.run(None, feed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to time (default: all)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "models.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for source in args.models:
        original = liftswap.build_model(source)
        x = torch.randn(args.batch, 3, args.size, args.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = liftswap.patch(original.eval(), example_inputs=x[:2])
        pair = {"original": original, "converted": converted}

        def train_step(m, x=x):
            def step():
                m.train()
                m.zero_grad(set_to_none=True)
                (m(x).float().square().mean() + liftswap.regularization_loss(m)).backward()

            return step

        def infer(m, x=x):
            def step():
                m.eval()
                with torch.no_grad():
                    m(x)

            return step

        row = {"model": source, "batch": args.batch, "size": args.size}
        for what, make in (("train_s", train_step), ("infer_s", infer)):
            if what[:-2] not in args.parts:
                continue
            times = interleaved_times({name: make(m) for name, m in pair.items()}, args.repeats)
            for name in pair:
                row[f"{name}_{what}"] = times[name]
            row[f"ratio_{what[:-2]}"] = row[f"converted_{what}"] / row[f"original_{what}"]
        if "onnxruntime" in args.parts:
            with tempfile.TemporaryDirectory() as tmp:
                runs = {name: onnx_session(m, x, os.path.join(tmp, f"{name}.onnx"), args.threads) for name, m in pair.items()}
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
                if part in args.parts
            ),
            flush=True,
        )
    meta = {"torch": torch.__version__, "fused_kernel": liftswap.layers.native.available()}
    write_json(args.out, {"args": vars(args), **meta, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
