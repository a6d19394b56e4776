"""The paper's bidirectional claim, measured: pool down by 2, then back up, on real photographs.

Photographs that ship with scikit-image and scikit-learn, as RGB in [0, 1]. Methods:

- MaxPool2d(2) + MaxUnpool2d (indices): the classic SegNet unpooling.
- AvgPool2d(2) + bilinear upsampling.
- LiftDownPool2d + LiftUpPool2d with all detail bands (haar init; any weights invert exactly).
- The same with the detail bands dropped (zeros): haar init, and a haar-init lift fitted by its
  own regulariser (Adam on lambda_u * c_u + lambda_p * c_p over the images, no task loss), which
  learns P and U that make the details small, so that dropping them loses less.

Prints a PSNR table, writes benchmarks/results/reconstruction.json and a PNG figure.

    python benchmarks/reconstruction.py [--steps 300] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import liftswap

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def photographs(quick: bool) -> dict[str, torch.Tensor]:
    from skimage import data
    from skimage.transform import resize

    images = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
    if not quick:
        from sklearn.datasets import load_sample_images

        for name, img in zip(("china", "flower"), load_sample_images().images):
            images[name] = img
        images["camera"] = np.stack([data.camera()] * 3, axis=-1)
    out = {}
    for name, img in images.items():
        img = img.astype(np.float32) / 255.0
        h, w = img.shape[:2]
        scale = (128 if quick else 256) / max(h, w)
        img = resize(img, (int(h * scale) | 1, int(w * scale)), anti_aliasing=True)  # odd height on purpose
        out[name] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float()
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def fit_lift(images: list[torch.Tensor], steps: int, seed: int = 0) -> liftswap.LiftDownPool2d:
    """A haar-init lift trained only on its regulariser (no task), over all images."""
    torch.manual_seed(seed)
    down = liftswap.LiftDownPool2d(3, init="haar", output="LL", return_details=True, lambda_u=0.01, lambda_p=0.1)
    opt = torch.optim.Adam(down.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        for x in images:
            down(x)
            liftswap.regularization_loss(down).backward()
        opt.step()
    return down.eval()


def methods(fitted):
    def maxunpool(x):
        y, idx = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
        return F.max_unpool2d(y, idx, 2, 2, output_size=x.shape[2:])

    def bilinear(x):
        y = F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)

    haar = liftswap.LiftDownPool2d(3, init="haar", output="LL", return_details=True).eval()

    def lift(down, keep_details):
        up = liftswap.LiftUpPool2d(down)

        def run(x):
            y, details = down(x)
            return up(y, details if keep_details else torch.zeros_like(details), output_size=x.shape[2:])

        return run

    return {
        "MaxPool + MaxUnpool": maxunpool,
        "AvgPool + bilinear": bilinear,
        "LiftPool, all bands": lift(haar, True),
        "LiftPool haar, details dropped": lift(haar, False),
        "LiftPool fitted, details dropped": lift(fitted, False),
    }


def figure(image: torch.Tensor, recon: dict[str, torch.Tensor], path: str) -> None:
    from skimage.io import imsave

    tiles = [image] + list(recon.values())
    row = torch.cat([t[0].clamp(0, 1) for t in tiles], dim=2)  # side by side
    imsave(path, (row.permute(1, 2, 0).numpy() * 255).astype(np.uint8), check_contrast=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="Adam steps fitting the lift to its regulariser")
    ap.add_argument("--quick", action="store_true", help="three small images, for tests")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images = photographs(args.quick)
    fitted = fit_lift(list(images.values()), args.steps)
    table: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name, x in images.items():
            recon = {m: fn(x) for m, fn in methods(fitted).items()}
            table[name] = {m: psnr(r, x) for m, r in recon.items()}
            if name == "astronaut":
                os.makedirs(args.out, exist_ok=True)
                figure(x, recon, os.path.join(args.out, "reconstruction.png"))
    names = list(next(iter(table.values())))
    print(f"{'image':<12}" + "".join(f"{n:>34}" for n in names))
    for img, row in table.items():
        print(f"{img:<12}" + "".join(f"{row[n]:>34.2f}" for n in names))
    mean = {n: float(np.mean([row[n] for row in table.values() if np.isfinite(row[n])] or [float("inf")])) for n in names}
    print(f"{'mean':<12}" + "".join(f"{mean[n]:>34.2f}" for n in names))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "reconstruction.json"), "w") as f:
        json.dump({"psnr_db": table, "mean_psnr_db": mean, "fit_steps": args.steps, "quick": args.quick}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
