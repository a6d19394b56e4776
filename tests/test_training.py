"""Training integration: DDP under torchrun, torch.compile, bf16 autocast, and the examples end to end."""

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

import liftswap
from liftswap.layers.lift_pool import _LiftDownPoolNd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from examples.digits import load_digits_tensors, small_vgg  # noqa: E402


def run(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def converted_vgg(recipe="paper", seed=0):
    torch.manual_seed(seed)
    x, y, _, _ = load_digits_tensors()
    return liftswap.patch(small_vgg(width=8), recipe=recipe, example_inputs=x[:2]), x[:32], y[:32]


def test_ddp_two_processes_replicas_identical_and_regulariser_positive():
    r = run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "examples/finetune.py",
            "--recipe", "paper", "--epochs", "1", "--max-steps", "3", "--json")
    summaries = sorted((json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")), key=lambda s: s["rank"])
    assert [s["rank"] for s in summaries] == [0, 1] and all(s["world_size"] == 2 for s in summaries)
    # Bitwise the same weights on both replicas, and they moved away from the (seeded) start.
    assert summaries[0]["params_sha256"] == summaries[1]["params_sha256"]
    start = run("examples/finetune.py", "--recipe", "paper", "--epochs", "0", "--json")
    assert json.loads(start.stdout.strip().splitlines()[-1])["params_sha256"] != summaries[0]["params_sha256"]
    for s in summaries:
        regs = s["history"][0]["regularizer"]
        assert len(regs) == 3 and all(v > 0 for v in regs)


def test_compiled_output_regulariser_and_grads_equal_eager():
    """In float64, so that the comparison is of the math, not of float32 rounding (which inductor
    orders differently from eager, and differently from one torch version to the next)."""
    model, x, y = converted_vgg()
    model, x = model.double().train(), x.double()
    eager_out = model(x)
    eager_reg = liftswap.regularization_loss(model)
    (F.cross_entropy(eager_out, y) + eager_reg).backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model)
    out = compiled(x)
    reg = liftswap.regularization_loss(compiled)
    (F.cross_entropy(out, y) + reg).backward()
    torch.testing.assert_close(out, eager_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(reg, eager_reg, rtol=1e-10, atol=1e-12)
    for n, p in model.named_parameters():  # biases before BatchNorm have zero gradient: atol
        torch.testing.assert_close(p.grad, eager_grads[n], rtol=1e-9, atol=1e-12, msg=n)


def test_bf16_autocast_trains_close_to_float32():
    model, x, y = converted_vgg()
    model.train()
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        reg = liftswap.regularization_loss(model)
    loss = F.cross_entropy(out.float(), y) + reg.float()
    loss.backward()
    assert torch.isfinite(loss) and reg.item() > 0
    assert ((out.float() - ref).abs().max() / ref.abs().max()).item() < 0.1  # bf16 has 8 bits of mantissa
    layers = [m for m in model.modules() if isinstance(m, _LiftDownPoolNd)]
    assert all(torch.isfinite(m.predict.dw.weight.grad).all() and m.predict.dw.weight.grad.abs().sum() > 0 for m in layers)


def test_finetune_example_writes_loadable_checkpoints(tmp_path):
    r = run("examples/finetune.py", "--recipe", "default", "--epochs", "2", "--max-steps", "3", "--out", tmp_path, "--json")
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(summary["history"]) == 2 and 0.0 <= summary["test_accuracy"] <= 1.0
    assert sorted(os.listdir(tmp_path)) == ["epoch1.pt", "epoch2.pt"]
    model = liftswap.load(tmp_path / "epoch2.pt", trust_remote_code=True)  # our own examples.digits factory
    assert len([m for m in model.modules() if isinstance(m, _LiftDownPoolNd)]) == 3


def test_accuracy_and_reconstruction_benchmarks_run(tmp_path):
    run("benchmarks/accuracy.py", "--quick", "--out", tmp_path / "acc.json")
    acc = json.loads((tmp_path / "acc.json").read_text())
    # preserve mode at init is the pretrained net's function: the same accuracy, exactly
    assert acc["summary"]["preserve, at init"] == acc["summary"]["pretrained (MaxPool)"]
    run("benchmarks/reconstruction.py", "--quick", "--steps", "5", "--out", tmp_path)
    rec = json.loads((tmp_path / "reconstruction.json").read_text())["psnr_db"]
    for row in rec.values():
        assert row["LiftPool, all bands"] > 100  # exact up to float rounding
        assert row["LiftPool, all bands"] > row["MaxPool + MaxUnpool"] + 50
    assert (tmp_path / "reconstruction.png").stat().st_size > 0


def test_bands_command(tmp_path):
    import imageio.v3 as iio
    from skimage import data

    iio.imwrite(tmp_path / "cat.png", data.chelsea()[:101, :150])
    run("-m", "liftswap.cli", "bands", tmp_path / "cat.png", "--out", tmp_path / "bands.png")
    grid = iio.imread(tmp_path / "bands.png")
    assert grid.shape == (2 * 51 + 2, 2 * 75 + 2, 3)
    ll = grid[:51, :75].astype(float)
    assert ll.std() > 10  # a picture, not a blank tile

    model = liftswap.patch(liftswap.build_model("examples.digits:small_vgg"))
    liftswap.save(model, tmp_path / "vgg.pt")
    run("-m", "liftswap.cli", "bands", tmp_path / "cat.png", "--out", tmp_path / "inner.png", "--model", tmp_path / "vgg.pt", "--layer", "features.13", "--trust-remote-code")
    inner = iio.imread(tmp_path / "inner.png")
    assert inner.shape == (2 * 8 + 2, 2 * 8 + 2, 3)  # features.13 sees 16x16 maps of the 32x32 input
