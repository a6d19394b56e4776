"""The ``liftswap`` command line: convert, inspect, export (SPEC 8).

Bad input ends with one line ``error: ...`` on stderr, exit status 2, and no output file.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="liftswap",
    help="Convert the pooling layers of PyTorch models to LiftPool, inspect the plan, export to ONNX.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console() if sys.stdout.isatty() else Console(width=140)  # pipes and logs get whole rows

InputSize = Optional[Tuple[int, int, int]]
_TRUST_HELP = "let a file saved from module.path:factory import and call that factory (only for files you trust)"


def _startup_seconds() -> float | None:
    """Seconds since this process started (Python start-up and imports), on Linux."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(open("/proc/uptime").read().split()[0])
        return max(uptime - start, 0.0)
    except (OSError, ValueError, IndexError):
        return None


def _fail(message: str, code: int = 2):
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _Steps:
    """Times named steps and shows a spinner for each on a terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        if self.quiet or not err.is_terminal:
            result = fn(*args, **kwargs)
        else:
            with err.status(f"{name}..."):
                result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        return result


def _guard(fn):
    """Turn liftswap's errors into one line and exit status 2; nothing else leaks a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import LiftswapError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except LiftswapError as e:
            _fail(str(e))
        except OSError as e:  # a missing, unreadable or read-only path (EROFS, ENOSPC, ...)
            _fail(f"{e.strerror or type(e).__name__}: {e.filename}" if e.filename else f"{type(e).__name__}: {e}")
        except RecursionError:
            _fail("input nested too deeply to read")
        except MemoryError:
            _fail("out of memory; try a smaller --input-size or batch")
        except Exception as e:  # noqa: BLE001
            if os.environ.get("LIFTSWAP_DEBUG"):
                raise
            _fail(f"unexpected {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} "
                  "(set LIFTSWAP_DEBUG=1 for the traceback)", code=1)

    return wrapper


def _example(model, input_size: InputSize, batch: int = 2):
    import torch

    from .surgery.inputs import default_input_size

    from .limits import MAX_INPUT_ELEMENTS

    size = tuple(input_size) if input_size else default_input_size(model)
    if size is None:
        _fail(f"{type(model).__name__} declares no input size and is not a 2-D image model; give --input-size C H W")
    if any(v < 1 for v in size):
        _fail(f"--input-size must be positive, got {' '.join(map(str, size))}")
    if math.prod(size) > MAX_INPUT_ELEMENTS:
        _fail(f"--input-size {' '.join(map(str, size))} is {math.prod(size)} values per sample, over {MAX_INPUT_ELEMENTS}; give a smaller size")
    return torch.randn((batch,) + tuple(size), generator=torch.Generator().manual_seed(0))


def _is_file_arg(arg: str) -> bool:
    return arg.endswith((".pt", ".pth")) or os.path.isfile(arg)


def _check_out(path: Path, suffixes: tuple[str, ...], inputs=()) -> None:
    """Refuse, before any work, an output that is a folder, a device, in a missing folder, or an input."""
    from .io.files import check_output

    if path.is_dir():
        _fail(f"--out {path} is a folder; give a file name such as {path / ('model' + suffixes[0])}")
    check_output(path, [i for i in inputs if i is not None and os.path.exists(i)])


_TARGETS_HELP = "what to convert: pools, convs or pools,convs (default: the recipe's targets, pools)"


def _with_targets(recipe_obj, targets: Optional[str]):
    """The recipe with ``--targets`` (comma-separated) in place of its own targets."""
    if targets is None:
        return recipe_obj
    from .recipe import load_recipe

    names = [t.strip() for t in targets.split(",") if t.strip()]
    bad = [t for t in names if t not in ("pools", "convs")]
    if bad or not names:
        _fail(f"--targets takes pools, convs or pools,convs, got {targets!r}")
    return load_recipe({**recipe_obj.to_dict(), "targets": list(dict.fromkeys(names))})


def _plan_summary(p) -> dict:
    return {
        "sites": len(p.sites),
        "replaced": len(p.replaced),
        "skipped": len(p.skipped),
        "skip_reasons": p.skip_reasons(),
        "preserves_function": p.preserves_function,
    }


