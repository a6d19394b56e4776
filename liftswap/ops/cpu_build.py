"""Loads the fused CPU kernel that was compiled when liftswap was built (for :mod:`liftswap.ops.cpu`).

``setup.py`` compiles ``lift_kernel.cpp`` (no Python or torch headers: one build serves every torch
version) once per instruction-set level, ``_lift_kernel_LEVEL*.so`` beside this file, and writes
their SHA-256 to ``lift_kernel.json``. Here the baseline build says which level the CPU runs
(``liftswap_cpu_level``), the best build of that level or below whose bytes match the manifest is
loaded (a truncated or altered file is never loaded), and its functions are called through ctypes,
which releases the GIL. Nothing is compiled at run time. Without a usable build the PyTorch
implementation runs everywhere, after one warning; ``LIFTSWAP_NATIVE=0`` chooses it silently and
``LIFTSWAP_CPU_LEVEL`` (``baseline``, ``x86_64_v3``, ``x86_64_v4``) caps the level.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import json
import os
import threading
import warnings
from pathlib import Path

__all__ = ["library", "error", "level"]

_FOLDER = Path(__file__).resolve().parent
_ABI = 11
_LEVELS = {1: "baseline", 3: "x86_64_v3", 4: "x86_64_v4"}  # liftswap_cpu_level() -> build name
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_level: str | None = None
_error: str | None = None  # why the kernel is unavailable, once known


def _path(level: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _FOLDER / f"_lift_kernel_{level}{suffix}"
        if path.is_file():
            return path
    return None


def _verified(path: Path, manifest: dict) -> bool:
    """Whether ``path``'s bytes are the ones the build wrote (a half-written or damaged file is not)."""
    want = manifest.get(path.name)
    return isinstance(want, str) and hashlib.sha256(path.read_bytes()).hexdigest() == want


def _manifest(folder: Path = _FOLDER) -> dict:
    try:
        data = json.loads((folder / "lift_kernel.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.liftswap_abi_version() != _ABI:
        raise RuntimeError(f"{path.name} has ABI {lib.liftswap_abi_version()}, expected {_ABI} (rebuild: pip install -e .)")
    return lib


def _load() -> tuple[ctypes.CDLL, str]:
    manifest = _manifest()
    base = _path("baseline")
    if base is None:
        raise RuntimeError("liftswap was installed without its compiled kernel (no C++ compiler at build time?)")
    if not _verified(base, manifest):
        raise RuntimeError(f"{base.name} does not match the SHA-256 its build recorded (damaged install: reinstall liftswap)")
    cap = next((n for n, v in _LEVELS.items() if v == os.environ.get("LIFTSWAP_CPU_LEVEL", "").strip()), max(_LEVELS))
    best = min(_open(base).liftswap_cpu_level(), cap)
    for number in sorted((n for n in _LEVELS if n <= best), reverse=True):
        name = _LEVELS[number]
        path = _path(name)
        if path is not None and _verified(path, manifest):
            return _bind(_open(path)), name
    raise RuntimeError("no build of the kernel this CPU runs")  # unreachable: baseline is verified above


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    ptr, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        fwd = getattr(lib, f"liftswap_lift_forward_{suffix}")
        fwd.argtypes = [ptr] * 4 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, ptr, i32]
        fwd.restype = None
        bwd = getattr(lib, f"liftswap_lift_backward_{suffix}")
        bwd.argtypes = [ptr] * 9 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, f64, f64, i32]
        bwd.restype = None
        fwd2 = getattr(lib, f"liftswap_lift_forward2_{suffix}")
        fwd2.argtypes = [ptr] * 6 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, ptr, ptr, i32]
        fwd2.restype = i32
        bwd2 = getattr(lib, f"liftswap_lift_backward2_{suffix}")
        bwd2.argtypes = [ptr] * 10 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real] + [f64] * 4 + [i32]
        bwd2.restype = i32
        ufwd = getattr(lib, f"liftswap_unlift_forward_{suffix}")
        ufwd.argtypes = [ptr] * 4 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, i32]
        ufwd.restype = None
        ubwd = getattr(lib, f"liftswap_unlift_backward_{suffix}")
        ubwd.argtypes = [ptr] * 7 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, i32]
        ubwd.restype = None
        ufwd2 = getattr(lib, f"liftswap_unlift_forward2_{suffix}")
        ufwd2.argtypes = [ptr] * 5 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, i32]
        ufwd2.restype = i32
        ubwd2 = getattr(lib, f"liftswap_unlift_backward2_{suffix}")
        ubwd2.argtypes = [ptr] * 9 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, i32]
        ubwd2.restype = i32
        mfwd = getattr(lib, f"liftswap_maxpool_s1_forward_{suffix}")
        mfwd.argtypes = [ptr] * 3 + [i64] * 3 + [i32] * 7
        mfwd.restype = None
        mbwd = getattr(lib, f"liftswap_maxpool_s1_backward_{suffix}")
        mbwd.argtypes = [ptr] * 3 + [i64] * 3 + [i32] * 7
        mbwd.restype = None
        comb = getattr(lib, f"liftswap_combine_{suffix}")
        comb.argtypes = [ptr] * 3 + [i64] * 4 + [i32]
        comb.restype = None
        comb_bwd = getattr(lib, f"liftswap_combine_backward_{suffix}")
        comb_bwd.argtypes = [ptr] * 4 + [i64] * 4 + [i32]
        comb_bwd.restype = None
        poly = getattr(lib, f"liftswap_polyphase_{suffix}")
        poly.argtypes = [ptr] * 2 + [i64] * 3 + [i32] * 2
        poly.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel library; None if there is none this process can use (see :func:`error`)."""
    global _lib, _level, _error
    if _lib is not None or _error is not None:
        return _lib
    with _lock:
        if _lib is None and _error is None:
            try:
                _lib, _level = _load()
            except Exception as exc:  # any failure leaves the PyTorch implementation in charge
                _error = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"liftswap: the fused CPU kernel is unavailable ({_error}); using the PyTorch "
                    "implementation (same results, slower). Set LIFTSWAP_NATIVE=0 to silence this.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _lib


def error() -> str | None:
    """Why the kernel could not be built or loaded, once :func:`library` has tried."""
    return _error


def level() -> str | None:
    """The instruction-set level of the loaded kernel build (``baseline``, ``x86_64_v3``, ``x86_64_v4``)."""
    library()
    return _level
