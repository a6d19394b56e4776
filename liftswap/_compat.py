"""Version differences of PyTorch that the package works around, in one place."""

from __future__ import annotations

import torch


def is_exporting() -> bool:
    """``torch.compiler.is_exporting()``, also right under ``torch.compile`` before torch 2.14.

    Until torch 2.14 (pytorch/pytorch#176499) dynamo replaced every call of
    ``torch.compiler.is_exporting()`` with ``True``, so compiled models took the export-only paths
    (and on CUDA never reached the Triton kernels' operators). The flag that export sets
    (torch >= 2.6) is read instead; dynamo reads its value at trace time and guards on it.
    """
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    return torch.compiler.is_exporting() if flag is None else bool(flag)
