"""ONNX export time: a preserve-converted model against its original, in turns in one process.

For each model (random weights), ``liftswap.export_onnx`` without the onnxruntime check, dynamic
batch and spatial axes, at batch 2; original and converted exported alternately ``--repeats``
times, each in a fresh temporary folder. Prints a table (seconds, ratio) and writes JSON.

    python benchmarks/export_time.py [--models torchvision:resnet50 ...] [--size 64] [--repeats 1]
                                     [--targets pools,convs] [--check]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch
from benchutil import write_json

import liftswap
from liftswap.io.sources import build_model

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MODELS = ["torchvision:resnet50", "torchvision:densenet121", "timm:vgg13_bn"]


def export_seconds(model: torch.nn.Module, x: torch.Tensor, checks: list | None = None) -> float:
    """Seconds to export; with ``checks`` (a list), the onnxruntime parity checks run after the
    timed export (on a second export) and their rows are appended to it."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        liftswap.export_onnx(model, os.path.join(d, "m.onnx"), example_inputs=x, check=False)
        seconds = time.perf_counter() - t0
        if checks is not None:
            checks.extend(liftswap.export_onnx(model, os.path.join(d, "c.onnx"), example_inputs=x).checks)
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--check", action="store_true", help="also record onnxruntime parity of the converted export")
    ap.add_argument("--targets", default="pools", help="what the conversion lifts: pools, convs or pools,convs")
    ap.add_argument("--out", default=os.path.join(RESULTS, "export_time.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    rows = []
    for name in args.models:
        original = build_model(name).eval()
        x = torch.randn(2, 3, args.size, args.size)
        converted = liftswap.patch(original, {"targets": args.targets.split(",")}, example_inputs=x).eval()
        samples: dict[str, list[float]] = {"original": [], "converted": []}
        checks: list | None = [] if args.check else None
        for i in range(args.repeats):
            samples["original"].append(export_seconds(original, x))
            samples["converted"].append(export_seconds(converted, x, checks if i == 0 else None))
        t = {k: statistics.median(v) for k, v in samples.items()}
        rows.append({"model": name, "original_s": round(t["original"], 2), "converted_s": round(t["converted"], 2),
                     "ratio": round(t["converted"] / t["original"], 3), "sites_replaced": len(converted.liftswap_plan.replaced)})  # fmt: skip
        if checks:
            rows[-1]["parity"] = [{"shapes": c["shapes"], "max_rel_diff": c["max_rel_diff"]} for c in checks]
            rows[-1]["max_rel_diff"] = max(c["max_rel_diff"] for c in checks)
        parity = f"   parity {rows[-1]['max_rel_diff']:.1e}" if checks else ""
        print(f"{name:28s} original {t['original']:7.1f} s   converted {t['converted']:7.1f} s   {t['converted'] / t['original']:.2f}x{parity}", flush=True)
    write_json(args.out, {"torch": torch.__version__, "size": args.size, "batch": 2, "targets": args.targets, "rows": rows})


if __name__ == "__main__":
    main()
