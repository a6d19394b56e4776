"""One-file save and load of converted models (SPEC 7).

The file is a ``torch.save`` of plain data: format name and version, the model's source, the
resolved recipe, the plan and the ``state_dict``. Loading rebuilds the unconverted model from
its source (or takes it from the caller), re-applies the recipe and loads the weights strictly.
It reads with ``torch.load(weights_only=True)``, so a file that carries code is refused
without running it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
import torch
from torch import nn

from ..errors import LiftswapError
from ..surgery import patch
from ..surgery.plan import refuse_wrapped
from .safe_load import safe_torch_load
from .sources import build_model, source_of, state_dict_mismatch

__all__ = ["save", "load", "read_file", "atomic_write", "FORMAT", "FORMAT_VERSION"]

FORMAT = "liftswap"
FORMAT_VERSION = 1


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)``, then rename over ``path``: a failure leaves no partial file."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise LiftswapError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Write a converted model to one file, atomically.

    Example:
        >>> import liftswap, torch
        >>> net = liftswap.io.build_model("torch.nn:MaxPool2d", kernel_size=2)
        >>> lifted = liftswap.patch(net, example_inputs=torch.randn(1, 3, 8, 8))
        >>> import tempfile, os; d = tempfile.mkdtemp()
        >>> liftswap.save(lifted, os.path.join(d, "m.pt"))
        >>> type(liftswap.load(os.path.join(d, "m.pt"))).__name__
        'LiftPoolReplacement'
    """
    refuse_wrapped(model, "save")
    the_plan = getattr(model, "liftswap_plan", None)
    if the_plan is None:
        raise LiftswapError("save() takes a model converted by liftswap.patch (it has no liftswap_plan)")
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "liftswap_version": _version(),
        "source": source_of(model),
        "recipe": the_plan.recipe.to_dict(),
        "plan": the_plan.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _version() -> str:
    from .. import __version__

    return __version__


def read_file(path: str | os.PathLike) -> dict:
    """The checked contents of a liftswap file (no model is built)."""
    path = str(path)
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LiftswapError(f"{path} is not a liftswap file (no 'format: {FORMAT}' header); was it written by liftswap.save?")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise LiftswapError(f"{path} has format version {version!r}; this liftswap reads version {FORMAT_VERSION} (upgrade liftswap)")
    for key in ("recipe", "plan", "state_dict"):
        if key not in payload:
            raise LiftswapError(f"{path} is incomplete: no {key!r}")
    return payload


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a converted model from ``path``.

    Args:
        path: a file written by :func:`save`.
        model: the unconverted model, for models that are not built from a recorded source
            (your own classes); it is converted in place.
    """
    payload = read_file(path)
    if model is None:
        source = payload.get("source")
        if source is None:
            raise LiftswapError(f"{path} records no model source; pass the unconverted model: liftswap.load(path, model=MyNet())")
        model = build_model(source)
    else:
        refuse_wrapped(model, "load")
    stored = payload["plan"]
    gen = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(tuple(s), generator=gen) for s in stored["input_shapes"])
    converted = patch(model, recipe=payload["recipe"], example_inputs=inputs, inplace=True)
    want = [(s["name"], s["action"]) for s in stored["sites"]]
    got = [(s.name, s.action) for s in converted.liftswap_plan.sites]
    if want != got:
        diff = next((f"{w} vs {g}" for w, g in zip(want, got) if w != g), f"{len(want)} vs {len(got)} sites")
        raise LiftswapError(f"{path} was converted from another model: its plan does not match this model's ({diff})")
    state = payload["state_dict"]
    problem = state_dict_mismatch(converted, state)
    if problem:
        raise LiftswapError(f"weights in {path} do not fit the model: {problem}")
    converted.load_state_dict(state, strict=True)
    return converted

