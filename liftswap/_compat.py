"""Version differences of PyTorch that the package works around, in one place."""

from __future__ import annotations

import torch


def is_exporting() -> bool:
    """Whether ``torch.export`` (and so the ONNX exporter) is tracing, for every torch >= 2.4.

    ``torch.compiler.is_exporting()`` says this from torch 2.7 on, but until torch 2.14
    (pytorch/pytorch#176499) dynamo replaced each call of it with ``True``, also under
    ``torch.compile`` (so compiled models took the export-only paths and on CUDA never reached the
    Triton kernels' operators): the flag export sets is read instead, whose value dynamo reads at
    trace time and guards on. Torch 2.4-2.6 have neither; there non-strict export (the ONNX
    exporter's first try) is the tracing that is not dynamo's.
    """
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    if flag is not None:
        return bool(flag)
    if hasattr(torch.compiler, "is_exporting"):
        return torch.compiler.is_exporting()
    return torch.compiler.is_compiling() and not torch.compiler.is_dynamo_compiling()
