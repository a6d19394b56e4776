"""Downsampling convolutions (SPEC 6.1): polyphase replacements against PyTorch's own convolutions."""

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import liftswap
from liftswap.recipe import RecipeError
from liftswap.surgery import convs
from liftswap.surgery.convs import LiftConvReplacement, LiftConvTransposeReplacement

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
DOWN = {1: liftswap.LiftDownPool1d, 2: liftswap.LiftDownPool2d, 3: liftswap.LiftDownPool3d}
UP = {1: liftswap.LiftUpPool1d, 2: liftswap.LiftUpPool2d, 3: liftswap.LiftUpPool3d}
CONVS = {"targets": ["pools", "convs"]}


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial lifting weights (P and U no longer zero), as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".predict." in name or ".update." in name or name.startswith(("predict.", "update.")):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


@pytest.fixture(params=["per band", "interleaved"])
def form(request, monkeypatch):
    """Both forms of the polyphase convolution: a conv per band, or one over the bands in their
    polyphase places (each chosen by a rule; this fixture runs one form for every convolution)."""
    monkeypatch.setattr(convs, "_FORM", request.param)
    return request.param


def _polyphase(conv, dims, axes=None, init="lazy"):
    axes = tuple(a - dims for a, s in enumerate(conv.stride) if s == 2)
    lift = DOWN[dims](conv.in_channels, init=init, output="LL", return_details=True, axes=axes).double()
    new = LiftConvReplacement(conv, lift, "polyphase")
    assert new.interleave == (convs._FORM == "interleaved")
    return new


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_polyphase_equals_strided_conv(dims, form):
    """At lazy init the lift + a conv per band is the stride-2 convolution: every kernel size,
    padding, groups (dense, grouped, depthwise), bias or not, odd and even sizes, float64."""
    torch.manual_seed(dims)
    sizes = (1, 2, 5, 6, 7, 8) if dims < 3 else (3, 6, 7)
    kernels = (1, 2, 3, 4, 5, 7) if dims < 3 else (1, 2, 3, 4)
    for k, p, groups, bias in itertools.product(kernels, (0, 1, 3), (1, 2, 8), (True, False)):
        conv = CONV[dims](8, 8, k, stride=2, padding=p, groups=groups, bias=bias).double()
        new = _polyphase(conv, dims)
        for n in sizes:
            if n + 2 * p < k:
                continue  # the convolution itself refuses this size
            x = torch.randn((2, 8) + (n,) * dims, dtype=torch.float64)
            want = conv(x)
            got = new(x)
            assert got.shape == want.shape, (k, p, groups, n)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"k={k} p={p} groups={groups} n={n}")


@pytest.mark.parametrize("stride,shape", [((2, 1), (2, 4, 9, 7)), ((1, 2), (2, 4, 6, 11))])
def test_anisotropic_stride_lifts_one_axis(stride, shape, form):
    conv = nn.Conv2d(4, 6, (3, 4), stride=stride, padding=(1, 2)).double()
    new = _polyphase(conv, 2)
    assert new.lift.axes == ((-2,) if stride == (2, 1) else (-1,))
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(new(x), conv(x), rtol=1e-12, atol=1e-12)


