"""The math: LiftPool layers, their functional forms and the regulariser."""

from .lift_pool import (
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftOperator,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
    band_names,
    lift,
    lift_down_pool,
    lift_up_pool,
    unlift,
)
from .regularization import clear_regularization, regularization_loss

__all__ = [
    "LiftDownPool1d",
    "LiftDownPool2d",
    "LiftDownPool3d",
    "LiftUpPool1d",
    "LiftUpPool2d",
    "LiftUpPool3d",
    "LiftOperator",
    "band_names",
    "lift",
    "unlift",
    "lift_down_pool",
    "lift_up_pool",
    "regularization_loss",
    "clear_regularization",
]
