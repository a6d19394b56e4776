"""plan / patch on real timm and torchvision architectures (random weights)."""

import pytest
import torch

import liftswap
from liftswap.layers.lift_pool import _LiftDownPoolNd

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

# name, example size, another size the original accepts (odd where it accepts one),
# expected (sites, replaced, skipped). Counts were read off each architecture's code.
ZOO = [
    ("torchvision:resnet18", 64, 67, (2, 1, 1)),  # stem max pool; adaptive head
    ("torchvision:vgg11", 64, 71, (6, 5, 1)),  # five max pools; adaptive head
    ("torchvision:densenet121", 64, 75, (5, 4, 1)),  # stem max pool, 3 transition avg pools; F.adaptive head
    ("torchvision:googlenet", 96, 99, (16, 4, 12)),  # ceil_mode max pools; stride-1 branch pools, aux heads
    ("torchvision:inception_v3", 299, 301, (16, 4, 12)),  # F.max_pool2d in Mixed_6a/7a; F.avg_pool2d stride 1; aux
    ("timm:resnet50d", 64, 67, (5, 4, 1)),  # stem max pool, avg-pool shortcuts (ceil_mode, no pad count)
    ("timm:dla34", 64, 96, (7, 6, 1)),  # max pools in trees; dla rejects odd sizes itself
    ("timm:vgg13_bn", 224, 231, (6, 5, 1)),
    ("timm:res2net50_26w_4s", 64, 67, (6, 4, 2)),  # stride-2 avg pools inside blocks; one stride-1
]


def build(source):
    lib, name = source.split(":")
    if lib == "timm":
        return timm.create_model(name, pretrained=False)
    kw = {"aux_logits": True, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    return torchvision.models.get_model(name, weights=None, **kw)


def first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("source,size,other,counts", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model(source, size, other, counts):
    torch.manual_seed(0)
    model = build(source).eval()
    x = torch.randn(2, 3, size, size)
    converted = liftswap.patch(model, example_inputs=x).eval()
    p = converted.liftswap_plan
    assert (len(p.sites), len(p.replaced), len(p.skipped)) == counts, str(p)
    assert p.preserves_function
    with torch.no_grad():
        for xi in (x, torch.randn(1, 3, other, other)):
            a, b = first(model(xi)), first(converted(xi))
            assert a.shape == b.shape
            assert ((a - b).abs().max() / a.abs().max()).item() <= 1e-4
    before, after = model.state_dict(), converted.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert all(any(k.startswith(s.name + ".") for s in p.replaced) for k in after if k not in before)

    paper = liftswap.patch(model, recipe="paper", example_inputs=x).train()
    layers = [m for m in paper.modules() if isinstance(m, _LiftDownPoolNd)]
    assert len(layers) == counts[1] and all(m.init == "paper" for m in layers)
    opt = torch.optim.SGD(paper.parameters(), lr=1e-3)
    out = first(paper(x))
    reg = liftswap.regularization_loss(paper)
    assert all(m.last_regularization is not None for m in layers)
    (out.square().mean() + reg).backward()
    assert all(m.predict.dw.weight.grad is not None and m.predict.dw.weight.grad.abs().sum() > 0 for m in layers)
    opt.step()


@pytest.mark.slow
def test_zoo_sweep_wider_subset(tmp_path):
    """A wider sweep (run with -m slow): every resnet/vgg/dense/inception-like architecture converts."""
    import json
    import subprocess
    import sys

    root = __file__.rsplit("/tests/", 1)[0]
    out = tmp_path / "sweep.json"
    for pattern in ("*resne*", "*vgg*", "*dense*", "*incep*"):
        subprocess.run(
            [sys.executable, f"{root}/benchmarks/zoo_sweep.py", "--filter", pattern, "--limit", "25", "--out", str(out)],
            check=True, capture_output=True, timeout=3000,
        )
        totals = json.loads(out.read_text())["totals"]
        assert totals["liftswap_failures"] == [], totals
        assert totals["shapes_kept"] == totals["with_replaced_sites"] > 0
        assert totals["function_preserved"] == totals["with_replaced_sites"], totals["not_preserved"]
