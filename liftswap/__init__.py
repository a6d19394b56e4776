"""liftswap: learnable, invertible LiftPool layers and the model surgery that brings them to existing models."""

from .layers import (
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
    regularization_loss,
)
from .backends import backends
from .errors import LiftswapError
from .io import build_model, export_onnx, load, save
from .recipe import Recipe, RecipeError, load_recipe
from .surgery import Plan, apply, patch, plan

__version__ = "0.1.0"

__all__ = [
    "LiftDownPool1d",
    "LiftDownPool2d",
    "LiftDownPool3d",
    "LiftUpPool1d",
    "LiftUpPool2d",
    "LiftUpPool3d",
    "regularization_loss",
    "plan",
    "patch",
    "apply",
    "Plan",
    "Recipe",
    "RecipeError",
    "load_recipe",
    "save",
    "load",
    "export_onnx",
    "build_model",
    "LiftswapError",
    "backends",
    "__version__",
]
