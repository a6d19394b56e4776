"""Reading torch files without running code: ``torch.load(weights_only=True)`` with clear errors."""

from __future__ import annotations

import os
import pickle
import pickletools
import zipfile
from typing import Any

import torch

from ..errors import LiftswapError

__all__ = ["safe_torch_load"]

_ALLOWED = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.slice", "_codecs.encode")


def _pickle_bytes(path: str) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else b""
    with open(path, "rb") as f:
        return f.read()


def foreign_globals(path: str) -> list[str]:
    """Names of importable objects a pickle would call, other than torch's; read without running it."""
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(_pickle_bytes(path)):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a corrupt stream: whatever was read so far
        pass
    return [g for g in found if not g.startswith(_ALLOWED)]


def safe_torch_load(path: str | os.PathLike, what: str = "") -> Any:
    """``torch.load(path, weights_only=True)``; a file that carries code is refused, unread."""
    path = str(path)
    label = f"{what} {path}".strip()
    if not os.path.isfile(path):
        raise LiftswapError(f"{what + ' ' if what else 'file '}not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt bytes fail in many ways (IndexError, EOFError, ...)
        code = foreign_globals(path) if isinstance(e, pickle.UnpicklingError) else []
        if code:
            raise LiftswapError(f"refused to load {label}: it carries code ({', '.join(sorted(set(code))[:3])}); only plain weights are read") from None
        raise LiftswapError(f"cannot read {label}: not a torch weights file, or corrupt ({type(e).__name__})") from None
