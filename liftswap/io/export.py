"""ONNX export with the torch.export-based exporter, checked against onnxruntime (SPEC 7)."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..errors import LiftswapError, short_repr
from ..ops.onnx import onnx_export_mode, onnx_translations
from .files import check_output, private_temp
from ..surgery.inputs import example_inputs_for
from ..surgery.plan import refuse_wrapped

__all__ = ["export_onnx", "ExportReport", "check_onnx", "check_opset"]

_TWO_GB = 2**31
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how onnxruntime's outputs compared with PyTorch's."""

    path: str
    opset: int | None
    providers: list[str]
    checks: list[dict] = field(default_factory=list)  # {"shapes", "max_abs_diff", "max_rel_diff"}
    export_seconds: float = 0.0
    external_data: bool = False

    @property
    def max_abs_diff(self) -> float:
        return max((c["max_abs_diff"] for c in self.checks), default=0.0)

    @property
    def max_rel_diff(self) -> float:
        return max((c["max_rel_diff"] for c in self.checks), default=0.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff}


def _dynamic_shapes(inputs: tuple, dynamic_batch: bool, dynamic_spatial: bool):
    Dim = torch.export.Dim
    shapes = []
    for t in inputs:
        spec = {}
        if dynamic_batch:
            spec[0] = Dim.DYNAMIC
        if dynamic_spatial:
            for d in range(2, t.dim()):
                spec[d] = Dim.DYNAMIC
        shapes.append(spec or None)
    return tuple(shapes)


_MIN_OPSET = 18  # the torch.export-based exporter's lowest


def _max_opset() -> int:
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_MAX_OPSET", 23))


def check_opset(opset: Any) -> None:
    """Refuse an opset the torch.export-based exporter cannot write (it would write another one)."""
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or not _MIN_OPSET <= opset <= _max_opset()):
        raise LiftswapError(f"opset must be an integer from {_MIN_OPSET} to {_max_opset()} (this torch's exporter), got {short_repr(opset)}")


