"""Model sources: build an unconverted model from a name, and load a checkpoint into it.

A source is ``timm:NAME`` (or a bare timm name), ``torchvision:NAME``, or
``module.path:factory`` (a callable returning an ``nn.Module``, with keyword arguments).
Models are built with random weights unless ``pretrained`` is asked for; no network access is
needed otherwise.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import torch
from torch import nn

from ..errors import LiftswapError
from ..surgery.plan import declared_input_size
from .safe_load import safe_torch_load

__all__ = ["build_model", "parse_source", "load_checkpoint", "source_of", "default_input_size", "state_dict_mismatch"]


def parse_source(spec: str) -> dict:
    """``{"kind": "timm"|"torchvision"|"factory", "name": ...}`` for a model spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise LiftswapError(f"model must be a name such as 'resnet50' or 'torchvision:resnet50', got {spec!r}")
    spec = spec.strip()
    if spec.startswith("timm:"):
        return {"kind": "timm", "name": spec[5:]}
    if spec.startswith("torchvision:"):
        return {"kind": "torchvision", "name": spec[12:]}
    if ":" in spec:
        return {"kind": "factory", "name": spec}
    return {"kind": "timm", "name": spec}


def build_model(source: str | dict, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build the unconverted model of ``source``; the source is recorded on it for :func:`liftswap.save`.

    Example:
        >>> m = build_model("torch.nn:Conv2d", in_channels=3, out_channels=8, kernel_size=3)
        >>> m.liftswap_source
        {'kind': 'factory', 'name': 'torch.nn:Conv2d', 'kwargs': {'in_channels': 3, 'out_channels': 8, 'kernel_size': 3}}
    """
    src = dict(parse_source(source)) if isinstance(source, str) else dict(source)
    kwargs = {**src.get("kwargs", {}), **kwargs}
    kind, name = src["kind"], src["name"]
    if kind == "timm":
        try:
            import timm
        except ImportError:
            raise LiftswapError(f"model {name!r} is a timm model but timm is not installed (pip install timm)") from None
        if not timm.is_model(name):
            raise LiftswapError(f"unknown model {name!r}: not a timm architecture (timm.list_models() lists them; torchvision models need 'torchvision:NAME')")
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    elif kind == "torchvision":
        try:
            import torchvision
        except ImportError:
            raise LiftswapError(f"model {name!r} needs torchvision, which is not installed") from None
        if name not in torchvision.models.list_models():
            raise LiftswapError(f"unknown model 'torchvision:{name}' (torchvision.models.list_models() lists them)")
        weights = "DEFAULT" if pretrained else None
        model = torchvision.models.get_model(name, weights=weights, **kwargs)
    elif kind == "factory":
        module_name, _, attr = name.partition(":")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # as `python -m` would: the user's project folder
        try:
            module = importlib.import_module(module_name)
            factory = getattr(module, attr)
        except (ImportError, AttributeError) as e:
            raise LiftswapError(f"cannot import model factory {name!r}: {e}") from None
        model = factory(**kwargs)
        if not isinstance(model, nn.Module):
            raise LiftswapError(f"model factory {name!r} returned {type(model).__name__}, not an nn.Module")
    else:
        raise LiftswapError(f"unknown model source kind {kind!r}")
    model.liftswap_source = {"kind": kind, "name": name, "kwargs": kwargs}
    return model


def source_of(model: nn.Module) -> dict | None:
    """How to rebuild ``model``: recorded by :func:`build_model`, or read off a timm model."""
    src = getattr(model, "liftswap_source", None)
    if src is not None:
        return src
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture") and type(model).__module__.startswith("timm."):
        kwargs = {}
        if getattr(model, "num_classes", None) is not None:
            kwargs["num_classes"] = model.num_classes
        return {"kind": "timm", "name": cfg["architecture"], "kwargs": kwargs}
    return None


def default_input_size(model: nn.Module) -> tuple[int, int, int] | None:
    """(C, H, W) the model declares (see ``declared_input_size``), or torchvision's weights' crop size."""
    size = declared_input_size(model)
    if size:
        return size
    src = getattr(model, "liftswap_source", None) or {}
    if src.get("kind") == "torchvision":
        import torchvision

        try:
            weights = list(torchvision.models.get_model_weights(src["name"]))
            crop = weights[0].transforms().crop_size
            return (3, crop[0], crop[-1])
        except Exception:  # noqa: BLE001 - no weights enum for this model: no declared size
            return None
    return None


def _state_dict_from(obj: Any, path: str) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LiftswapError(f"checkpoint {path} holds no state_dict (a mapping of names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):  # saved from a DDP wrapper
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``.pth``/``.pt``/``.safetensors`` weights strictly into the unconverted ``model``.

    Accepts plain state_dicts and timm-style files with a ``state_dict`` (or ``model``) key.
    """
    path = str(path)
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise LiftswapError(f"checkpoint not found: {path}")
        from safetensors.torch import load_file

        try:
            obj = load_file(path)
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
            raise LiftswapError(f"cannot read checkpoint {path}: not a safetensors file, or corrupt ({type(e).__name__})") from None
    else:
        obj = safe_torch_load(path, "checkpoint")
    state = _state_dict_from(obj, path)
    result = state_dict_mismatch(model, state)
    if result:
        raise LiftswapError(f"checkpoint {path} does not fit {type(model).__name__}: {result}")
    model.load_state_dict(state, strict=True)


def state_dict_mismatch(model: nn.Module, state: dict) -> str:
    """How ``state`` fails to fit ``model`` strictly (counts and an example of each), or ""."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
    if parts and (len(missing) + len(unexpected)) > len(own) // 2:
        parts.append("it looks like a checkpoint of another architecture")
    return "; ".join(parts)
