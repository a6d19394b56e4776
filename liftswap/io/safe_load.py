"""Reading torch files without running code: ``torch.load(weights_only=True)`` with clear errors."""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from typing import Any

import torch

from ..errors import LiftswapError
from ..limits import MAX_PICKLE_BYTES, MAX_ZIP_RATIO

__all__ = ["safe_torch_load"]

_ALLOWED = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.slice", "_codecs.encode")


def _check_zip(path: str) -> None:
    """Refuse a zip whose entries would inflate far beyond the file (a zip bomb), before anything is read."""
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    declared = sum(i.file_size for i in infos)
    if declared > MAX_ZIP_RATIO * os.path.getsize(path) + 2**20:
        raise LiftswapError(
            f"refused to load {path}: its entries would unpack to {declared / 2**20:.0f} MiB from {os.path.getsize(path) / 2**20:.1f} MiB "
            "(torch files store tensors unpacked; this looks like a zip bomb)"
        )
    pkl = [i for i in infos if i.filename.endswith("data.pkl")]
    if any(i.file_size > MAX_PICKLE_BYTES for i in pkl):
        raise LiftswapError(f"refused to load {path}: its pickle is over {MAX_PICKLE_BYTES // 2**20} MiB")


def _pickle_bytes(path: str) -> bytes:
    """A torch file's pickle bytes (a legacy file's several pickles in a row), read at most MAX_PICKLE_BYTES far."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return b""
            with z.open(name) as f:
                return f.read(MAX_PICKLE_BYTES)
    with open(path, "rb") as f:
        return f.read(MAX_PICKLE_BYTES)


def foreign_globals(path: str) -> list[str]:
    """Names of importable objects a pickle would call, other than torch's; read without running it."""
    found: list[str] = []
    try:
        data = _pickle_bytes(path)
    except Exception:  # noqa: BLE001 - a damaged zip (bad CRC, truncated): no pickle to read
        return found
    stream = io.BytesIO(data)
    while stream.tell() < len(data):  # legacy files hold several pickles back to back
        start = stream.tell()
        strings: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # noqa: BLE001 - a corrupt stream: whatever was read so far
            break
        if stream.tell() == start:
            break
    return [g for g in found if not g.startswith(_ALLOWED)]


def safe_torch_load(path: str | os.PathLike, what: str = "") -> Any:
    """``torch.load(path, weights_only=True)``; a file that carries code is refused, unread.

    Zip bombs are refused from the zip's directory before anything is unpacked.
    """
    path = str(path)
    label = f"{what} {path}".strip()
    if not os.path.isfile(path):
        raise LiftswapError(f"{what + ' ' if what else 'file '}not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            _check_zip(path)
    except LiftswapError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        # NotImplementedError: a directory entry claiming a zip version or method zipfile lacks
        raise LiftswapError(f"cannot read {label}: a damaged zip ({type(e).__name__})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt bytes fail in many ways (IndexError, EOFError, ...)
        code = foreign_globals(path)
        if code:
            raise LiftswapError(f"refused to load {label}: it carries code ({', '.join(sorted(set(code))[:3])}); only plain weights are read") from None
        raise LiftswapError(f"cannot read {label}: not a torch weights file, or corrupt ({type(e).__name__})") from None
