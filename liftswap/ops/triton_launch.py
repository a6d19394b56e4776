"""Launching the Triton kernels: Triton's launcher, without ``JITFunction.run``'s work per call.

``kernel[grid](*args)`` binds every argument to the signature, specialises each one (dtype and
16-byte alignment of a pointer; an integer's value 1, divisibility by 16 and width), builds the
cache key, builds the launch metadata, compares the globals the kernel read with their values at
build time and only then calls the launcher: a launch of the backward kernel (25 arguments, 10
constexprs) cost the host 14.2 us through ``run`` and 6.2 us through :func:`launch`
(``benchmarks/launch_overhead.py``, the launcher itself not counted). A 2-D layer's forward and
backward launch 4 kernels, so at a small batch this is a good part of the time the GPU waits on
the host.

:func:`launch` keys each launch by what specialises it (the kernel, the device, the constexprs,
each tensor's dtype and alignment, each integer's value). The first launch of a key goes through
``kernel[grid]`` (which builds the kernel); the second does too, with the build's launcher wrapped
to see what ``run`` hands it: where that equals what :func:`launch` would hand it, later launches
of the key call the launcher directly, else they keep going through ``run``. So a Triton whose
launcher takes other arguments loses the shortcut, not correctness. Triton's launch hooks
(profilers such as proton) see every launch: while one is set, launches go through ``run``.
``LIFTSWAP_TRITON_FAST_LAUNCH=0`` turns the shortcut off.
"""

from __future__ import annotations

import functools
import operator
import os

import torch
from torch import Tensor

__all__ = ["launch"]

try:
    import triton
    from triton.runtime.jit import JITFunction
except Exception:  # pragma: no cover - no Triton: nothing is launched
    triton = JITFunction = None
try:  # Triton >= 3.4 keeps the launch hooks here; before, the shortcut stays off
    from triton import knobs as _knobs
except Exception:  # pragma: no cover
    _knobs = None

_FAST = _knobs is not None and os.environ.get("LIFTSWAP_TRITON_FAST_LAUNCH", "1") != "0"
# key -> (launcher, function, metadata, constexpr values in signature order) once checked; False:
# the key launches through run(); a build (CompiledKernel): checked at its next launch
_LAUNCHERS: dict = {}
_MOST_KEYS = 4096  # sizes vary in some models (detection): forget them all rather than grow


def _hooked() -> bool:
    """Whether a launch hook is set (Triton's hooks are chains, empty when none is)."""
    enter, leave = _knobs.runtime.launch_enter_hook, _knobs.runtime.launch_exit_hook
    return bool(getattr(enter, "calls", enter)) or bool(getattr(leave, "calls", leave))


_data_ptr = Tensor.data_ptr
_dtype = operator.attrgetter("dtype")
_POINTERS: dict = {}  # id(kernel) -> its leading tensor arguments (liftswap's kernels take tensors, then integers)


def launch(kernel, grid: int, *args, **constexprs) -> None:
    """``kernel[(grid,)](*args, **constexprs)`` on the current CUDA device and stream.

    ``args`` are the kernel's arguments in signature order, tensors then integers, and
    ``constexprs`` its remaining, constexpr, parameters by name. Anything but a CUDA
    :class:`~triton.runtime.jit.JITFunction` (the interpreter's kernels, benchmarks' stubs) is
    launched as ``kernel[(grid,)]``, and so is a launch with a tensor not 16-byte aligned (a view
    at an odd offset: rare, and one flag less in the key).
    """
    if not _FAST or not isinstance(kernel, JITFunction) or _hooked():
        kernel[(grid,)](*args, **constexprs)
        return
    n = _POINTERS.get(id(kernel))
    if n is None:
        n = _POINTERS[id(kernel)] = next((i for i, a in enumerate(args) if not isinstance(a, Tensor)), len(args))
    tensors = args[:n]
    try:
        misaligned = functools.reduce(operator.or_, map(_data_ptr, tensors), 0) & 15
    except TypeError:  # not laid out as the kernel's first launch was
        misaligned = True
    if misaligned:
        kernel[(grid,)](*args, **constexprs)
        return
    device = torch.cuda.current_device()
    # (C-level maps: a Python loop over 25 arguments costs about as much as Triton's binder; kernels
    # by id here and above: a JITFunction's __hash__ is Python, 0.6 us; they are module globals, never freed)
    key = (id(kernel), device, *constexprs.items(), *map(_dtype, tensors), *args[n:])
    entry = _LAUNCHERS.get(key)
    if type(entry) is tuple:
        run, function, metadata, tail = entry
        run(grid, 1, 1, torch._C._cuda_getCurrentRawStream(device), function, metadata, None, None, None, *args, *tail)
        return
    if entry is None:  # the first launch of this key: Triton builds or finds the kernel
        if len(_LAUNCHERS) >= _MOST_KEYS:
            _LAUNCHERS.clear()
        _LAUNCHERS[key] = kernel[(grid,)](*args, **constexprs)
        return
    if entry is False:
        kernel[(grid,)](*args, **constexprs)
        return
    _LAUNCHERS[key] = _checked(entry, kernel, grid, device, n, args, constexprs)


def _checked(build, kernel, grid: int, device: int, n: int, args: tuple, constexprs: dict):
    """Launch through ``run`` once more, with the build's launcher wrapped: the entry for the
    direct path if ``run`` handed the launcher what :func:`launch` will, else False."""
    try:
        names = kernel.arg_names
        tail = tuple(constexprs[name] for name in names[len(args):])
        run = build.run  # (Triton loads the module and makes its launcher on first access)
        function, metadata = build.function, build.packed_metadata
    except (AttributeError, KeyError, TypeError):
        kernel[(grid,)](*args, **constexprs)
        return False
    seen = []

    def recording(*call):
        seen.append(call)
        return run(*call)

    build._run = recording
    try:
        kernel[(grid,)](*args, **constexprs)
    finally:
        build._run = run
    # (what run() passes between: the launch metadata and hooks, none of which a launch without
    # hooks reads; the direct path passes None)
    want = (grid, 1, 1, torch._C._cuda_getCurrentRawStream(device), function, metadata, *args, *tail)
    if any(isinstance(a, Tensor) for a in args[n:]):  # (the key holds them by identity: never again)
        return False
    if len(names) != len(args) + len(tail) or len(seen) != 1 or not _same(seen[0][:6] + seen[0][9:], want):
        return False
    return run, function, metadata, tail


def _same(got: tuple, want: tuple) -> bool:
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a is b:
            continue
        if isinstance(a, Tensor) or isinstance(b, Tensor) or type(a) is not type(b) or a != b:
            return False
    return True
