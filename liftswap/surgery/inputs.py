"""Example inputs for planning: one rule, used by :func:`liftswap.plan` and the command line alike.

The size is the model's own where it declares one (timm's ``pretrained_cfg["input_size"]``, an
``input_size`` attribute), else the crop size of a torchvision model's weights, else 224x224 for
an image model (one whose first convolution is a ``Conv2d``), with its input channels; batch 2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["declared_input_size", "default_input_size", "example_inputs_for"]


def declared_input_size(model: nn.Module) -> tuple | None:
    """(C, H, W) the model declares: timm's ``pretrained_cfg``/``default_cfg``, or an ``input_size`` attribute."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = (cfg.get("input_size") if isinstance(cfg, dict) else None) or getattr(model, "input_size", None)
    return tuple(size) if size else None


def _torchvision_crop(model: nn.Module) -> tuple | None:
    src = getattr(model, "liftswap_source", None) or {}
    if src.get("kind") != "torchvision":
        return None
    import torchvision

    try:
        weights = list(torchvision.models.get_model_weights(src["name"]))
        crop = weights[0].transforms().crop_size
        return (3, crop[0], crop[-1])
    except Exception:  # noqa: BLE001 - no weights enum for this model: no declared size
        return None


def default_input_size(model: nn.Module) -> tuple | None:
    """(C, H, W) to plan ``model`` with when the caller gives none, or None where there is no rule.

    Example:
        >>> default_input_size(nn.Sequential(nn.Conv2d(1, 8, 3), nn.MaxPool2d(2)))
        (1, 224, 224)
    """
    size = declared_input_size(model) or _torchvision_crop(model)
    if size:
        return size
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    if isinstance(first, nn.Conv2d):
        return (first.in_channels, 224, 224)
    return None


def example_inputs_for(model: nn.Module, example_inputs: Any = None, batch: int = 2) -> tuple:
    """The example inputs as a tuple; by default random, of :func:`default_input_size` with ``batch``."""
    if example_inputs is None:
        size = default_input_size(model)
        if size is None:
            raise ValueError(
                f"example_inputs is needed: {type(model).__name__} declares no input size and is not a 2-D image "
                "model (pass a tensor such as torch.randn(2, 3, 224, 224))"
            )
        p = next(model.parameters(), None)
        gen = torch.Generator().manual_seed(0)
        return (torch.randn((batch,) + tuple(size), generator=gen).to(p.device if p is not None else "cpu"),)
    if isinstance(example_inputs, Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)) and all(isinstance(t, Tensor) for t in example_inputs):
        return tuple(example_inputs)
    raise ValueError(f"example_inputs must be a tensor or a tuple of tensors, got {type(example_inputs).__name__}")