def test_3d_video_stride_lifts_hw_only(form):
    conv = nn.Conv3d(3, 5, 3, stride=(1, 2, 2), padding=1).double()
    new = _polyphase(conv, 3)
    assert new.lift.axes == (-2, -1)
    x = torch.randn(2, 3, 5, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(new(x), conv(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "conv,interleaved",
    [
        (nn.Conv2d(64, 64, 3, stride=2, padding=1), True),  # 2-D, both axes: the bands come in place
        (nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64), True),  # depthwise too
        (nn.Conv2d(256, 512, 1, stride=2), False),  # a 1x1 shortcut reads one band
        (nn.Conv2d(64, 64, 3, stride=(2, 1), padding=1), False),  # one axis: four tensors, 64 channels
        (nn.Conv1d(3, 16, 7, stride=2, padding=3), True),  # few channels: the copy is cheap
        (nn.Conv1d(32, 32, 3, stride=2, padding=1), False),
        (nn.Conv3d(8, 8, 3, stride=(1, 2, 2), padding=1, groups=2), False),
    ],
)
def test_form_rule(conv, interleaved):
    """Which form each convolution runs in by default (surgery/convs.py's rule), and that it is the
    original convolution at lazy init."""
    dims = conv.weight.dim() - 2
    axes = tuple(a - dims for a, s in enumerate(conv.stride) if s == 2)
    lift = DOWN[dims](conv.in_channels, init="lazy", output="LL", return_details=True, axes=axes)
    new = LiftConvReplacement(conv, lift, "polyphase")
    assert new.interleave == interleaved
    x = torch.randn((2, conv.in_channels) + (9, 8, 7)[:dims])
    torch.testing.assert_close(new(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dims", [1, 2])
def test_learned_lift_feeds_the_conv_the_bands_in_place_of_the_phases(dims, form):
    """With trained P and U, the replacement is the original stride-2 convolution applied to the
    lazily re-interleaved bands (an independent reference: PyTorch's strided conv)."""
    torch.manual_seed(3)
    conv = CONV[dims](4, 6, 3, stride=2, padding=1).double()
    new = _randomise(_polyphase(conv, dims))
    for n in (8, 9):
        x = torch.randn((2, 4) + (n,) * dims, dtype=torch.float64)
        # the replacement zero-pads as the convolution does (k = 3: one each side), then lifts
        xp = F.pad(x, [1, 1] * dims)
        y, details = new.lift(xp)
        bands = [y, *details.unbind(1)]
        z = xp.new_zeros(xp.shape[:2] + tuple(2 * s for s in y.shape[2:]))
        for b, band in enumerate(bands):  # lazy inverse: band b holds phase b (one bit per axis, W lowest)
            index = [...] + [slice((b >> (dims - 1 - a)) & 1, None, 2) for a in range(dims)]
            z[tuple(index)] = band
        want = F.conv1d(z, conv.weight, conv.bias, 2) if dims == 1 else F.conv2d(z, conv.weight, conv.bias, 2)
        out = conv(x).shape[2:]
        want = want[(..., *[slice(0, o) for o in out])]
        torch.testing.assert_close(new(x), want, rtol=1e-10, atol=1e-10)
        assert not torch.allclose(new(x), conv(x), atol=1e-3)  # the learned lift does change the function


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_transposed_conv_equals_pytorch(dims):
    """Transposed conv per phase + lazy inverse lift == ConvTranspose: kernel sizes, padding,
    output_padding, groups, output_size, odd and even outputs."""
    torch.manual_seed(10 + dims)
    kernels = (1, 2, 3, 4, 5) if dims < 3 else (2, 3)
    for k, p, op, groups in itertools.product(kernels, (0, 1, 2), (0, 1), (1, 4)):
        if op >= 2 or p > k:
            continue
        try:
            ref = CONVT[dims](8, 4, k, stride=2, padding=p, output_padding=op, groups=groups).double()
            x = torch.randn((2, 8) + (5,) * dims, dtype=torch.float64)
            want = ref(x)
        except RuntimeError:
            continue  # PyTorch refuses this combination (output_padding >= padding + stride...)
        down = DOWN[dims](4, init="lazy", output="LL", return_details=True).double()
        new = LiftConvTransposeReplacement(ref, UP[dims](down))
        for n in (4, 5):
            x = torch.randn((2, 8) + (n,) * dims, dtype=torch.float64)
            torch.testing.assert_close(new(x), ref(x), rtol=1e-12, atol=1e-12, msg=f"k={k} p={p} op={op} n={n}")
            size = ref(x).shape[2:]
            torch.testing.assert_close(new(x, output_size=size), ref(x, output_size=size), rtol=1e-12, atol=1e-12)


def test_transposed_conv_output_size_out_of_range_is_a_value_error():
    ref = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1)
    down = liftswap.LiftDownPool2d(4, init="lazy", output="LL", return_details=True)
    new = LiftConvTransposeReplacement(ref, liftswap.LiftUpPool2d(down))
    with pytest.raises(ValueError, match="valid sizes range from 9 to 10"):
        new(torch.randn(1, 4, 5, 5), output_size=(12, 12))


class _Net(nn.Module):
    """Every kind of downsampling: stem conv, depthwise, anisotropic, 1x1 shortcut, k=4 p=1, a pool
    and a decoder of transposed convs (one called with output_size)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8)
        self.tall = nn.Conv2d(8, 8, (3, 1), (2, 1), (1, 0))
        self.short = nn.Conv2d(8, 16, 1, 2, bias=False)
        self.k4 = nn.Conv2d(16, 16, 4, 2, 1)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.up1 = nn.ConvTranspose2d(16, 8, 4, 2, 1)
        self.up2 = nn.ConvTranspose2d(8, 4, 3, 2, 1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = self.short(self.tall(self.dw(h)))
        h = self.pool(self.k4(h))
        h = self.up1(h)
        return self.up2(h, output_size=(2 * h.shape[-2], 2 * h.shape[-1]))


def test_patch_preserves_function_shapes_and_state_dict():
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(2, 3, 75, 61)
    lifted = liftswap.patch(net, CONVS, x).eval()
    p = lifted.liftswap_plan
    assert sorted(s.op for s in p.replaced) == sorted(
        ["Conv2d"] * 5 + ["MaxPool2d"] + ["ConvTranspose2d"] * 2
    )
    assert p.preserves_function
    before, after = net.state_dict(), lifted.state_dict()
    for key, value in before.items():  # every original weight under its own key, same value
        assert torch.equal(after[key], value), key
    sites = {s.name for s in p.replaced}
    for key in set(after) - set(before):  # new keys only under the replaced sites
        assert key.split(".")[0] in sites, key
    with torch.no_grad():
        for shape in [(2, 3, 75, 61), (1, 3, 64, 64), (3, 3, 33, 47)]:
            x = torch.randn(shape)
            want = net(x)
            got = lifted(x)
            assert got.shape == want.shape
            assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_float64_recheck_of_a_deep_random_net():
    torch.manual_seed(1)
    layers = []
    for i in range(6):
        layers += [nn.Conv2d(8 if i else 3, 8, 3, 2 if i % 2 == 0 else 1, 1), nn.ReLU()]
    net = nn.Sequential(*layers).double().eval()
    x = torch.randn(2, 3, 67, 67, dtype=torch.float64)
    lifted = liftswap.patch(net, {"targets": ["convs"]}, x).eval()
    assert len(lifted.liftswap_plan.replaced) == 3
    torch.testing.assert_close(lifted(x), net(x), rtol=1e-12, atol=1e-12)


def test_default_targets_leave_convolutions_alone():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.MaxPool2d(2))
    x = torch.randn(2, 3, 32, 32)
    assert [s.op for s in liftswap.plan(net, None, x).sites] == ["MaxPool2d"]
    assert [s.op for s in liftswap.plan(net, {"targets": ["convs"]}, x).sites] == ["Conv2d"]
    assert [s.op for s in liftswap.plan(net, CONVS, x).sites] == ["Conv2d", "MaxPool2d"]


def _old_weight_norm(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the hook-based form, deprecated but still used
        return nn.utils.weight_norm(module)


class _OwnForward(nn.Conv2d):
    def forward(self, x):  # a weight transform (as timm's StdConv2d): not a plain convolution
        return F.conv2d(x, self.weight / self.weight.norm(), self.bias, self.stride, self.padding)


@pytest.mark.parametrize(
    "module,reason",
    [
        (nn.Conv2d(3, 3, 3, 2, 2, dilation=2), "dilation 2"),
        (nn.Conv2d(3, 3, 3, 2, 1, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.Conv2d(3, 3, 3, 3, 1), "stride 3"),
        (_old_weight_norm(nn.Conv2d(3, 3, 3, 2, 1)), "forward hooks"),
        (nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 3, 3, 2, 1)), "parametrized"),
        (_OwnForward(3, 3, 3, 2, 1), "_OwnForward has its own forward"),
    ],
    ids=["dilation", "reflect", "stride3", "weight_norm", "parametrize", "own-forward"],
)
def test_unconvertible_convolutions_are_skipped_with_a_reason(module, reason):
    net = nn.Sequential(nn.Identity(), module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = liftswap.plan(net, {"targets": ["convs"]}, torch.randn(2, 3, 16, 16))
    (site,) = p.sites
    assert site.action == "skip" and reason in site.reason


def test_conv_called_twice_gets_a_layer_per_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(4, 4, 3, 2, 1)

        def forward(self, x):
            return self.down(self.down(x))

    torch.manual_seed(0)
    net = Twice().eval()
    x = torch.randn(2, 4, 30, 30)
    lifted = liftswap.patch(net, {"targets": ["convs"]}, x)
    assert sorted(s.name for s in lifted.liftswap_plan.replaced) == ["down_0", "down_1"]
    assert lifted.down_0.weight is lifted.down_1.weight  # one shared weight, as in the original
    torch.testing.assert_close(lifted(x), net(x), rtol=1e-5, atol=1e-5)


def test_paper_mode_conv_at_stride_1_then_lift_trains_and_reports_macs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.ReLU(), nn.Conv2d(1, 2, 4, 2, 1), nn.ConvTranspose2d(2, 2, 4, 2, 1))
    x = torch.randn(2, 1, 8, 8)
    p = liftswap.plan(net, {"mode": "paper", "targets": ["convs"]}, x)
    # Conv2d(1, 1, 3, 2, 1) on 8x8: stride 1 adds (64 - 16) outputs x 9 taps = 432 multiply-adds;
    # the lift runs over 64 values along 2 axes at (3 + 2) each = 640.
    assert p.sites[0].macs_added == 432 + 640
    assert not p.preserves_function
    lifted = liftswap.patch(net, {"mode": "paper", "targets": ["convs"]}, x).train()
    for n in (8, 9, 13):
        xx = torch.randn(2, 1, n, n)
        assert lifted(xx).shape == net(xx).shape
    loss = lifted(x).square().mean() + liftswap.regularization_loss(lifted)
    loss.backward()
    lifts = [m for m in lifted.modules() if isinstance(m, liftswap.LiftDownPool2d)]
    assert len(lifts) == 3
    ran = [m for m in lifts if m.last_regularization is not None]
    assert len(ran) == 2  # the transposed conv's lift is only inverted: it has no forward cost terms
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lifted.named_parameters() if "update.pw" in n or "predict.pw" in n)


@pytest.mark.parametrize(
    "targets,message",
    [([], "at least one"), (["pools", "pools"], "twice"), (["conv"], "targets.0")],
)
def test_recipe_targets_are_validated(targets, message):
    with pytest.raises(RecipeError, match=message):
        liftswap.load_recipe({"targets": targets})


def test_rule_matching_no_conv_site_names_the_targets():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1))
    with pytest.raises(RecipeError, match="matches no convolution site"):
        liftswap.plan(net, {"targets": ["convs"], "rules": [{"match": "nothing"}]}, torch.randn(1, 3, 8, 8))


def test_gradcheck_polyphase_and_transposed(form):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, 2, 1).double()
    new = _randomise(_polyphase(conv, 2))
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(new, (x,))
    ref = nn.ConvTranspose2d(2, 3, 4, 2, 1).double()
    down = DOWN[2](3, init="lazy", output="LL", return_details=True).double()
    up = _randomise(LiftConvTransposeReplacement(ref, UP[2](down)))
    assert torch.autograd.gradcheck(up, (torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True),))


def test_save_load_round_trip_keeps_targets(tmp_path):
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(2, 3, 40, 40)
    lifted = _randomise(liftswap.patch(net, CONVS, x)).eval()
    path = tmp_path / "m.pt"
    liftswap.save(lifted, path)
    back = liftswap.load(path, model=_Net()).eval()
    assert back.liftswap_plan.recipe.targets == ["pools", "convs"]
    torch.testing.assert_close(back(x), lifted(x), rtol=0, atol=0)


def test_cli_targets(cli_here, tmp_path):
    bad = cli_here("inspect", "resnet18", "--targets", "pools,conv", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --targets") and bad.stderr.count("\n") == 1
    ok = cli_here("inspect", "resnet18", "--targets", "convs", "--input-size", "3", "64", "64", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    import json

    sites = json.loads(ok.stdout)["sites"]
    assert {s["op"] for s in sites} == {"Conv2d"} and len(sites) == 7
    assert all(s["action"] == "replace" and s["groups"] == 1 for s in sites)


def test_shipped_conv_recipes_convert_their_families():
    import timm

    for recipe, name, replaced in (("mobilenetv2", "mobilenetv2_050", 5), ("resnet50_full", "resnet18", 8)):
        net = timm.create_model(name).eval()
        x = torch.randn(2, 3, 64, 64)
        p = liftswap.plan(net, recipe, x)
        assert len(p.replaced) == replaced and p.preserves_function, (recipe, p.skip_reasons())


def test_onnx_export_of_lifted_convolutions(tmp_path):
    """Dynamic batch and spatial sizes survive export: onnxruntime at the export shape, another
    batch and an odd size against PyTorch (the checks inside export_onnx)."""
    pytest.importorskip("onnxruntime")
    if not hasattr(torch.export.Dim, "DYNAMIC"):
        pytest.skip("ONNX export needs torch >= 2.6 (export_onnx says so)")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 4, 2, 1, groups=8), nn.ConvTranspose2d(8, 4, 4, 2, 1)).eval()
    x = torch.randn(2, 3, 32, 32)
    lifted = _randomise(liftswap.patch(net, {"targets": ["convs"]}, x)).eval()
    report = liftswap.export_onnx(lifted, tmp_path / "m.onnx", x)
    assert len(report.checks) == 3
    assert max(c["max_rel_diff"] for c in report.checks) <= 1e-4
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert ops <= {
        "Conv", "ConvTranspose", "Slice", "Add", "Sub", "Mul", "Pad", "Relu", "Tanh", "Concat", "Reshape",
        "Shape", "Gather", "Unsqueeze", "Squeeze", "Split", "Mod", "Div", "Constant", "Identity", "Expand",
        "Cast", "Range", "ScatterND", "Transpose", "ConstantOfShape", "Max", "Min", "Where", "Equal",
    }, ops


@pytest.mark.slow
def test_compiled_training_step_equals_eager():
    """torch.compile of a conv-lifted model: output, regulariser and gradients as in eager."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 4, 2, 1, groups=8), nn.ConvTranspose2d(8, 4, 4, 2, 1))
    x = torch.randn(2, 3, 33, 31)
    lifted = _randomise(liftswap.patch(net, {"targets": ["convs"]}, x)).train()
    y = lifted(x)
    reg = liftswap.regularization_loss(lifted)
    (y.square().mean() + reg).backward()
    grads = {n: p.grad.clone() for n, p in lifted.named_parameters()}
    lifted.zero_grad()
    y2 = torch.compile(lifted)(x)
    reg2 = liftswap.regularization_loss(lifted)
    (y2.square().mean() + reg2).backward()
    torch.testing.assert_close(y2, y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reg2, reg, rtol=1e-5, atol=1e-7)
    for n, p in lifted.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
