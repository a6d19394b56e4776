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


TRITON_MODULES = ("cuda", "cuda_residual")  # modules of liftswap.ops whose *_kernel globals are Triton kernels


@contextmanager
def stubbed_launches():
    """liftswap's Triton kernels launch nothing inside: what is left of a call's host time is the
    rest (Python, ATen ops, allocations). Outputs are garbage meanwhile."""
    import importlib

    kept = []
    try:
        for module in TRITON_MODULES:
            module = importlib.import_module(f"liftswap.ops.{module}")
            for name in [n for n in dir(module) if n.endswith("_kernel")]:
                kept.append((module, name, getattr(module, name)))
                setattr(module, name, _NoLaunch(name))
        yield
    finally:
        for module, name, kernel in kept:
            setattr(module, name, kernel)


class NoOpLauncher:
    """Stands in for Triton's launcher (its CudaLauncher and the driver's cuLaunchKernelEx): takes
    a launch's arguments, launches nothing; ``calls`` keeps them when ``record`` is set."""

    record = False
    calls: list = []

    def __init__(self, src, metadata):
        pass

    def __call__(self, *args):
        if NoOpLauncher.record:
            NoOpLauncher.calls.append(args)


@contextmanager
def noop_driver():
    """Triton's host launch path without a GPU: kernels build for sm_90 (Triton's ptxas) and
    ``kernel[grid]`` runs all of ``JITFunction.run`` (binding, specialisation, cache lookup), on
    CPU tensors, up to a launcher that does nothing (:class:`NoOpLauncher`). liftswap serves CPU
    tensors through its CUDA path inside (as under ``on_cpu``). Needs ``TRITON_INTERPRET`` unset."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.driver import CudaDriver
    from triton.runtime import driver

    from liftswap.ops import cuda as lift_triton

    class _Utils:
        @staticmethod
        def load_binary(name, kernel, shared, device):
            return 1, 2, 64, 0, 1024  # module, function, registers, spills, most threads per block

        @staticmethod
        def get_device_properties(device):
            return {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536, "warpSize": 32}

    class _NoOpDriver(CudaDriver):
        def __init__(self):  # (CudaDriver's builds its C utilities against libcuda)
            self.utils = _Utils()
            self.launcher_cls = NoOpLauncher
            self.get_current_device = lambda: 0
            self.get_current_stream = lambda device=0: 0
            self.get_device_capability = lambda device=0: (9, 0)
            self.set_current_device = lambda device: None

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_active_torch_device(self):
            return torch.device("cpu")

    if not isinstance(lift_triton._lift_forward_kernel, triton.runtime.jit.JITFunction):
        raise RuntimeError("noop_driver() needs TRITON_INTERPRET unset before liftswap is imported")
    kept = (lift_triton._on_cpu, torch.cuda.current_device, torch._C._cuda_getCurrentRawStream)
    active = driver._active  # (reset_active() would look for a GPU)
    driver.set_active(_NoOpDriver())
    lift_triton._on_cpu = True
    torch.cuda.current_device = lambda: 0
    torch._C._cuda_getCurrentRawStream = lambda device: 0
    try:
        yield
    finally:
        lift_triton._on_cpu, torch.cuda.current_device, torch._C._cuda_getCurrentRawStream = kept
        driver._active = active
