"""Compiles ``lift_kernel.cpp`` on first use and loads it (for :mod:`liftswap.layers.native`).

The kernel has no torch headers: it compiles in a few seconds with the system's C++ compiler
(``$CXX``, else ``c++``) into a per-user cache (``$LIFTSWAP_CACHE_DIR``, else
``$XDG_CACHE_HOME/liftswap``, else ``~/.cache/liftswap``) and is called through ctypes, which
releases the GIL. The cache is content-addressed and checked before loading (see
:func:`_verified`). Any failure is reported once, as a warning, and leaves the PyTorch
implementation in charge.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

__all__ = ["library", "error"]

_SOURCE = Path(__file__).with_name("lift_kernel.cpp")
_ABI = 9
# -fno-trapping-math lets GCC vectorise floor(); without loop-distribute-patterns it keeps the
# short row copies inline instead of calling memmove for each.
_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
          "-fno-tree-loop-distribute-patterns")  # fmt: skip
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None  # why the kernel is unavailable, once known
_enabled = os.environ.get("LIFTSWAP_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def _cache_dir() -> Path:
    if os.environ.get("LIFTSWAP_CACHE_DIR"):
        return Path(os.environ["LIFTSWAP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "liftswap"


def _cpu_signature() -> str:
    # -march=native code must not be reused on another CPU sharing the cache (e.g. over NFS).
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _compile(cxx: str, out: Path) -> None:
    errors = []
    for extra in (["-march=native"], []):  # some compilers or CPUs reject -march=native
        proc = subprocess.run([cxx, *extra, *_FLAGS, str(_SOURCE), "-o", str(out)], capture_output=True, text=True)
        if proc.returncode == 0:
            return
        errors.append(proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"])
    raise RuntimeError(f"{cxx} failed: {errors[-1][0]}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def _verified(folder: Path, key: str) -> Path | None:
    """The cached library for ``key`` if its bytes are the ones built (truncated or altered: None).

    The cache is content-addressed: ``lift_kernel-KEY.ref`` names ``lift_kernel-KEY-DIGEST.so``, DIGEST
    being the SHA-256 of the library's bytes. A damaged file (a full disk, a crash mid-copy, a
    flipped bit) fails the check and is rebuilt instead of crashing the process when loaded.
    """
    try:
        name = (folder / f"lift_kernel-{key}.ref").read_text().strip()
    except OSError:
        return None
    path = folder / name
    if not (name.startswith(f"lift_kernel-{key}-") and name.endswith(".so")) or not path.is_file():
        return None
    if _digest(path) != name[len(f"lift_kernel-{key}-") : -3]:
        return None
    return path


def _compile_into(cxx: str, folder: Path, key: str) -> Path:
    """Build the library under a private name, then publish it (library first, then its .ref) by renames:
    concurrent processes (DDP ranks) never load a half-written file."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    try:
        _compile(cxx, Path(tmp))
        path = folder / f"lift_kernel-{key}-{_digest(Path(tmp))}.so"
        os.replace(tmp, path)
        fd, ref = tempfile.mkstemp(suffix=".ref", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(path.name)
        os.replace(ref, folder / f"lift_kernel-{key}.ref")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _build() -> ctypes.CDLL:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError("no C++ compiler found (install g++ or set CXX)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        b"\0".join(s.encode() for s in (_SOURCE.read_text(), cxx, version, *_FLAGS, _cpu_signature(), platform.machine()))
    ).hexdigest()[:16]
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = _verified(folder, key) or _compile_into(cxx, folder, key)
    lib = ctypes.CDLL(str(path))
    if lib.liftswap_abi_version() != _ABI:
        raise RuntimeError(f"{path} has ABI {lib.liftswap_abi_version()}, expected {_ABI}")
    ptr, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        fwd = getattr(lib, f"liftswap_lift_forward_{suffix}")
        fwd.argtypes = [ptr] * 4 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, ptr, i32]
        fwd.restype = None
        bwd = getattr(lib, f"liftswap_lift_backward_{suffix}")
        bwd.argtypes = [ptr] * 9 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, f64, f64, i32]
        bwd.restype = None
        fwd2 = getattr(lib, f"liftswap_lift_forward2_{suffix}")
        fwd2.argtypes = [ptr] * 5 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, ptr, ptr, i32]
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
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, built now if needed; None if it cannot be (see :func:`error`)."""
    global _lib, _error
    if _lib is not None or _error is not None:
        return _lib
    with _lock:
        if _lib is None and _error is None:
            try:
                _lib = _build()
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
