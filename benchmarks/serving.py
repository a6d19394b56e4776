"""Serving: original vs preserve-converted models in onnxruntime, per provider, batch, dtype and
launch mode, with the parity of each file.

For each model: export the original and the converted model (float32 and float16 files, through
liftswap.export_onnx, checked against PyTorch), then time onnxruntime sessions in turns (median
of repeats) at each batch size: plain ``run`` with numpy inputs, ``run_with_iobinding`` with the
input and output on the device (CUDA), and with onnxruntime's CUDA graph (``enable_cuda_graph``,
which needs I/O binding and fixed shapes). Prints a table, writes JSON. On a machine without the
CUDA provider the CUDA rows are skipped with a message; ``--provider cpu`` is a dry run.

    python benchmarks/serving.py [--provider cuda] [--batches 1 32] [--dtypes float32 float16]
                                 [--models torchvision:resnet50 timm:vgg13_bn] [--size 224]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from benchutil import write_json

import liftswap

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MODELS = ["torchvision:resnet50", "timm:vgg13_bn"]
PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
NP = {"float32": np.float32, "float16": np.float16}


def session(path: str, provider: str, threads: int, cuda_graph: bool):
    """The serving recipe (docs/serving.md): all graph optimisations, one provider."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    options = {"enable_cuda_graph": "1"} if cuda_graph else {}
    return ort.InferenceSession(path, opts, providers=[(provider, options)])


def runner(s, x: np.ndarray, mode: str, device: str):
    """A no-argument call running one inference in ``mode`` ("run", "iobinding", "cuda graph")."""
    import onnxruntime as ort

    name, out = s.get_inputs()[0].name, s.get_outputs()[0].name
    if mode == "run":
        return lambda: s.run(None, {name: x})
    value = ort.OrtValue.ortvalue_from_numpy(x, device, 0)  # the input stays on the device
    binding = s.io_binding()
    binding.bind_ortvalue_input(name, value)
    binding.bind_output(out, device)
    if mode == "cuda graph":  # the graph replays fixed addresses: bind the output buffer too
        shape = s.run(None, {name: x})[0].shape
        binding.bind_ortvalue_output(out, ort.OrtValue.ortvalue_from_shape_and_type(shape, x.dtype, device, 0))

    def call():
        s.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return call


def median_in_turns(calls: dict, repeats: int, warmup: int = 3) -> dict:
    for f in calls.values():
        for _ in range(warmup):
            f()
    samples = {k: [] for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            t0 = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in samples.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--provider", default="cuda", choices=sorted(PROVIDERS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=sorted(NP))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "serving.json"))
    args = ap.parse_args(argv)
    import onnxruntime as ort

    provider = PROVIDERS[args.provider]
    if provider not in ort.get_available_providers():
        print(f"onnxruntime {ort.__version__} has no {provider} here ({ort.get_available_providers()}): nothing measured")
        return 0
    device = "cuda" if args.provider == "cuda" else "cpu"
    modes = ["run"] + (["iobinding", "cuda graph"] if device == "cuda" else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            original = liftswap.build_model(spec).eval()
            x0 = torch.randn(2, 3, args.size, args.size)
            converted = liftswap.patch(original, example_inputs=x0).eval()
            for dtype in args.dtypes:
                files, parity = {}, {}
                for label, model in (("original", original), ("converted", converted)):
                    path = os.path.join(tmp, f"{label}_{dtype}.onnx")
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        report = liftswap.export_onnx(model, path, x0, dtype=dtype, providers=[provider])
                    files[label], parity[label] = path, report.max_rel_diff
                for batch in args.batches:
                    x = np.random.default_rng(0).standard_normal((batch, 3, args.size, args.size)).astype(NP[dtype])
                    for mode in modes:
                        calls = {label: runner(session(p, provider, args.threads, mode == "cuda graph"), x, mode, device)
                                 for label, p in files.items()}  # fmt: skip
                        t = median_in_turns(calls, args.repeats)
                        row = {
                            "model": spec, "provider": provider, "dtype": dtype, "batch": batch, "mode": mode,
                            "original_ms": 1e3 * t["original"], "converted_ms": 1e3 * t["converted"],
                            "ratio": t["converted"] / t["original"], "parity_rel": parity["converted"],
                        }  # fmt: skip
                        rows.append(row)
                        print(f"{spec:22s} {dtype:8s} b{batch:<3d} {mode:10s} {row['original_ms']:8.2f} ms -> "
                              f"{row['converted_ms']:8.2f} ms  {row['ratio']:.3f}x  parity {row['parity_rel']:.1e}")  # fmt: skip
    write_json(args.out, {"rows": rows, "onnxruntime": ort.__version__, "torch": torch.__version__, "size": args.size})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
