"""The command line as a new user runs it (subprocesses), save/load safety, ONNX export parity."""

import json
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import liftswap

pytest.importorskip("onnxruntime")
pytest.importorskip("torchvision")

TESTS = os.path.dirname(__file__)


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "liftswap.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def run_onnx(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]


def test_convert_load_export_onnxruntime(tmp_path):
    torch.manual_seed(0)
    import torchvision

    original = torchvision.models.resnet18()
    torch.save(original.state_dict(), tmp_path / "r18.pth")
    r = cli("convert", "torchvision:resnet18", "--out", "model.pt", "--checkpoint", "r18.pth", "--input-size", 3, 64, 64, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["sites"], summary["replaced"], summary["preserves_function"]) == (2, 1, True)
    assert set(summary["seconds"]) >= {"startup_and_import", "building model", "planning", "surgery", "saving"}

    model = liftswap.load(tmp_path / "model.pt").eval()
    for k, v in original.state_dict().items():  # checkpoint weights carried over exactly
        assert torch.equal(model.state_dict()[k], v), k
    original.eval()

    r = cli("export", "model.pt", "--out", "model.onnx", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [c["shapes"][0] for c in report["checks"]] == [[2, 3, 64, 64], [3, 3, 64, 64], [2, 3, 65, 65]]
    assert report["max_rel_diff"] <= 1e-4
    for shape in [(2, 3, 64, 64), (5, 3, 64, 64), (1, 3, 77, 61)]:  # also shapes the check did not use
        x = torch.randn(shape)
        with torch.no_grad():
            ref, conv = original(x).numpy(), model(x).numpy()
        got = run_onnx(tmp_path / "model.onnx", x)
        assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-4  # the converted model == the original
        assert np.abs(got - conv).max() / np.abs(conv).max() <= 1e-4

    r = cli("inspect", "model.pt", "--emit-recipe", "edit.yaml", cwd=tmp_path)
    assert r.returncode == 0 and "maxpool" in r.stdout and "replace" in r.stdout
    assert liftswap.load_recipe(str(tmp_path / "edit.yaml")).mode == "preserve"


@pytest.mark.parametrize("ext", [".pt", ".safetensors", "timm-style"])
def test_checkpoint_formats(tmp_path, ext):
    from models import ReusedPool

    torch.manual_seed(1)
    net = ReusedPool()
    state = net.state_dict()
    if ext == ".safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(state, path)
    elif ext == ".pt":
        path = tmp_path / "w.pt"
        torch.save({f"module.{k}": v for k, v in state.items()}, path)  # a DDP checkpoint
    else:
        path = tmp_path / "w.pth"
        torch.save({"state_dict": state, "epoch": 3, "arch": "reused"}, path)
    r = cli("convert", "models:ReusedPool", "--out", "m.pt", "--checkpoint", path, "--input-size", 3, 32, 32, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with pytest.raises(liftswap.LiftswapError, match="names the model factory 'models:ReusedPool'.*trust_remote_code=True"):
        liftswap.load(tmp_path / "m.pt")  # a file never makes liftswap import or call what it names
    loaded = liftswap.load(tmp_path / "m.pt", trust_remote_code=True)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """The bad inputs, written once for all cases (each case checks it writes nothing here)."""
    import torchvision

    tmp_path = tmp_path_factory.mktemp("bad")
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    (tmp_path / "corrupt.pth").write_bytes(random.Random(0).randbytes(2000))
    whole = (tmp_path / "r34.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "typo.yaml").write_text("version: 1\nlayer:\n  kernal_size: 5\n")
    (tmp_path / "nomatch.yaml").write_text("rules:\n  - match: 'layer9.*'\n    action: skip\n")
    return tmp_path


BAD = [
    (["convert", "resnet9000", "--out", "o.pt"], "unknown model 'resnet9000'"),
    (["convert", "torchvision:nonet", "--out", "o.pt"], "unknown model 'torchvision:nonet'"),
    (["convert", "torchvision:resnet18", "--out", "o.pt", "--checkpoint", "missing.pth"], "checkpoint not found: missing.pth"),
    (["convert", "torchvision:resnet18", "--out", "o.pt", "--checkpoint", "corrupt.pth"], "cannot read checkpoint corrupt.pth"),
    (["convert", "torchvision:resnet18", "--out", "o.pt", "--checkpoint", "r34.pth"], "another architecture"),
    (["convert", "torchvision:resnet18", "--out", "o.pt", "--checkpoint", "truncated.pth"], "cannot read checkpoint truncated.pth"),
    (["convert", "torchvision:resnet18", "--out", "o.pt", "--recipe", "typo.yaml"], "unknown key 'layer.kernal_size'"),
    (["convert", "torchvision:resnet18", "--out", "o.pt", "--recipe", "nomatch.yaml"], "rule 1 (match: 'layer9.*') matches no pooling site"),
    (["convert", "torchvision:resnet18", "--out", "o.pt", "--recipe", "nofile.yaml"], "recipe file not found: nofile.yaml"),
    (["export", "missing.pt", "--out", "o.onnx"], "file not found: missing.pt"),
    (["export", "corrupt.pth", "--out", "o.onnx"], "cannot read corrupt.pth"),
    (["export", "r34.pth", "--out", "o.onnx"], "r34.pth is not a liftswap file"),
    (["inspect", "corrupt.pth"], "cannot read corrupt.pth"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a[:2]) + f" {i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_exit_2_no_output(bad_files, cli_here, args, message):
    tmp_path = bad_files
    before = set(os.listdir(tmp_path))
    r = cli_here(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert set(os.listdir(tmp_path)) == before  # no output file, no temporary left behind


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_load_refuses_a_file_that_carries_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = {"format": "liftswap", "version": 1, "recipe": {}, "plan": {}, "state_dict": {}, "x": _Evil()}
    with open("evil.pt", "wb") as f:
        pickle.dump(payload, f)
    torch.save(payload, "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(liftswap.LiftswapError, match=f"refused to load {name}: it carries code"):
            liftswap.load(name)
    assert not os.path.exists("pwned")


def test_load_applies_the_stored_plan_without_running_the_model(tmp_path):
    """load checks the stored plan's modules against the model and applies it: no forward runs."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 2, 1))
    converted = liftswap.patch(net, example_inputs=torch.randn(2, 3, 15, 15))
    liftswap.save(converted, tmp_path / "m.pt")
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 2, 1))
    calls = []
    fresh.register_forward_pre_hook(lambda m, args: calls.append(1))
    loaded = liftswap.load(tmp_path / "m.pt", model=fresh)
    assert calls == []
    x = torch.randn(1, 3, 15, 15)
    torch.testing.assert_close(loaded(x), converted(x))
    other = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2, 2), nn.Conv2d(4, 2, 1))  # same weights, another pool
    with pytest.raises(liftswap.LiftswapError, match=r"converted from another model.*1: kernel_size \(2, 2\), the plan says \(3, 3\)"):
        liftswap.load(tmp_path / "m.pt", model=other)


def test_load_checks_format_version_and_model(tmp_path):
    from models import MixedFunctional, ReusedPool

    net = ReusedPool()
    converted = liftswap.patch(net, example_inputs=torch.randn(2, 3, 16, 16))
    liftswap.save(converted, tmp_path / "m.pt")
    with pytest.raises(liftswap.LiftswapError, match="records no model source; pass the unconverted model"):
        liftswap.load(tmp_path / "m.pt")
    fresh = liftswap.load(tmp_path / "m.pt", model=ReusedPool())
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(fresh(x), converted(x))
    with pytest.raises(liftswap.LiftswapError, match="converted from another model"):
        liftswap.load(tmp_path / "m.pt", model=MixedFunctional())
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(liftswap.LiftswapError, match="format version 99; this liftswap reads version 1"):
        liftswap.load(tmp_path / "future.pt", model=ReusedPool())
    with pytest.raises(liftswap.LiftswapError, match="save\\(\\) takes a model converted by liftswap.patch"):
        liftswap.save(ReusedPool(), tmp_path / "x.pt")


def test_onnx_export_on_a_torch_without_its_exporter_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.export, "Dim", lambda name, **kwargs: None)  # as torch 2.4-2.5 have it
    converted = liftswap.patch(torch.nn.MaxPool2d(2), example_inputs=torch.randn(1, 2, 8, 8))
    with pytest.raises(liftswap.LiftswapError, match=r"ONNX export needs torch >= 2\.6 .*upgrade torch"):
        liftswap.export_onnx(converted, tmp_path / "m.onnx", example_inputs=torch.randn(1, 2, 8, 8))
    assert os.listdir(tmp_path) == []


def test_onnx_export_refuses_sizes_the_exporter_fixed(tmp_path, monkeypatch):
    """An exporter that silently fixes sizes asked to be dynamic (torch 2.8 does for ceil_mode
    pools), simulated here by dropping dynamic_shapes: a clear error, and no file."""
    real_export = torch.export.export

    def specialising_export(*args, dynamic_shapes=None, **kwargs):
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.export, "export", specialising_export)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2)).eval()
    x = torch.randn(2, 3, 16, 16)
    converted = liftswap.patch(model, example_inputs=x)
    with pytest.raises(liftswap.LiftswapError, match=r"fixed axes .*input 0 axis 0 = 2, input 0 axis 2 = 16, input 0 axis 3 = 16"):
        liftswap.export_onnx(converted, tmp_path / "m.onnx", example_inputs=x)
    assert os.listdir(tmp_path) == []
    report = liftswap.export_onnx(converted, tmp_path / "m.onnx", example_inputs=x, dynamic_batch=False, dynamic_spatial=False)
    assert report.max_rel_diff <= 1e-4 and os.listdir(tmp_path) == ["m.onnx"]


@pytest.mark.parametrize("name", ["SegNetModules", "SegNetFunctional", "Net1d", "Net3d", "CeilStems"])
def test_onnx_export_parity(tmp_path, name):
    import models

    model = getattr(models, name)().eval()
    x = {"Net1d": torch.randn(2, 2, 40), "Net3d": torch.randn(2, 3, 4, 16, 16)}.get(name, torch.randn(2, 3, 32, 32))
    recipe = "segnet" if name.startswith("SegNet") else None
    converted = liftswap.patch(model, recipe=recipe, example_inputs=x).eval()
    report = liftswap.export_onnx(converted, tmp_path / "m.onnx")
    assert len(report.checks) == 3 and report.max_rel_diff <= 1e-4
    assert report.checks[2]["shapes"][0][2:] == [d + 1 if d % 2 == 0 else d + 2 for d in x.shape[2:]]
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_float16_export_for_gpu_serving(tmp_path, cli_here):
    """dtype float16: inputs, weights, computation and outputs in half precision (standard ops),
    checked in onnxruntime against the float32 model at three shapes (the odd one included)."""
    import onnx

    import models

    converted = liftswap.patch(models.SegNetModules().eval(), recipe="segnet", example_inputs=torch.randn(2, 3, 32, 32)).eval()
    report = liftswap.export_onnx(converted, tmp_path / "m.onnx", dtype="float16")
    assert len(report.checks) == 3 and report.max_rel_diff <= 1e-2  # float16's 11-bit mantissa through the net
    assert report.max_rel_diff > 1e-6  # and it did compute in half precision
    graph = onnx.load(tmp_path / "m.onnx").graph
    half = onnx.TensorProto.FLOAT16
    assert graph.input[0].type.tensor_type.elem_type == half and graph.output[0].type.tensor_type.elem_type == half
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in graph.initializer)
    assert all(n.domain in ("", "ai.onnx") for n in graph.node)  # standard ops only
    bad = cli_here("export", "x.pt", "--out", "m2.onnx", "--dtype", "float64", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --dtype must be float32 or float16, got 'float64'"


def test_corrupt_files_always_give_a_liftswap_error(tmp_path):
    """Random and truncated bytes fail in many ways inside torch.load; users see one kind of error."""
    path = tmp_path / "x.pt"
    liftswap.save(liftswap.patch(torch.nn.MaxPool2d(2), example_inputs=torch.randn(1, 1, 4, 4)), path)
    whole = path.read_bytes()
    samples = [random.Random(i).randbytes(random.Random(i).randint(1, 3000)) for i in range(60)]
    samples += [whole[:n] for n in (10, len(whole) // 3, len(whole) - 5)]
    for data in samples:
        path.write_bytes(data)
        with pytest.raises(liftswap.LiftswapError, match="cannot read|not a liftswap file|refused"):
            liftswap.load(path)


@pytest.mark.parametrize(
    "name,kwargs,size",
    [("maxxvitv2_nano_rw_256", {"img_size": 128}, 128), ("resnet18", {"in_chans": 1, "global_pool": "max", "num_classes": 7}, 64)],
)
def test_timm_models_reload_as_built(tmp_path, name, kwargs, size):
    """A timm model built with non-default arguments reloads from its file alone, identically."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    x = torch.randn(2, kwargs.get("in_chans", 3), size, size)
    converted = liftswap.patch(timm.create_model(name, **kwargs).eval(), example_inputs=x).eval()
    assert converted.liftswap_plan.replaced
    liftswap.save(converted, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["source"]["kwargs"].items() >= kwargs.items()
    with torch.no_grad():
        assert torch.equal(liftswap.load(tmp_path / "m.pt").eval()(x), converted(x))
