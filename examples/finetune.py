"""Fine-tune a LiftPool-converted model on real data (scikit-learn's digits), with the regulariser.

Single process:
    python examples/finetune.py --recipe paper --epochs 5 --out runs/digits
Several processes (DDP, gloo on CPU, NCCL on GPUs):
    torchrun --nproc_per_node=2 examples/finetune.py --recipe paper --epochs 5 --out runs/digits

Each epoch writes ``<out>/epoch<N>.pt`` with liftswap.save; the end prints the test accuracy.
``--json`` prints a summary line per process instead, with the SHA-256 of its weights: under DDP
the replicas must agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import liftswap  # noqa: E402
from examples.digits import load_digits_tensors  # noqa: E402


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="examples.digits:small_vgg", help="model source (module.path:factory, timm name, ...)")
    ap.add_argument("--checkpoint", default=None, help="weights of the unconverted model")
    ap.add_argument("--recipe", default="default", help="recipe name or YAML path")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="train the torch.compile-d model")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--out", default=None, help="folder for the per-epoch checkpoints")
    ap.add_argument("--json", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)

    x_train, y_train, x_test, y_test = load_digits_tensors()
    model = liftswap.build_model(args.model)
    if args.checkpoint:
        liftswap.io.load_checkpoint(model, args.checkpoint)
    model = liftswap.patch(model, recipe=args.recipe, example_inputs=x_train[:2]).to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    step_fn = torch.compile(net) if args.compile else net
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    history = []
    for epoch in range(args.epochs):
        model.train()
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)  # the same order on every rank
        order = torch.randperm(len(y_train), generator=g)[rank::world]
        batches = list(order.split(args.batch_size))
        if args.max_steps:
            batches = batches[: args.max_steps]
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{args.epochs}", disable=rank != 0 or args.json) if tqdm else batches
        regs = []
        for idx in bar:
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                logits = step_fn(xb)
                task = F.cross_entropy(logits.float(), yb)
            reg = liftswap.regularization_loss(net)
            loss = task + reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            regs.append(reg.item())
            if tqdm and rank == 0 and not args.json:
                bar.set_postfix(loss=f"{task.item():.3f}", reg=f"{reg.item():.4f}")
        acc = evaluate(model, x_test, y_test, device)
        history.append({"epoch": epoch + 1, "test_accuracy": acc, "regularizer": regs})
        if args.out and rank == 0:
            os.makedirs(args.out, exist_ok=True)
            liftswap.save(model, os.path.join(args.out, f"epoch{epoch + 1}.pt"))
    # Each process reports a digest of its weights instead of gathering them: a collective on Python
    # tensors right before exit can crash the interpreter's shutdown (gloo's worker thread releases
    # them after the call returns and then needs the GIL; torch 2.14).
    weights = torch.cat([p.detach().cpu().flatten() for p in model.parameters()])
    summary = {
        "rank": rank,
        "world_size": world,
        "test_accuracy": history[-1]["test_accuracy"] if history else None,
        "history": history,
        "params_sha256": hashlib.sha256(weights.numpy().tobytes()).hexdigest(),
    }
    if distributed:
        dist.destroy_process_group()
    if args.json:
        # one write of the line and its newline: under torchrun's unbuffered stdout, print's two
        # writes let another rank's line land between them
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    elif rank == 0:
        print(f"test accuracy {summary['test_accuracy']:.4f}")
    return 0


@torch.no_grad()
def evaluate(model, x, y, device) -> float:
    model.eval()
    correct = 0
    for xb, yb in zip(x.split(256), y.split(256)):
        correct += (model(xb.to(device)).argmax(1).cpu() == yb).sum().item()
    return correct / len(y)


if __name__ == "__main__":
    sys.exit(main())
