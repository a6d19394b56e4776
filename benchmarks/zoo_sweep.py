"""Sweep liftswap.plan + patch + forward over every timm and torchvision architecture.

Random weights, a small input, one forked worker per model with a time limit. For each model:
sites found, replaced, skipped by reason, sites in forwards that needed a rewrite and sites that
could not be reached, output shapes kept (example size and an odd size), function preserved
(relative error <= 1e-4 in eval mode; float64 where float32 rounding is amplified; module by
module where the random net is chaotic, its own output moving under a 1e-15 change of its
input), and the error of any failure.

    python benchmarks/zoo_sweep.py [--filter 'resnet*'] [--limit N] [--timeout 120] [--max-size 160]
                                   [--targets pools,convs] [--paper-step] [--every K [--offset I]]
    python benchmarks/zoo_sweep.py --merge A.json B.json ... --out ALL.json

``--targets pools,convs`` converts downsampling convolutions too (SPEC 6.1; only models with a
pool or a strided convolution are run); ``--paper-step`` also converts in paper mode and trains
one step, checking that the regulariser reaches every new lifting layer that runs forward.

Writes benchmarks/results/zoo_sweep.json and prints the totals. Models whose own forward fails
on the example input are reported as such, not as liftswap failures.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import multiprocessing as mp
import inspect
import os
import re
import sys
import time
import traceback
import warnings

import torch

# Workers are forked after torch is imported; one intra-op thread avoids fork/OpenMP deadlocks.
torch.set_num_threads(1)


def list_architectures(pattern: str) -> list[str]:
    import timm
    import torchvision

    names = [f"timm:{n}" for n in timm.list_models()]
    names += [f"torchvision:{n}" for n in torchvision.models.list_models()]
    return [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n.split(":", 1)[1], pattern)]


def build(source: str, max_size: int):
    lib, name = source.split(":", 1)
    if lib == "timm":
        import timm

        model = timm.create_model(name, pretrained=False)
        c, h, w = model.pretrained_cfg.get("input_size", (3, 224, 224))
        fixed = bool(model.pretrained_cfg.get("fixed_input_size", False))
    else:
        import torchvision

        try:  # detection and segmentation models would download backbone weights otherwise
            model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
        except TypeError:
            model = torchvision.models.get_model(name, weights=None)
        c, h, w = 3, (299 if "inception" in name else 224), (299 if "inception" in name else 224)
        fixed = False
    if not fixed:
        h, w = min(h, max_size), min(w, max_size)
    return model.eval(), (c, h, w), fixed


_FUNCTIONAL_POOL = re.compile(r"\b(max_pool[123]d|avg_pool[123]d|max_unpool[123]d|lp_pool[123]d)\b")


def has_pooling(source: str, convs: bool = False) -> bool:
    """A cheap scan on the meta device: pool modules, or pooling calls in any module's code.

    Building giant models with real weights takes minutes; those without any pooling op
    (most transformers) are reported as such without running them.
    """
    from torch import nn

    lib, name = source.split(":", 1)
    try:
        return _scan(lib, name, convs)
    except Exception:  # noqa: BLE001 - some models cannot be built on the meta device: run them
        return True


def _scan(lib: str, name: str, convs: bool = False) -> bool:
    from torch import nn

    with torch.device("meta"):
        if lib == "timm":
            import timm

            model = timm.create_model(name, pretrained=False)
        else:
            import torchvision

            try:
                model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
            except TypeError:
                model = torchvision.models.get_model(name, weights=None)
    pool_types = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
    if any(isinstance(m, pool_types) for m in model.modules()):
        return True
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    if convs and any(isinstance(m, conv_types) and any(s != 1 for s in m.stride) for m in model.modules()):
        return True
    for cls in {type(m) for m in model.modules()}:
        if cls.__module__.startswith("torch.nn"):
            continue
        try:
            text = inspect.getsource(sys.modules[cls.__module__])
        except (OSError, TypeError, KeyError):
            return True  # cannot tell: run it
        if _FUNCTIONAL_POOL.search(text):
            return True
    return False


def forward_for_comparison(model, x):
    """The model's output; for detectors (lists of box dicts), its backbone's feature maps."""
    out = model(x)
    if isinstance(out, list) and out and isinstance(out[0], dict) and hasattr(model, "backbone"):
        out = model.backbone(x)
    return first_tensor(out)


def first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return first_tensor(out[0])
    if isinstance(out, dict):
        return first_tensor(next(iter(out.values())))
    return first_tensor(getattr(out, "logits", None) or out[0])


def sweep_one(source: str, max_size: int, targets: list[str] = ("pools",), paper_step: bool = False) -> dict:
    import liftswap

    row: dict = {"model": source}
    t0 = time.time()
    try:
        if not has_pooling(source, "convs" in targets):
            return {**row, "status": "no_pooling", "seconds": round(time.time() - t0, 2)}
        model, (c, h, w), fixed = build(source, max_size)
    except Exception as e:  # noqa: BLE001
        return {**row, "status": "build_failed", "error": f"{type(e).__name__}: {str(e)[:200]}"}
    torch.manual_seed(0)
    x = torch.randn(2, c, h, w)
    try:
        with torch.no_grad():
            ref = forward_for_comparison(model, x)
    except Exception as e:  # noqa: BLE001
        return {**row, "status": "model_failed", "error": f"{type(e).__name__}: {str(e)[:200]}"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = liftswap.patch(model, {"targets": list(targets)}, example_inputs=x).eval()
        p = converted.liftswap_plan
        row.update(
            sites=len(p.sites),
            replaced=len(p.replaced),
            skipped=p.skip_reasons(),
            rewritten=sum(1 for s in p.replaced if s.rewrite),
            unreachable=sum(1 for s in p.skipped if s.reason.startswith("not reachable")),
            train_only=sum(1 for s in p.sites if s.train_only),
            notes=p.notes,
        )
        with torch.no_grad():
            out = forward_for_comparison(converted, x)
            row["shapes_kept"] = out.shape == ref.shape
            same = out.shape == ref.shape
            row["rel_err"] = ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item() if same and ref.numel() else (0.0 if same else None)
            row["preserved"] = row["rel_err"] is not None and row["rel_err"] <= 1e-4
            if row["rel_err"] is not None and not row["preserved"]:
                # Deep random-weight nets amplify float32 rounding (the Haar lift sums in another
                # order than avg_pool); float64 tells rounding from a real difference.
                m64, c64, x64 = copy.deepcopy(model).double(), copy.deepcopy(converted).double(), x.double()
                a, b = forward_for_comparison(m64, x64), forward_for_comparison(c64, x64)
                row["rel_err_f64"] = ((a - b).abs().max() / a.abs().max().clamp_min(1e-300)).item()
                row["preserved"] = row["rel_err_f64"] <= 1e-9
                if not row["preserved"]:
                    # Some random-weight nets are chaotic: a 1e-15 change of the input moves the
                    # original's own output as much, so the whole output cannot judge a rewrite.
                    # Then each replaced module is compared with the original one on the input
                    # it gets inside the original network.
                    wiggle = x64 * (1 + 1e-15 * torch.randn(x64.shape, generator=torch.Generator().manual_seed(1), dtype=x64.dtype))
                    a2 = forward_for_comparison(m64, wiggle)
                    row["noise_floor_f64"] = ((a - a2).abs().max() / a.abs().max().clamp_min(1e-300)).item()
                    modules = [s.module for s in p.replaced if s.module and not s.rewrite]
                    if row["noise_floor_f64"] > 1e-9 and len(modules) == len(p.replaced):
                        row["site_err_f64"] = max(site_errors(m64, c64, x64, modules))
                        row["preserved"] = row["site_err_f64"] <= 1e-9
            if not fixed:
                xo = torch.randn(1, c, h - 3 if h > 40 else h + 1, w - 3 if w > 40 else w + 1)
                try:
                    ref_odd = forward_for_comparison(model, xo)
                except Exception:  # noqa: BLE001 - the original rejects odd sizes: nothing to compare
                    ref_odd = None
                if ref_odd is not None:
                    row["odd_shapes_kept"] = forward_for_comparison(converted, xo).shape == ref_odd.shape
        if paper_step and row["replaced"]:
            row.update(_paper_step(model, x, targets))
        row["status"] = "ok"
    except Exception as e:  # noqa: BLE001
        row.update(status="liftswap_failed", error=f"{type(e).__name__}: {str(e)[:300]}", trace=traceback.format_exc()[-1500:])
    row["seconds"] = round(time.time() - t0, 2)
    return row


def _paper_step(model, x, targets) -> dict:
    """Paper mode: one training step; the regulariser must reach every lifting layer run forward."""
    import liftswap
    from liftswap.layers.lift_pool import _LiftDownPoolNd

    try:  # detectors and the like need targets in train mode: nothing to train on here
        with torch.no_grad():
            copy.deepcopy(model).train()(x)
    except Exception as e:  # noqa: BLE001
        return {"paper_step": None, "paper_note": f"the original fails in train mode ({type(e).__name__})"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paper = liftswap.patch(model, {"mode": "paper", "targets": list(targets)}, example_inputs=x).train()
    ran = set()
    handles = [m.register_forward_hook(lambda m, a, o: ran.add(m)) for m in paper.modules() if isinstance(m, _LiftDownPoolNd)]
    try:
        loss = first_tensor(paper(x)).float().square().mean()
    finally:
        for h in handles:
            h.remove()
    reg = liftswap.regularization_loss(paper)
    (loss + reg).backward()
    reached = [m for m in ran if m.last_regularization is not None and m.last_regularization.requires_grad]
    return {"paper_step": bool(torch.isfinite(loss + reg)), "paper_lifts_run": len(ran), "paper_lifts_regularised": len(reached)}


def _worker(source: str, max_size: int, targets, paper_step: bool, queue) -> None:
    queue.put(sweep_one(source, max_size, targets, paper_step))


def run(source: str, max_size: int, timeout: float, targets=("pools",), paper_step: bool = False) -> dict:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(source, max_size, targets, paper_step, queue))
    proc.start()
    try:
        return queue.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - queue.Empty: over the time limit, or the worker died
        if proc.is_alive():
            return {"model": source, "status": "timeout", "error": f"no result in {timeout}s"}
        proc.join(5)
        if proc.exitcode == -9:  # SIGKILL: on a machine where nothing else kills, the out-of-memory killer
            return {"model": source, "status": "killed", "error": "worker killed by SIGKILL (out of memory)"}
        return {"model": source, "status": "crashed", "error": f"worker died (exit code {proc.exitcode})"}
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filter", default="*")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--every", type=int, default=1, help="every k-th architecture only (a spread-out sample)")
    ap.add_argument("--offset", type=int, default=0, help="with --every: start at this index (another sample)")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--max-size", type=int, default=160, help="cap on H and W for models that accept any size")
    ap.add_argument("--targets", default="pools", help="pools, convs or pools,convs")
    ap.add_argument("--paper-step", action="store_true", help="also train one step of the paper-mode conversion")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "zoo_sweep.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="combine these results (samples of one sweep) into --out instead")
    args = ap.parse_args(argv)
    if args.merge:
        rows, seen, complete = [], set(), True
        for path in args.merge:
            with open(path) as f:
                part = json.load(f)
            complete = complete and part["complete"]
            rows += [r for r in part["rows"] if r["model"] not in seen and not seen.add(r["model"])]
        print(json.dumps(write(args, rows, complete), indent=1))
        print(f"wrote {args.out}")
        return 0
    targets = [t for t in args.targets.split(",") if t]
    import liftswap  # noqa: F401 - imported before forking

    names = list_architectures(args.filter)[args.offset :: max(args.every, 1)]
    if args.limit:
        names = names[: args.limit]
    try:
        from tqdm import tqdm
    except ImportError:  # the progress bar is optional
        tqdm = None
    rows = []
    bar = tqdm(names, unit="model", file=sys.stderr) if tqdm else names
    for name in bar:
        if tqdm:
            bar.set_postfix_str(name[-30:])
        rows.append(run(name, args.max_size, args.timeout, targets, args.paper_step))
        if not tqdm:
            print(name, rows[-1]["status"], file=sys.stderr)
        if len(rows) % 25 == 0:  # a long sweep leaves partial results behind
            write(args, rows, complete=False)
    totals = write(args, rows, complete=True)
    print(json.dumps(totals, indent=1))
    print(f"wrote {args.out}")
    return 0


def write(args, rows: list[dict], complete: bool) -> dict:
    totals = summarize(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"args": vars(args), "complete": complete, "totals": totals, "rows": rows}, f, indent=1)
    os.replace(tmp, args.out)
    return totals


def site_errors(model, converted, x, paths: list[str]) -> list[float]:
    """Per replaced module: the relative difference between the converted module and the original
    one on the input the original network hands it (float64)."""
    originals, replacements = dict(model.named_modules()), dict(converted.named_modules())
    seen: dict[str, tuple] = {}

    def keep(path):
        def hook(module, args, out):  # returns None: the module's output stays
            seen.setdefault(path, (args, out))

        return hook

    hooks = [originals[p].register_forward_hook(keep(p)) for p in paths]
    try:
        forward_for_comparison(model, x)
    finally:
        for h in hooks:
            h.remove()
    errors = []
    for p in paths:
        args, out = seen[p]
        out = out[0] if isinstance(out, tuple) else out
        got = replacements[p](*args)
        got = got[0] if isinstance(got, tuple) else got
        errors.append(((got - out).abs().max() / out.abs().max().clamp_min(1e-300)).item())
    return errors


def summarize(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]  # "no_pooling": no pooling op in the model's code
    with_pool = [r for r in ok if r.get("replaced", 0) > 0]
    reasons: dict[str, int] = {}
    for r in ok:
        for k, v in r.get("skipped", {}).items():
            reasons[k] = reasons.get(k, 0) + v
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "architectures": len(rows),
        "status": statuses,
        "with_replaced_sites": len(with_pool),
        "sites": sum(r.get("sites", 0) for r in ok),
        "replaced": sum(r.get("replaced", 0) for r in ok),
        "rewritten_sites": sum(r.get("rewritten", 0) for r in ok),
        "unreachable_sites": sum(r.get("unreachable", 0) for r in ok),
        "skipped_by_reason": reasons,
        "shapes_kept": sum(1 for r in with_pool if r.get("shapes_kept")),
        "odd_shapes_kept": f"{sum(1 for r in with_pool if r.get('odd_shapes_kept'))} of {sum(1 for r in with_pool if 'odd_shapes_kept' in r)}",
        "function_preserved": sum(1 for r in with_pool if r.get("preserved")),
        "not_preserved": [r["model"] for r in with_pool if not r.get("preserved")],
        "chaotic_judged_per_site": [r["model"] for r in with_pool if r.get("site_err_f64") is not None],
        "paper_step_ok": sum(1 for r in with_pool if r.get("paper_step") and r.get("paper_lifts_regularised") == r.get("paper_lifts_run")),
        "paper_step_checked": sum(1 for r in with_pool if r.get("paper_step") is not None),
        "liftswap_failures": [f"{r['model']}: {r.get('error')}" for r in rows if r["status"] in ("liftswap_failed", "crashed")],
        "timeouts": [r["model"] for r in rows if r["status"] == "timeout"],
        "killed_out_of_memory": [r["model"] for r in rows if r["status"] == "killed"],
    }


if __name__ == "__main__":
    sys.exit(main())