@app.command()
@_guard
def convert(
    model: str = typer.Argument(..., help="timm name (resnet50), timm:NAME, torchvision:NAME or module.path:factory"),
    out_path: Path = typer.Option(..., "--out", help="the converted model file to write (.pt)"),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="recipe YAML file, or a shipped name (paper, resnet50, ...)"),
    targets: Optional[str] = typer.Option(None, "--targets", help=_TARGETS_HELP),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=".pth/.pt/.safetensors weights for the unconverted model"),
    input_size: InputSize = typer.Option(None, "--input-size", help="C H W of the example input (default: the model's own)"),
    pretrained: bool = typer.Option(False, "--pretrained", help="build with the library's pretrained weights (may download)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary instead of tables"),
):
    """Convert MODEL's pooling layers to LiftPool and save the result."""
    startup = _startup_seconds()
    import liftswap
    from liftswap.io.sources import build_model, load_checkpoint
    from liftswap.surgery.apply import apply

    _check_out(out_path, (".pt",), [checkpoint, recipe])
    steps = _Steps(as_json)
    recipe_obj = _with_targets(steps("reading recipe", liftswap.load_recipe, recipe), targets)
    net = steps("building model", build_model, model, pretrained=pretrained)
    if checkpoint is not None:
        steps("loading checkpoint", load_checkpoint, net, checkpoint)
    x = _example(net, input_size)
    net.eval()
    the_plan = steps("planning", liftswap.plan, net, recipe_obj, x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = steps("surgery", apply, net, the_plan, True)
    steps("saving", liftswap.save, converted, out_path)
    summary = {
        "model": model,
        "out": str(out_path),
        "bytes": out_path.stat().st_size,
        **_plan_summary(the_plan),
        "seconds": {"startup_and_import": round(startup, 3) if startup is not None else None, **steps.seconds},
    }
    if as_json:
        print(json.dumps(summary))
        return
    out.print(the_plan.table())
    t = Table(show_header=False, box=None)
    t.add_row("wrote", f"{out_path} ({summary['bytes'] / 2**20:.1f} MiB)")
    t.add_row("function at init", "preserved" if summary["preserves_function"] else "changed (train or fine-tune)")
    t.add_row("seconds", ", ".join(f"{k} {v}" for k, v in summary["seconds"].items() if v is not None))
    out.print(t)
    if not the_plan.replaced:
        err.print("warning: nothing was replaced; the file holds the unchanged model")


def _emit_recipe(p, path: Path, inputs) -> None:
    from .io.files import atomic_write

    lines = [p.recipe.to_yaml().rstrip(), "# Sites found (copy a rule into `rules:` above and edit it):"]
    for s in p.sites:
        lines.append(f"#  - match: {s.name!r:<36} # {s.op}, {s.action}{': ' + s.reason if s.action == 'skip' else ''}")
        if s.action == "replace":
            lines.append("#    layer: {kernel_size: 5}   # or: action: skip")
    text = "\n".join(lines) + "\n"

    def write(tmp):
        Path(tmp).write_text(text)

    atomic_write(path, write, inputs)


@app.command()
@_guard
def inspect(
    target: str = typer.Argument(..., help="a model (as for convert) or a converted model file"),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="recipe to plan with (models only)"),
    targets: Optional[str] = typer.Option(None, "--targets", help=_TARGETS_HELP + " (models only)"),
    emit_recipe: Optional[Path] = typer.Option(None, "--emit-recipe", help="write a recipe skeleton listing every site"),
    input_size: InputSize = typer.Option(None, "--input-size", help="C H W of the example input"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
):
    """Show the plan: every pooling site (and downsampling convolution) and what liftswap does with it."""
    import liftswap
    from liftswap.io.save import read_file
    from liftswap.io.sources import build_model

    if emit_recipe is not None:
        _check_out(emit_recipe, (".yaml",), [target, recipe])
    steps = _Steps(as_json)
    if _is_file_arg(target):
        if recipe is not None or targets is not None:
            _fail("--recipe and --targets apply to models, not to converted files (their recipe is stored in them)")
        the_plan = steps("reading", read_file, target)["plan"]
    else:
        recipe_obj = _with_targets(liftswap.load_recipe(recipe), targets)
        net = steps("building model", build_model, target)
        the_plan = steps("planning", liftswap.plan, net.eval(), recipe_obj, _example(net, input_size))
    if emit_recipe is not None:
        _emit_recipe(the_plan, emit_recipe, [target, recipe])
    if as_json:
        print(the_plan.to_json())
        return
    out.print(the_plan.table())
    for n in the_plan.notes:
        out.print(f"note: {n}")
    if emit_recipe is not None:
        out.print(f"wrote recipe skeleton {emit_recipe}")


@app.command()
@_guard
def export(
    model_file: str = typer.Argument(..., help="a converted model file written by liftswap convert / liftswap.save"),
    out_path: Path = typer.Option(..., "--out", help="the ONNX file to write"),
    input_size: InputSize = typer.Option(None, "--input-size", help="C H W of the export input (default: the conversion's)"),
    batch: int = typer.Option(2, "--batch", help="batch size of the export input"),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset version"),
    no_check: bool = typer.Option(False, "--no-check", help="skip the onnxruntime parity check"),
    provider: Optional[List[str]] = typer.Option(None, "--provider", help="onnxruntime execution provider for the check (repeatable)"),
    static: bool = typer.Option(False, "--static", help="fixed batch and spatial size"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, or float16 for GPU serving (checked against float32 to 1e-2)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=_TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
):
    """Export a converted model to ONNX and check it with onnxruntime."""
    import liftswap

    from liftswap.io.export import check_opset

    _check_out(out_path, (".onnx",), [model_file])
    check_opset(opset)
    if not 1 <= batch <= 1024:
        _fail(f"--batch must be from 1 to 1024, got {batch}")
    if dtype not in ("float32", "float16"):
        _fail(f"--dtype must be float32 or float16, got {dtype[:40]!r}")
    steps = _Steps(as_json)
    net = steps("loading", liftswap.load, model_file, trust_remote_code=trust_remote_code)
    example = None
    if input_size is not None or batch != 2:
        size = tuple(input_size) if input_size else tuple(net.liftswap_plan.input_shapes[0][1:])
        example = _example(net, size, batch)
    report = steps(
        "exporting",
        liftswap.export_onnx,
        net,
        out_path,
        example,
        dynamic_batch=not static,
        dynamic_spatial=not static,
        check=not no_check,
        opset=opset,
        providers=provider,
        dtype=dtype,
    )
    if as_json:
        print(json.dumps({**report.to_dict(), "seconds": steps.seconds}))
        return
    t = Table(title=f"wrote {out_path}")
    for col in ("input shapes", "max |onnxruntime - torch|", "relative"):
        t.add_column(col)
    for c in report.checks:
        t.add_row(" ".join("x".join(map(str, s)) for s in c["shapes"]), f"{c['max_abs_diff']:.2e}", f"{c['max_rel_diff']:.2e}")
    out.print(t if report.checks else f"wrote {out_path} (not checked)")
    checked = f"checked on {', '.join(report.providers)}; " if report.checks else ""
    out.print(f"{checked}export {report.export_seconds:.1f}s")


@app.command()
@_guard
def bands(
    image: Path = typer.Argument(..., help="an image file (PNG, JPEG, ...)"),
    out_path: Path = typer.Option(..., "--out", help="the PNG to write: [[LL, LH], [HL, HH]]"),
    model_file: Optional[str] = typer.Option(None, "--model", help="a converted model file: draw a layer's input bands"),
    layer: Optional[str] = typer.Option(None, "--layer", help="the replaced site whose input to draw (with --model)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=_TRUST_HELP),
):
    """Draw the LL/LH/HL/HH sub-bands of an image, or of a converted model's layer input."""
    import liftswap
    from liftswap.io.bands import band_grid, layer_input, read_image, write_png

    _check_out(out_path, (".png",), [image, model_file])
    x = read_image(image)
    down = None
    if model_file is not None:
        net = liftswap.load(model_file, trust_remote_code=trust_remote_code)
        x, down = layer_input(net.eval(), layer, x)
    write_png(band_grid(x, down), out_path)
    out.print(f"wrote {out_path}")


def main() -> None:
    """Run the command line; usage errors too end in one ``error:`` line and exit status 2."""
    try:
        from typer._click import exceptions as click  # typer >= 0.20 vendors click
    except ImportError:
        from click import exceptions as click

    try:
        code = app(standalone_mode=False)
    except click.NoArgsIsHelpError as e:  # `liftswap` alone, or a command without arguments
        print(e.ctx.get_help() if e.ctx else "usage: liftswap COMMAND --help")
        code = 2
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx else "liftswap"
        message = " ".join(e.format_message().split())
        print(f"error: {message} (see {command} --help)", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    sys.exit(main())
