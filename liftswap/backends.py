"""Which implementation runs the layers on each device: the one place to ask.

``LIFTSWAP_NATIVE=0`` and ``LIFTSWAP_TRITON=0`` turn the kernels off (the PyTorch ops then run);
``LIFTSWAP_CPU_LEVEL`` caps the CPU kernel's instruction set. Everywhere a kernel does not serve
(other dtypes, ``torch.export``/ONNX, ``torch.func`` transforms), the PyTorch ops compute the
same function.
"""

from __future__ import annotations

import torch

__all__ = ["backends"]


def backends() -> dict[str, str]:
    """What serves the layers in eager mode on CPU and on CUDA, in words.

    Example:
        >>> import liftswap
        >>> sorted(liftswap.backends())
        ['cpu', 'cuda']
    """
    from .ops import cpu_build, cuda as triton_kernels
    from .ops import cpu as cpu_kernel

    if cpu_kernel.available():
        cpu = f"fused C++ kernel ({cpu_build.level()} build; float32/float64)"
    elif cpu_build.error():
        cpu = f"PyTorch ops (kernel unavailable: {cpu_build.error()})"
    else:
        cpu = "PyTorch ops (LIFTSWAP_NATIVE=0)"
    if not torch.cuda.is_available():
        cuda = "no CUDA device"
    elif triton_kernels.available():
        cuda = "Triton kernels (kernel_size 3; PyTorch ops otherwise)"
    else:
        cuda = "PyTorch ops (Triton unavailable or LIFTSWAP_TRITON=0)"
    return {"cpu": cpu, "cuda": cuda}
