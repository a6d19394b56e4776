"""Pictures of LiftPool's sub-bands: LL, LH, HL, HH of an image, or of a layer's input."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import LiftswapError
from ..layers.lift_pool import LiftDownPool2d, band_names, lift_down_pool

__all__ = ["read_image", "band_grid", "layer_input", "write_png"]


def _imageio():
    try:
        import imageio.v3 as iio
    except ImportError:
        raise LiftswapError("drawing bands needs imageio: pip install 'liftswap[bands]'") from None
    return iio


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as a (1, C, H, W) float tensor in [0, 1]."""
    iio = _imageio()

    path = str(path)
    if not os.path.isfile(path):
        raise LiftswapError(f"image not found: {path}")
    try:
        img = np.asarray(iio.imread(path))
    except Exception as e:  # noqa: BLE001 - an unreadable or non-image file
        raise LiftswapError(f"cannot read image {path}: {type(e).__name__}") from None
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise LiftswapError(f"{path} is not a 2D image (array of shape {img.shape})")
    img = img[..., :3].astype(np.float32)
    img /= 255.0 if img.max() > 1.0 else 1.0
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0)


def _to_rgb(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8."""
    if t.shape[0] != 3:
        t = t.mean(0, keepdim=True).expand(3, -1, -1)
    return (t.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)


def band_grid(x: torch.Tensor, down: LiftDownPool2d | None = None) -> np.ndarray:
    """The 2x2 grid [[LL, LH], [HL, HH]] of ``x`` (1, C, H, W) as an RGB uint8 array.

    ``down`` is the lift to use (default: a Haar lift). LL is shown min-max scaled; the detail
    bands as magnitudes on one shared scale, so their strengths can be compared.
    """
    if down is None:
        down = LiftDownPool2d(x.shape[1], init="haar", output="LL")
    if len(down.axes) != 2:
        raise LiftswapError(f"band pictures need a layer lifting 2 axes, got bands {band_names(len(down.axes))}")
    with torch.no_grad():  # LL alone, whatever the layer's output mode
        res = lift_down_pool(x, down.predict.weights(), down.update.weights(), down.axes, "LL")
    ll = res.y[0]
    ll = (ll - ll.min()) / (ll.max() - ll.min()).clamp_min(1e-12)
    details = res.details[0].abs()
    details = (details / details.max().clamp_min(1e-12)).sqrt()  # sqrt: faint details stay visible
    tiles = [_to_rgb(ll)] + [_to_rgb(d) for d in details]
    gap = np.full((tiles[0].shape[0], 2, 3), 255, np.uint8)
    top = np.concatenate([tiles[0], gap, tiles[1]], axis=1)
    bottom = np.concatenate([tiles[2], gap, tiles[3]], axis=1)
    return np.concatenate([top, np.full((2, top.shape[1], 3), 255, np.uint8), bottom], axis=0)


def layer_input(model: torch.nn.Module, layer: str | None, image: torch.Tensor):
    """The input that a converted ``model``'s replaced site ``layer`` sees for ``image``, and its lift.

    The image is resized to the conversion's input size and given the model's channel count.
    """
    sites = [s.name for s in model.liftswap_plan.replaced if s.kind != "unpool"]
    name = layer or (sites[0] if sites else None)
    if name not in sites:
        raise LiftswapError(f"--layer must name a replaced site: {', '.join(sites) or 'none'}; got {name!r}")
    site = model.get_submodule(name)
    c, h, w = model.liftswap_plan.input_shapes[0][1:]
    x = image[:, :c] if image.shape[1] >= c else image.mean(1, keepdim=True).expand(-1, c, -1, -1)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    captured = {}
    handle = site.register_forward_pre_hook(lambda m, args: captured.setdefault("x", args[0][:1]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured["x"], site.lift


def write_png(array: np.ndarray, path: str | os.PathLike) -> None:
    from .files import atomic_write

    iio = _imageio()

    atomic_write(path, lambda tmp: iio.imwrite(tmp, array, extension=".png"))
