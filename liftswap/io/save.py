"""One-file save and load of converted models (SPEC 7).

The file is a ``torch.save`` of plain data: format name and version, the model's source, the
resolved recipe, the plan and the ``state_dict``. Loading rebuilds the unconverted model from
its source (or takes it from the caller), re-applies the recipe and loads the weights strictly.
It reads with ``torch.load(weights_only=True)``, so a file that carries code is refused
without running it.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import LiftswapError, short_repr
from ..recipe import load_recipe
from ..surgery.apply import apply
from ..surgery.plan import Plan, refuse_wrapped
from .files import atomic_write
from .safe_load import safe_torch_load
from .sources import rebuild, source_of, state_dict_mismatch

__all__ = ["save", "load", "read_file", "FORMAT", "FORMAT_VERSION"]

FORMAT = "liftswap"
FORMAT_VERSION = 1


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Write a converted model to one file, atomically.

    Example:
        >>> import liftswap, torch
        >>> net = liftswap.io.build_model("torch.nn:MaxPool2d", kernel_size=2)
        >>> lifted = liftswap.patch(net, example_inputs=torch.randn(1, 3, 8, 8))
        >>> import tempfile, os; d = tempfile.mkdtemp()
        >>> liftswap.save(lifted, os.path.join(d, "m.pt"))
        >>> type(liftswap.load(os.path.join(d, "m.pt"), model=torch.nn.MaxPool2d(2))).__name__
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
    """The checked contents of a liftswap file (no model is built); ``payload["plan"]`` is a :class:`Plan`."""
    path = str(path)
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LiftswapError(f"{path} is not a liftswap file (no 'format: {FORMAT}' header); was it written by liftswap.save?")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise LiftswapError(f"{path} has format version {short_repr(version)}; this liftswap reads version {FORMAT_VERSION} (upgrade liftswap)")
    for key in ("recipe", "plan", "state_dict"):
        if key not in payload:
            raise LiftswapError(f"{path} is incomplete: no {key!r}")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise LiftswapError(f"{path} is damaged: its state_dict is not a mapping of names to tensors")
    try:
        payload["plan"] = Plan.from_dict(payload["plan"])
        payload["recipe"] = load_recipe(payload["recipe"])
    except LiftswapError as e:
        raise LiftswapError(f"{path} is damaged: {e}") from None
    return payload


def load(path: str | os.PathLike, model: nn.Module | None = None, trust_remote_code: bool = False) -> nn.Module:
    """Rebuild a converted model from ``path``.

    A file is data: loading imports and calls nothing the file alone names. timm and torchvision
    models are rebuilt through their registries; a model saved from ``module.path:factory``
    needs the unconverted model from you (``model=``), or ``trust_remote_code=True`` to let the
    file's factory be imported and called.

    Args:
        path: a file written by :func:`save`.
        model: the unconverted model, for models that are not built from a recorded source
            (your own classes); it is converted in place.
        trust_remote_code: import and call the ``module.path:factory`` the file records.
    """
    payload = read_file(path)
    rebuilt = model is None
    if model is None:
        source = payload.get("source")
        if source is None:
            raise LiftswapError(f"{path} records no model source; pass the unconverted model: liftswap.load(path, model=MyNet())")
        model = rebuild(source, trust_remote_code, where=str(path))
    else:
        refuse_wrapped(model, "load")
    stored = payload["plan"]
    # The stored plan is applied as it stands (no discovery run): apply checks that its module
    # sites are this model's modules, and the weights (loaded strictly below) must fit.
    try:
        converted = apply(model, stored, inplace=True)
    except LiftswapError as e:
        if not rebuilt:
            raise LiftswapError(f"{path} was converted from another model: {e}") from None
        raise LiftswapError(
            f"{path}: the model rebuilt from its record ({short_repr(payload['source'], 200)}) is not the saved one "
            f"({e}); pass the model as you built it: liftswap.load(path, model=...)"
        ) from None
    state = payload["state_dict"]
    problem = state_dict_mismatch(converted, state)
    if problem:
        raise LiftswapError(f"weights in {path} do not fit the model: {problem}")
    converted.load_state_dict(state, strict=True)
    return converted
