"""The fused CPU kernel of one lifting step (``lift_kernel.cpp``), built on first use.

Op by op, one lifting step is a dozen element-wise passes around two depthwise convolutions;
the kernel does a whole line (one row of the lifted axis) in cache, in one pass forward and one
backward that recomputes the line's forward instead of keeping intermediates. It has no torch
headers: it compiles in a few seconds with the system's C++ compiler into a per-user cache
(``$LIFTSWAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/liftswap``, else ``~/.cache/liftswap``) and is
called through ctypes, which releases the GIL.

It serves CPU float32/float64 tensors in eager mode. Everything else (CUDA, other dtypes,
autocast, torch.compile, torch.export, functorch transforms, forward-mode AD) runs the PyTorch
implementation, which computes the same function. Without a compiler the PyTorch implementation
runs everywhere, after one warning; ``LIFTSWAP_NATIVE=0`` chooses it silently.
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
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "enabled", "lift_stacked"]

_SOURCE = Path(__file__).with_name("lift_kernel.cpp")
_ABI = 1
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
    base = [cxx, "-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", str(_SOURCE), "-o", str(out)]
    errors = []
    for extra in (["-march=native"], []):  # some compilers or CPUs reject -march=native
        proc = subprocess.run(base[:1] + extra + base[1:], capture_output=True, text=True)
        if proc.returncode == 0:
            return
        errors.append(proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"])
    raise RuntimeError(f"{cxx} failed: {errors[-1][0]}")


def _build() -> ctypes.CDLL:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError("no C++ compiler found (install g++ or set CXX)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        b"\0".join(s.encode() for s in (_SOURCE.read_text(), cxx, version, _cpu_signature(), platform.machine()))
    ).hexdigest()[:16]
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lift_kernel-{key}.so"
    if not path.exists():
        # Build beside the target and rename: concurrent processes (DDP ranks) never load a half-written file.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        try:
            _compile(cxx, Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(path))
    if lib.liftswap_abi_version() != _ABI:
        raise RuntimeError(f"{path} has ABI {lib.liftswap_abi_version()}, expected {_ABI}")
    ptr, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        fwd = getattr(lib, f"liftswap_lift_forward_{suffix}")
        fwd.argtypes = [ptr] * 3 + [i64] * 5 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, ptr, i32]
        fwd.restype = None
        bwd = getattr(lib, f"liftswap_lift_backward_{suffix}")
        bwd.argtypes = [ptr] * 5 + [i64] * 5 + [i32] + [ptr] * 4 + [real] + [ptr] * 4 + [real, f64, f64, i32]
        bwd.restype = None
    return lib


def _library() -> ctypes.CDLL | None:
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


def available() -> bool:
    """Whether the fused CPU kernel is built and loaded (building it now if needed).

    Example:
        >>> from liftswap.layers import native
        >>> isinstance(native.available(), bool)
        True
    """
    return _enabled and _library() is not None


@contextmanager
def enabled(flag: bool):
    """Use (or not) the fused CPU kernel inside the block; for comparisons and benchmarks."""
    global _enabled
    before, _enabled = _enabled, bool(flag)
    try:
        yield
    finally:
        _enabled = before


def usable(x: Tensor, *weights: Tensor | None) -> bool:
    """Whether :func:`lift_stacked` serves these tensors (see the module docstring)."""
    if not _enabled or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if type(x) not in (Tensor, torch.nn.Parameter):
        return False
    for w in weights:
        if w is not None and (w.dtype != x.dtype or w.device.type != "cpu" or type(w) not in (Tensor, torch.nn.Parameter)):
            return False
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.is_autocast_enabled("cpu"):
        return False
    if torch._C._functorch.peek_interpreter_stack() is not None or torch.autograd.forward_ad._current_level >= 0:
        return False
    return _library() is not None


def _layout(x: Tensor, dim: int) -> tuple[int, int, int, int, int]:
    axis = x.dim() + dim
    p = 1
    for v in x.shape[2:axis]:
        p *= v
    b = 1
    for v in x.shape[axis + 1 :]:
        b *= v
    return x.shape[0] * x.shape[1], x.shape[1], p, x.shape[axis], b


def _operator_args(dw_weight: Tensor, dw_bias: Tensor | None, pw_weight: Tensor, pw_bias: Tensor | None):
    c = dw_weight.shape[0]
    zeros = dw_weight.new_zeros(c)
    return [
        dw_weight.detach().reshape(c, -1).contiguous(),
        (zeros if dw_bias is None else dw_bias.detach()).contiguous(),
        pw_weight.detach().reshape(c).contiguous(),
        (zeros if pw_bias is None else pw_bias.detach()).contiguous(),
    ]


def _pointers(tensors) -> list[int]:
    return [t.data_ptr() for t in tensors]


class _Lift(torch.autograd.Function):
    """(x, P, U) -> (stacked [s, d], sum (s - x_o)^2, sum d^2), through the fused kernel."""

    @staticmethod
    def forward(ctx, x, dim, p_base, u_base, with_costs, pw, pb, ppw, ppb, uw, ub, upw, upb):
        lib = _library()
        x = x.contiguous()
        g, c, p, length, b = _layout(x, dim)
        axis = x.dim() + dim
        out = x.new_empty((2,) + x.shape[:axis] + ((length + 1) // 2,) + x.shape[axis + 1 :])
        pa, ua = _operator_args(pw, pb, ppw, ppb), _operator_args(uw, ub, upw, upb)
        costs = torch.empty((g, 2), dtype=torch.float64) if with_costs else None
        suffix = "f32" if x.dtype == torch.float32 else "f64"
        getattr(lib, f"liftswap_lift_forward_{suffix}")(
            x.data_ptr(), out[0].data_ptr(), out[1].data_ptr(), g, c, p, length, b, pw.shape[-1],
            *_pointers(pa), p_base, *_pointers(ua), u_base, None if costs is None else costs.data_ptr(),
            torch.get_num_threads(),
        )  # fmt: skip
        ctx.save_for_backward(x, pw, pb, ppw, ppb, uw, ub, upw, upb)
        ctx.meta = (dim, p_base, u_base)
        if costs is None:
            cu = cp = x.new_zeros(())
            ctx.mark_non_differentiable(cu, cp)
        else:
            cu, cp = costs.sum(0).to(x.dtype).unbind()
        return out, cu, cp

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_cu, g_cp):
        lib = _library()
        x, pw, pb, ppw, ppb, uw, ub, upw, upb = ctx.saved_tensors
        dim, p_base, u_base = ctx.meta
        g, c, p, length, b = _layout(x, dim)
        k = pw.shape[-1]
        if g_out is None:  # only the costs were used
            axis = x.dim() + dim
            g_out = x.new_zeros((2,) + x.shape[:axis] + ((length + 1) // 2,) + x.shape[axis + 1 :])
        g_out = g_out.contiguous()
        gx = torch.empty_like(x)
        pgrad = torch.empty((g, 2 * (k + 3)), dtype=torch.float64)
        pa, ua = _operator_args(pw, pb, ppw, ppb), _operator_args(uw, ub, upw, upb)
        kcu = 0.0 if g_cu is None else 2.0 * float(g_cu)
        kcp = 0.0 if g_cp is None else 2.0 * float(g_cp)
        suffix = "f32" if x.dtype == torch.float32 else "f64"
        getattr(lib, f"liftswap_lift_backward_{suffix}")(
            x.data_ptr(), g_out[0].data_ptr(), g_out[1].data_ptr(), gx.data_ptr(), pgrad.data_ptr(),
            g, c, p, length, b, k, *_pointers(pa), p_base, *_pointers(ua), u_base, kcu, kcp,
            torch.get_num_threads(),
        )  # fmt: skip
        per_channel = pgrad.view(x.shape[0], c, 2 * (k + 3)).sum(0).to(x.dtype)
        grads = []
        for offset, (w, bias, pwt, pbias) in ((0, (pw, pb, ppw, ppb)), (k + 3, (uw, ub, upw, upb))):
            part = per_channel[:, offset : offset + k + 3]
            grads += [
                part[:, :k].reshape(w.shape),
                None if bias is None else part[:, k].reshape(bias.shape),
                part[:, k + 1].reshape(pwt.shape),
                None if pbias is None else part[:, k + 2].reshape(pbias.shape),
            ]
        return (gx, None, None, None, None, *grads)


def lift_stacked(x: Tensor, dim: int, predict, update, with_costs: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One lifting step through the kernel: ``(cat([s, d]) along the batch, c_u, c_p)``.

    ``c_u``/``c_p`` are means over the whole call (as ``(s - x_o).square().mean()`` would be),
    None without ``with_costs``. Call only when :func:`usable` says so.
    """
    out, cu, cp = _Lift.apply(
        x, dim, predict.base, update.base, with_costs,
        predict.dw_weight, predict.dw_bias, predict.pw_weight, predict.pw_bias,
        update.dw_weight, update.dw_bias, update.pw_weight, update.pw_bias,
    )  # fmt: skip
    bands = out.flatten(0, 1)
    if not with_costs:
        return bands, None, None
    count = out[0].numel()
    return bands, cu / count, cp / count
