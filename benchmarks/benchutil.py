"""Shared by the benchmark scripts: timing and writing results."""

from __future__ import annotations

import collections
import json
import os
import statistics
import time
from contextlib import contextmanager
from typing import Callable

import torch


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu", inner: int = 1) -> dict[str, float]:
    """Median wall time of each function, timed in turns (one run of each per round).

    Taking turns spreads slow phases of a shared machine over all functions alike, so the
    ratios between them hold up better than from back-to-back blocks of runs. On a CUDA
    ``device`` each sample is ``inner`` back-to-back calls between two synchronisations,
    divided by ``inner``: the time a loop of such calls takes, launch overhead included.
    """
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for fn in fns.values():
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {name: statistics.median(v) for name, v in samples.items()}


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a partial file never replaces a result)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)
    print(f"wrote {path}")


class _NoLaunch:
    """Stands in for a Triton kernel: launching it does nothing (the host's work around it stays)
    but is counted in ``LAUNCHES``."""

    def __init__(self, name: str):
        self.name = name

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            LAUNCHES[self.name] += 1

        return launch


LAUNCHES: collections.Counter = collections.Counter()


TRITON_KERNELS = {  # module of liftswap.ops: its kernels
    "cuda": ("_lift_forward_kernel", "_down2_forward_kernel", "_lift_backward_kernel", "_unlift_forward_kernel",
             "_up2_forward_kernel", "_unlift_backward_kernel", "_max_pool_forward_kernel", "_max_pool_backward_kernel"),
    "cuda_residual": ("_residual_forward_kernel", "_residual_backward_kernel"),
}  # fmt: skip


@contextmanager
def stubbed_launches():
    """liftswap's Triton kernels launch nothing inside: what is left of a call's host time is the
    rest (Python, ATen ops, allocations). Outputs are garbage meanwhile."""
    import importlib

    kept = []
    try:
        for module, names in TRITON_KERNELS.items():
            module = importlib.import_module(f"liftswap.ops.{module}")
            for name in names:
                kept.append((module, name, getattr(module, name)))
                setattr(module, name, _NoLaunch(name))
        yield
    finally:
        for module, name, kernel in kept:
            setattr(module, name, kernel)