def _written_opset(onnx_path: str) -> int | None:
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _fixed_axes(onnx_path: str, dynamic_shapes: tuple) -> list[str]:
    """The axes asked to be dynamic that the exported file fixes to a size, as "input i axis a = n"."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    fixed = []
    for i, (spec, value) in enumerate(zip(dynamic_shapes, inputs)):
        dims = value.type.tensor_type.shape.dim
        for axis in sorted(spec or {}):
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                fixed.append(f"input {i} axis {axis} = {dims[axis].dim_value}")
    return fixed


def _other_inputs(inputs: tuple, dynamic_batch: bool, dynamic_spatial: bool) -> list[tuple]:
    """The export shape, another batch size, another (odd) spatial size."""
    out = [inputs]
    gen = torch.Generator().manual_seed(1)
    if dynamic_batch:
        out.append(tuple(torch.randn((t.shape[0] + 1,) + tuple(t.shape[1:]), generator=gen).to(t) for t in inputs))
    if dynamic_spatial:

        def odd(n: int) -> int:
            return n + 1 if n % 2 == 0 else n + 2

        out.append(tuple(torch.randn(tuple(t.shape[:2]) + tuple(odd(n) for n in t.shape[2:]), generator=gen).to(t) for t in inputs))
    return out


def check_onnx(
    model: nn.Module, path: str, input_sets: Sequence[tuple], providers: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[list[dict], list[str]]:
    """Run ``path`` in onnxruntime on each input set (cast to ``dtype``, the file's input type);
    compare every output with ``model``'s on the input sets as given."""
    import numpy as np
    import onnxruntime as ort

    available = ort.get_available_providers()
    if not providers:  # the GPU when onnxruntime has it (onnxruntime-gpu), else the CPU
        providers = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
        providers.append("CPUExecutionProvider")
    providers = list(providers)
    missing = [p for p in providers if p not in available]
    if missing:
        raise LiftswapError(f"onnxruntime has no {', '.join(missing)} here (available: {', '.join(available)})")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the result or a LiftswapError says the rest
    session = ort.InferenceSession(path, options, providers=providers)
    names = [i.name for i in session.get_inputs()]
    checks = []
    for inputs in input_sets:
        got = session.run(None, {n: t.detach().to(dtype).cpu().numpy() for n, t in zip(names, inputs)})
        got = [g.astype(np.float64) if g.dtype == np.float16 else g for g in got]
        with torch.no_grad():
            ref = [t.detach().cpu().numpy() for t in tree_leaves(model(*inputs)) if isinstance(t, torch.Tensor)]
        abs_diff, rel_diff = 0.0, 0.0
        for g, r in zip(got, ref):
            if g.shape != r.shape:
                raise LiftswapError(f"onnxruntime output shape {g.shape} differs from PyTorch's {r.shape} at input {[tuple(t.shape) for t in inputs]}")
            d = float(np.abs(g - r).max()) if r.size else 0.0
            abs_diff = max(abs_diff, d)
            rel_diff = max(rel_diff, d / max(float(np.abs(r).max()), 1e-12) if r.size else 0.0)
        checks.append({"shapes": [list(t.shape) for t in inputs], "max_abs_diff": abs_diff, "max_rel_diff": rel_diff})
    return checks, session.get_providers()


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    example_inputs: Any = None,
    dynamic_batch: bool = True,
    dynamic_spatial: bool = True,
    check: bool = True,
    opset: int | None = None,
    providers: Sequence[str] | None = None,
    rtol: float | None = None,
    dtype: str | torch.dtype = "float32",
) -> ExportReport:
    """Export ``model`` (eval mode) to ONNX with ``torch.onnx.export(dynamo=True)``.

    With ``check``, onnxruntime runs the file at the export shape, another batch size and another
    (odd) spatial size; a relative difference to PyTorch above ``rtol`` is an error and no file
    is left behind. Models over 2 GB are written with external data beside the file.

    Args:
        model: the (converted) model; not wrapped in DDP / torch.compile.
        path: the ``.onnx`` file to write.
        example_inputs: tensor or tuple; default the converted model's plan input shapes.
        dynamic_batch / dynamic_spatial: make the batch / spatial axes dynamic.
        check: run the onnxruntime parity check.
        opset: ONNX opset (default: the exporter's).
        providers: onnxruntime execution providers for the check (default: CUDA when onnxruntime
            has it, then CPU).
        rtol: largest relative difference (to the largest output magnitude) accepted; default
            1e-4 for float32 and 1e-2 for float16 (its 11-bit mantissa, through the whole network).
        dtype: ``"float32"`` or ``"float16"`` (for GPU serving): the file's inputs, weights,
            computation and outputs; the check compares it with the float32 model.
    """
    refuse_wrapped(model, "export_onnx")
    check_opset(opset)
    dtype = _DTYPES.get(dtype, dtype)
    if dtype not in (torch.float32, torch.float16):
        raise LiftswapError(f"dtype must be float32 or float16, got {short_repr(dtype)}")
    if rtol is None:
        rtol = 1e-4 if dtype == torch.float32 else 1e-2
    if not hasattr(torch.export.Dim, "DYNAMIC"):  # torch < 2.6: an exporter without automatic dynamic sizes
        raise LiftswapError(
            f"ONNX export needs torch >= 2.6 (torch.export with Dim.DYNAMIC); this is torch {torch.__version__}: upgrade torch to export"
        )
    if example_inputs is None and getattr(model, "liftswap_plan", None) is not None:
        gen = torch.Generator().manual_seed(0)
        example_inputs = tuple(torch.randn(tuple(s), generator=gen) for s in model.liftswap_plan.input_shapes)
    inputs = example_inputs_for(model, example_inputs)
    p = next(model.parameters(), None)
    if p is not None:
        inputs = tuple(t.to(p.device) for t in inputs)
    path = check_output(path)
    external = sum(t.numel() * t.element_size() for t in model.state_dict().values()) > _TWO_GB
    was_training = model.training
    model.eval()
    exported = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    export_inputs = tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs)
    # Export into a private folder with the final name (external data refers to it by name),
    # then move the result into place: a failure leaves nothing at `path`.
    work = private_temp(path, folder=True)
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dynamic_shapes = _dynamic_shapes(inputs, dynamic_batch, dynamic_spatial)
            try:  # the exporter prints progress lines: keep them out of the caller's output
                with contextlib.redirect_stdout(io.StringIO()), onnx_export_mode():
                    # torch.export first, with guards (the ONNX exporter's own capture defers them to
                    # runtime asserts, which made converted models' exports several times slower)
                    try:
                        program = torch.export.export(exported, export_inputs, dynamic_shapes=dynamic_shapes, strict=False)
                        shapes = None
                    except Exception:  # noqa: BLE001 - e.g. sympy cannot decide a guard: the exporter's capture
                        program, shapes = exported, dynamic_shapes
                    torch.onnx.export(
                        program,
                        export_inputs,
                        str(work / path.name),
                        dynamo=True,
                        dynamic_shapes=shapes,
                        opset_version=opset,
                        external_data=external,
                        verbose=False,
                        custom_translation_table=onnx_translations(),
                    )
            except Exception as e:  # noqa: BLE001 - report the exporter's reason on one line
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
                raise LiftswapError(f"ONNX export failed: {type(e).__name__}: {first}") from e
        report = ExportReport(str(path), opset, list(providers or []), external_data=external)
        report.export_seconds = time.perf_counter() - t0
        import onnx

        onnx.checker.check_model(str(work / path.name))
        if opset is not None:
            written = _written_opset(str(work / path.name))
            if written != opset:
                raise LiftswapError(f"the exporter wrote opset {written}, not the {opset} asked for; nothing written")
        fixed = _fixed_axes(str(work / path.name), dynamic_shapes)
        if fixed:  # older exporters specialise some models' sizes silently (torch 2.8: ceil_mode pools)
            raise LiftswapError(
                f"the exporter fixed axes asked to be dynamic ({', '.join(fixed)}) with torch {torch.__version__}; "
                "export with dynamic_batch=False / dynamic_spatial=False (on the command line: --static) "
                "for a fixed-size model, or use a newer torch; nothing written"
            )
        if check:
            report.checks, report.providers = check_onnx(
                model, str(work / path.name), _other_inputs(inputs, dynamic_batch, dynamic_spatial), providers, dtype
            )
            worst = max(report.checks, key=lambda c: c["max_rel_diff"])
            if worst["max_rel_diff"] > rtol:
                raise LiftswapError(
                    f"onnxruntime differs from PyTorch by {worst['max_rel_diff']:.2e} (relative) at input shapes "
                    f"{worst['shapes']}, above {rtol:g}; nothing written"
                )
        for f in work.iterdir():
            os.replace(f, path.parent / f.name)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
        model.train(was_training)
