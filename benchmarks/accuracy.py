"""Is LiftPool worth it? An honest experiment on real data (scikit-learn's digits, 32x32).

For each seed: train a small VGG-style net with MaxPool to convergence ("pretrained"), then
compare at an equal fine-tuning budget:

- original: the MaxPool net fine-tuned further;
- preserve: converted with the default recipe (same function at init), fine-tuned with the regulariser;
- paper: converted with the paper recipe (LiftDownPool(paper, sum)), fine-tuned with the regulariser;
- paper from scratch: a paper-converted net trained from random weights for pretrain + fine-tune epochs.

Test accuracy clean, under Gaussian noise and under small shifts of the test images; mean and
standard deviation over seeds. Writes benchmarks/results/accuracy.json.

    python benchmarks/accuracy.py [--seeds 3] [--pretrain-epochs 15] [--finetune-epochs 5] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import liftswap  # noqa: E402
from examples.digits import load_digits_tensors, small_vgg  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def train(model, x, y, epochs: int, lr: float, seed: int, batch: int = 64) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * ((len(y) + batch - 1) // batch)))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=g).split(batch):
            loss = F.cross_entropy(model(x[idx]), y[idx]) + liftswap.regularization_loss(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate by (dy, dx) pixels, filling with the background value."""
    out = torch.full_like(x, float(x.min()))
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


@torch.no_grad()
def evaluate(model, x, y, seed: int) -> dict[str, float]:
    model.eval()

    def acc(inp):
        return (model(inp).argmax(1) == y).float().mean().item()

    g = torch.Generator().manual_seed(10_000 + seed)
    return {
        "clean": acc(x),
        "noise_0.5": acc(x + 0.5 * torch.randn(x.shape, generator=g)),
        "noise_1.0": acc(x + 1.0 * torch.randn(x.shape, generator=g)),
        "shift_1px": statistics.mean(acc(shift(x, dy, dx)) for dy, dx in ((1, 0), (0, 1), (-1, 0), (0, -1))),
        "shift_2px": statistics.mean(acc(shift(x, dy, dx)) for dy, dx in ((2, 0), (0, 2), (-2, 0), (0, -2))),
    }


def run_seed(seed: int, args, data) -> dict[str, dict[str, float]]:
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)
    pretrained = small_vgg()
    train(pretrained, x_tr, y_tr, args.pretrain_epochs, args.lr, seed)
    rows = {"pretrained (MaxPool)": evaluate(pretrained, x_te, y_te, seed)}
    example = x_tr[:2]
    preserve = liftswap.patch(pretrained, example_inputs=example)
    rows["preserve, at init"] = evaluate(preserve, x_te, y_te, seed)
    variants = {
        "original, fine-tuned": copy.deepcopy(pretrained),
        "preserve, fine-tuned": preserve,
        "paper, fine-tuned": liftswap.patch(pretrained, recipe="paper", example_inputs=example),
    }
    for name, model in variants.items():
        train(model, x_tr, y_tr, args.finetune_epochs, args.lr * args.finetune_lr_scale, seed + 1)
        rows[name] = evaluate(model, x_te, y_te, seed)
    torch.manual_seed(seed)
    scratch = liftswap.patch(small_vgg(), recipe="paper", example_inputs=example)
    train(scratch, x_tr, y_tr, args.pretrain_epochs + args.finetune_epochs, args.lr, seed)
    rows["paper, from scratch"] = evaluate(scratch, x_te, y_te, seed)
    torch.manual_seed(seed)
    maxpool_scratch = small_vgg()
    train(maxpool_scratch, x_tr, y_tr, args.pretrain_epochs + args.finetune_epochs, args.lr, seed)
    rows["MaxPool, from scratch (same epochs)"] = evaluate(maxpool_scratch, x_te, y_te, seed)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--finetune-lr-scale", type=float, default=0.2)
    ap.add_argument("--quick", action="store_true", help="one seed, one epoch each: a smoke run for tests")
    ap.add_argument("--out", default=os.path.join(RESULTS, "accuracy.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.pretrain_epochs, args.finetune_epochs = 1, 1, 1
    data = load_digits_tensors()
    if args.quick:  # a subset: the smoke run checks the pipeline, not the numbers
        data = (data[0][:192], data[1][:192], data[2][:96], data[3][:96])
    t0 = time.time()
    per_seed = [run_seed(seed, args, data) for seed in range(args.seeds)]
    names = list(per_seed[0])
    metrics = list(per_seed[0][names[0]])
    summary = {
        n: {m: {"mean": statistics.mean(r[n][m] for r in per_seed), "std": statistics.pstdev(r[n][m] for r in per_seed)} for m in metrics}
        for n in names
    }
    print(f"digits 32x32, {len(data[1])} train / {len(data[3])} test images, {args.seeds} seeds, "
          f"pretrain {args.pretrain_epochs} epochs, fine-tune {args.finetune_epochs} epochs (test accuracy, mean +- std)")
    print(f"{'model':<38}" + "".join(f"{m:>16}" for m in metrics))
    for n in names:
        print(f"{n:<38}" + "".join(f"{summary[n][m]['mean']:>10.4f}+-{summary[n][m]['std']:.3f}" for m in metrics))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "seconds": round(time.time() - t0, 1), "summary": summary, "per_seed": per_seed}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
