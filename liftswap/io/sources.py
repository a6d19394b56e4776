"""Model sources: build an unconverted model from a name, and load a checkpoint into it.

A source is ``timm:NAME`` (or a bare timm name), ``torchvision:NAME``, or
``module.path:factory`` (a callable returning an ``nn.Module``, with keyword arguments).
Models are built with random weights unless ``pretrained`` is asked for; no network access is
needed otherwise.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

import torch
from torch import nn

from ..errors import LiftswapError, short_repr
from ..limits import check_data_size
from .safe_load import safe_torch_load

__all__ = ["build_model", "rebuild", "parse_source", "load_checkpoint", "source_of", "state_dict_mismatch"]


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keyword arguments that make a builder read files or download: never taken from a file's record.
_LOADING_KWARGS = frozenset(
    {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir", "weights",
     "weights_backbone", "progress", "model_dir", "file", "url", "hf_hub_id"}
)  # fmt: skip
_MAX_NAME = 200


def parse_source(spec: str) -> dict:
    """``{"kind": "timm"|"torchvision"|"factory", "name": ...}`` for a model spec.

    Example:
        >>> parse_source("torchvision:resnet18")
        {'kind': 'torchvision', 'name': 'resnet18'}
        >>> parse_source(":tiny")
        Traceback (most recent call last):
        ...
        liftswap.errors.LiftswapError: model ':tiny' is not a model name: use a timm name (resnet50), timm:NAME, torchvision:NAME or module.path:factory
    """
    if not isinstance(spec, str) or not spec.strip():
        raise LiftswapError(f"model must be a name such as 'resnet50' or 'torchvision:resnet50', got {short_repr(spec)}")
    spec = spec.strip()
    if spec.startswith("timm:"):
        kind, name = "timm", spec[5:]
    elif spec.startswith("torchvision:"):
        kind, name = "torchvision", spec[12:]
    elif ":" in spec:
        kind, name = "factory", spec
    else:
        kind, name = "timm", spec
    if not _valid_name(kind, name):
        raise LiftswapError(
            f"model {short_repr(spec)} is not a model name: use a timm name (resnet50), timm:NAME, torchvision:NAME or module.path:factory"
        )
    return {"kind": kind, "name": name}


def _valid_name(kind: str, name: str) -> bool:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        return False
    if kind == "factory":
        module, sep, attr = name.partition(":")
        parts = module.split(".") + attr.split(".")
        return bool(sep) and all(_IDENT.fullmatch(p) for p in parts)
    return re.fullmatch(r"[A-Za-z0-9_.\-]+", name) is not None


def build_model(source: str | dict, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build the unconverted model of ``source``; the source is recorded on it for :func:`liftswap.save`.

    ``source`` is chosen by the caller, who consents to what it names being imported and called
    (a ``module.path:factory``). A source read from a file goes through :func:`rebuild`.

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
        model = _call(f"timm:{name}", timm.create_model, name, pretrained=pretrained, **kwargs)
    elif kind == "torchvision":
        try:
            import torchvision
        except ImportError:
            raise LiftswapError(f"model {name!r} needs torchvision, which is not installed") from None
        if name not in torchvision.models.list_models():
            raise LiftswapError(f"unknown model 'torchvision:{name}' (torchvision.models.list_models() lists them)")
        weights = "DEFAULT" if pretrained else None
        model = _call(f"torchvision:{name}", torchvision.models.get_model, name, weights=weights, **kwargs)
    elif kind == "factory":
        if not _valid_name(kind, name):
            raise LiftswapError(f"model factory {short_repr(name)} is not of the form module.path:factory")
        module_name, _, attr = name.partition(":")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # as `python -m` would: the user's project folder
        try:
            factory = importlib.import_module(module_name)
            for part in attr.split("."):
                factory = getattr(factory, part)
        except (ImportError, AttributeError) as e:
            raise LiftswapError(f"cannot import model factory {name!r}: {_first_line(e)}") from None
        except Exception as e:  # noqa: BLE001 - the module itself failed while importing
            raise LiftswapError(f"importing model factory {name!r} failed: {type(e).__name__}: {_first_line(e)}") from None
        model = _call(name, factory, **kwargs)
        if not isinstance(model, nn.Module):
            raise LiftswapError(f"model factory {name!r} returned {type(model).__name__}, not an nn.Module")
    else:
        raise LiftswapError(f"unknown model source kind {short_repr(kind)}")
    model.liftswap_source = {"kind": kind, "name": name, "kwargs": kwargs}
    return model


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def _call(name: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except LiftswapError:
        raise
    except Exception as e:  # noqa: BLE001 - a builder rejecting its arguments, or a factory's own bug
        raise LiftswapError(f"building {name} failed: {type(e).__name__}: {_first_line(e)}") from None


def rebuild(source: Any, trust_remote_code: bool = False, where: str = "the file") -> nn.Module:
    """Build the model a file's recorded ``source`` describes, treating the record as untrusted data.

    timm and torchvision names resolve through their registries, with plain keyword arguments
    only (nothing that loads files or downloads). A ``module.path:factory`` would be imported and
    called: that needs ``trust_remote_code=True`` (as in Hugging Face's loaders).

    Example:
        >>> rebuild({"kind": "factory", "name": "os:system", "kwargs": {"command": "echo hi"}})
        Traceback (most recent call last):
        ...
        liftswap.errors.LiftswapError: the file names the model factory 'os:system', which loading would import and call; pass the unconverted model (liftswap.load(path, model=...)), or if you trust the file, trust_remote_code=True (command line: --trust-remote-code)
    """
    check_data_size(source, f"the model source in {where}", max_nodes=10_000)
    if not isinstance(source, dict) or set(source) - {"kind", "name", "kwargs"}:
        raise LiftswapError(f"{where} has an unreadable model source; pass the unconverted model: liftswap.load(path, model=...)")
    kind, name, kwargs = source.get("kind"), source.get("name"), source.get("kwargs", {})
    if kind not in ("timm", "torchvision", "factory") or not _valid_name(kind, name):
        raise LiftswapError(f"{where} records an invalid model source {short_repr(source)}; pass the unconverted model: liftswap.load(path, model=...)")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) and _IDENT.fullmatch(k) and k[0] != "_" for k in kwargs):
        raise LiftswapError(f"{where} records invalid keyword arguments for {name!r}; pass the unconverted model: liftswap.load(path, model=...)")
    if kind == "factory" and not trust_remote_code:
        raise LiftswapError(
            f"{where} names the model factory {name!r}, which loading would import and call; pass the unconverted "
            "model (liftswap.load(path, model=...)), or if you trust the file, trust_remote_code=True (command line: --trust-remote-code)"
        )
    if kind != "factory":
        loading = sorted(set(kwargs) & _LOADING_KWARGS)
        if loading:
            raise LiftswapError(f"{where} asks to build {name!r} with {', '.join(loading)}, which would read files or download; refused")
        if not all(_plain(v) for v in kwargs.values()):
            raise LiftswapError(f"{where} records keyword arguments for {name!r} that are not plain values; pass the unconverted model: liftswap.load(path, model=...)")
    return build_model(source if kind != "factory" else {"kind": kind, "name": name, "kwargs": dict(kwargs)})


def _plain(value: Any, depth: int = 0) -> bool:
    """Numbers, strings, booleans, None, and short lists / tuples / string-keyed dicts of them."""
    if value is None or isinstance(value, (bool, int, float)):
        return not isinstance(value, int) or abs(value) < 2**63
    if isinstance(value, str):
        return len(value) <= _MAX_NAME
    if depth >= 4:
        return False
    if isinstance(value, (list, tuple)):
        return len(value) <= 64 and all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 64 and all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def source_of(model: nn.Module) -> dict | None:
    """How to rebuild ``model``: recorded by :func:`build_model`, or read off a timm model."""
    src = getattr(model, "liftswap_source", None)
    if src is not None:
        return src
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture") and type(model).__module__.startswith("timm."):
        return {"kind": "timm", "name": cfg["architecture"], "kwargs": _timm_build_kwargs(model, cfg)}
    return None


def _timm_build_kwargs(model: nn.Module, cfg: dict) -> dict:
    """The creation arguments a timm model shows (timm keeps no record of them): the class count,
    input channels, global pool and image size, each where the model's class takes it."""
    import inspect

    try:
        takes = set(inspect.signature(type(model).__init__).parameters)
    except (TypeError, ValueError):
        takes = set()
    kwargs: dict = {}
    if isinstance(getattr(model, "num_classes", None), int):
        kwargs["num_classes"] = model.num_classes
    first = cfg.get("first_conv")
    if "in_chans" in takes and isinstance(first, str):
        try:
            kwargs["in_chans"] = int(model.get_submodule(first).in_channels)
        except (AttributeError, TypeError):
            pass
    pool = getattr(model, "global_pool", None)
    pool = getattr(pool, "pool_type", pool)  # timm's SelectAdaptivePool2d, or a plain string
    if "global_pool" in takes and isinstance(pool, str):
        kwargs["global_pool"] = pool
    size = getattr(model, "img_size", None) or getattr(getattr(model, "patch_embed", None), "img_size", None)
    if "img_size" in takes and isinstance(size, (int, tuple, list)):
        size = list(size) if isinstance(size, (tuple, list)) else size
        kwargs["img_size"] = size[0] if isinstance(size, list) and len(set(size)) == 1 else size
    return kwargs


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
