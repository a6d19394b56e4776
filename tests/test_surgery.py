"""plan / patch on models written to exercise every kind of site (SPEC 5, 6)."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import liftswap
from liftswap.layers.lift_pool import _LiftDownPoolNd
from liftswap.surgery.replacements import pool_output_size

from models import (
    CeilStems,
    MixedFunctional,
    Net1d,
    Net3d,
    PoolUnpool,
    ReusedPool,
    SegNetFunctional,
    SegNetModules,
    Untraceable,
)
from test_layers import rel_err as layer_rel_err


def flat(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def rel_err(a, b):
    return layer_rel_err(flat(a), flat(b), floor=1e-12)


def shapes(out):
    return [tuple(t.shape) for t in flat(out)]


def assert_state_kept(original, converted, the_plan):
    before, after = original.state_dict(), converted.state_dict()
    for k, v in before.items():
        assert k in after, f"lost {k}"
        assert torch.equal(after[k], v), f"changed {k}"
    roots = tuple(s.name + "." for s in the_plan.replaced)
    new = [k for k in after if k not in before]
    assert new and all(k.startswith(roots) for k in new), [k for k in new if not k.startswith(roots)]


def lift_layers(model):
    return [m for m in model.modules() if isinstance(m, _LiftDownPoolNd)]


def check_preserved(model, x, sizes):
    model.eval()
    converted = liftswap.patch(model, example_inputs=x)
    converted.eval()
    with torch.no_grad():
        for size in sizes:
            xi = torch.randn(x.shape[:2] + size)
            a, b = model(xi), converted(xi)
            assert shapes(a) == shapes(b), size
            assert rel_err(b, a) <= 1e-4, (size, rel_err(b, a))
    return converted


# ---------------------------------------------------------------- site discovery


def test_reused_module_is_one_site_per_call():
    model = ReusedPool()
    p = liftswap.plan(model, example_inputs=torch.randn(2, 3, 32, 32))
    assert [s.name for s in p.sites] == ["pool_0", "pool_1", "pool_2"]
    assert [s.channels for s in p.sites] == [4, 8, 16]
    assert [s.input_shape[2:] for s in p.sites] == [(32, 32), (16, 16), (8, 8)]
    converted = check_preserved(model, torch.randn(2, 3, 32, 32), [(32, 32), (21, 17), (5, 9)])
    layers = [converted.pool_0, converted.pool_1, converted.pool_2]
    assert len({id(m) for m in layers}) == 3 and [m.lift.channels for m in layers] == [4, 8, 16]
    assert isinstance(converted.pool, nn.MaxPool2d)  # the original module stays in the tree
    assert_state_kept(model, converted, converted.liftswap_plan)


def test_functional_sites_named_by_caller_function_and_order():
    model = MixedFunctional()
    p = liftswap.plan(model, example_inputs=torch.randn(2, 3, 32, 32))
    got = [(s.name, s.op, s.action) for s in p.sites]
    assert got == [
        ("avg_pool2d_0", "F.avg_pool2d", "replace"),
        ("max_pool2d_0", "F.max_pool2d", "skip"),
        ("max_pool2d_1", "torch.max_pool2d", "replace"),
        ("avg_pool2d_1", "F.avg_pool2d", "replace"),
        ("adaptive_avg_pool2d_0", "F.adaptive_avg_pool2d", "skip"),
    ]
    assert p.sites[1].reason.startswith("stride 1 everywhere")
    assert p.sites[4].reason.startswith("adaptive")
    assert p.sites[0].layer["init"] == "haar" and not p.sites[0].layer["prepool"]
    assert p.sites[2].layer["init"] == "lazy" and p.sites[2].layer["prepool"]
    converted = check_preserved(model, torch.randn(2, 3, 32, 32), [(32, 32), (33, 29), (9, 8)])
    assert type(converted).__name__ == "MixedFunctional"  # same class, forward rewritten on the instance
    assert_state_kept(model, converted, converted.liftswap_plan)


def test_plan_changes_nothing_and_prints_a_table():
    model = MixedFunctional()
    before = copy.deepcopy(model.state_dict())
    p = liftswap.plan(model, example_inputs=torch.randn(2, 3, 16, 16))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not hasattr(model, "liftswap_plan")
    text = str(p)
    assert "avg_pool2d_0" in text and "stride 1 everywhere" in text and "3 replaced, 2 skipped" in text


def test_ceil_mode_padding_dilation_divisor_keep_shape_and_function():
    model = CeilStems()
    p = liftswap.plan(model, example_inputs=torch.randn(2, 3, 16, 16))
    assert all(s.action == "replace" for s in p.sites), [(s.name, s.reason) for s in p.sites]
    assert p.sites[9].layer["prepool"] and p.sites[6].layer["init"] == "haar"
    sizes = [(h, w) for h in range(5, 14) for w in (5, 6, 7)] + [(32, 32), (31, 30)]
    check_preserved(model, torch.randn(2, 3, 16, 16), sizes)


def test_ceil_mode_pool_output_size_matches_pytorch():
    for size in range(3, 30):
        for k, s, p, d, ceil in [(3, 2, 0, 1, True), (2, 2, 1, 1, True), (3, 2, 1, 2, False), (5, 2, 2, 1, True)]:
            ref = F.max_pool1d(torch.zeros(1, 1, size), k, s, p, d, ceil_mode=ceil).shape[-1]
            assert pool_output_size(size, k, s, p, d, ceil) == ref


def test_anisotropic_stride_lifts_only_stride2_axes():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d((2, 1), (2, 1)), nn.AvgPool2d((1, 2)))
    converted = check_preserved(model, torch.randn(2, 3, 8, 32), [(8, 32), (7, 33)])
    assert converted[1].lift.axes == (-2,) and converted[2].lift.axes == (-1,)
    assert converted[1].lift.gamma.shape == (1, 4)


def test_1d_and_3d_models():
    check_preserved(Net1d(), torch.randn(2, 2, 40), [(40,), (37,), (6,)])
    converted = check_preserved(Net3d(), torch.randn(2, 3, 4, 16, 16), [(4, 16, 16), (5, 15, 9)])
    assert converted.frame_pool.lift.axes == (-2, -1)
    assert converted.pool.lift.axes == (-3, -2, -1) and converted.pool.lift.init == "haar"


# ---------------------------------------------------------------- pairs


def test_pool_unpool_pair_reconstructs_exactly():
    for dims, size in ((1, (16,)), (2, (12, 8)), (3, (4, 6, 8))):
        model = PoolUnpool(dims)
        x = torch.randn((2, 3) + size)
        p = liftswap.plan(model, example_inputs=x)
        assert [(s.name, s.action, s.pair) for s in p.sites] == [("pool", "replace", "unpool"), ("unpool", "replace", "pool")]
        assert not p.preserves_function and "cannot be preserved" in p.sites[0].reason
        converted = liftswap.patch(model, example_inputs=x)
        assert converted.unpool.up.down is converted.pool.lift  # shared, not copied
        torch.testing.assert_close(converted(x), x, rtol=1e-5, atol=1e-5)  # max_unpool would be sparse
        odd = torch.randn((1, 3) + tuple(s + 1 for s in size))
        assert converted(odd).shape == model(odd).shape


@pytest.mark.parametrize("cls", [SegNetFunctional, SegNetModules])
def test_segnet_pairs(cls):
    model = cls()
    x = torch.randn(2, 3, 32, 32)
    p = liftswap.plan(model, example_inputs=x)
    pools = [s for s in p.sites if s.kind == "max"]
    unpools = [s for s in p.sites if s.kind == "unpool"]
    assert len(pools) == 2 and len(unpools) == 2
    assert {s.pair for s in pools} == {s.name for s in unpools}
    assert all(s.action == "replace" for s in p.sites)
    converted = liftswap.patch(model, recipe="segnet", example_inputs=x)
    for size in ((32, 32), (20, 24), (33, 31)):
        xi = torch.randn(1, 3, *size)
        assert converted(xi).shape == model(xi).shape
    layers = lift_layers(converted)
    assert len(layers) == 2 and all(m.init == "paper" and m.output == "LL" for m in layers)
    assert_state_kept(model, converted, converted.liftswap_plan)


def test_unpool_reused_module_gets_one_layer_per_call():
    converted = liftswap.patch(SegNetModules(), example_inputs=torch.randn(2, 3, 16, 16))
    names = [s.name for s in converted.liftswap_plan.sites]
    assert names == ["pool1", "pool2", "unpool_0", "unpool_1"]
    assert converted.unpool_0.up.down is converted.pool2.lift  # the inner pair unpools first
    assert converted.unpool_1.up.down is converted.pool1.lift


# ---------------------------------------------------------------- fallbacks and guards


def test_untraceable_model_swaps_modules_and_reports_functional_sites():
    model = Untraceable()
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 16, 16)
    converted = liftswap.patch(model, example_inputs=x)
    p = converted.liftswap_plan
    assert [(s.name, s.action) for s in p.sites] == [("pool", "replace"), ("avg_pool2d_0", "skip")]
    assert p.sites[1].reason.startswith("not reachable: the forward of 'the model' cannot be traced by torch.fx")
    model.eval(), converted.eval()
    torch.testing.assert_close(converted(x), model(x))


def test_plan_is_final_and_apply_does_not_change_it():
    """Reachability is decided when planning: apply makes exactly the plan, and leaves it as it was."""
    model = Untraceable()
    x = torch.randn(2, 3, 16, 16)
    p = liftswap.plan(model, example_inputs=x)
    assert [(s.name, s.action) for s in p.sites] == [("pool", "replace"), ("avg_pool2d_0", "skip")]
    assert p.sites[1].reason.startswith("not reachable")
    before = [s.to_dict() for s in p.sites]
    converted = liftswap.apply(model, p)
    assert [s.to_dict() for s in p.sites] == before and converted.liftswap_plan is p


def test_apply_refuses_a_plan_made_for_another_model():
    from models import MixedFunctional, ReusedPool

    p = liftswap.plan(ReusedPool(), example_inputs=torch.randn(2, 3, 16, 16))  # rewrites ReusedPool's forward
    with pytest.raises(liftswap.LiftswapError, match="the plan does not fit this model"):
        liftswap.apply(MixedFunctional(), p)


def test_train_only_sites_and_modes_are_kept():
    class AuxNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            x = self.bn(self.c(x))
            if self.training:  # an auxiliary head only in training
                return F.max_pool2d(x, 2), F.avg_pool2d(x, 2)
            return F.avg_pool2d(x, 2)

    model = AuxNet()
    stats = model.bn.running_mean.clone()
    converted = liftswap.patch(model, example_inputs=torch.randn(2, 3, 8, 8))
    assert torch.equal(model.bn.running_mean, stats)  # discovery left no trace
    sites = {s.name: s for s in converted.liftswap_plan.sites}
    assert sites["max_pool2d_0"].train_only and sites["max_pool2d_0"].action == "replace"
    assert not sites["avg_pool2d_0"].train_only
    x = torch.randn(2, 3, 10, 10)
    model.eval(), converted.eval()
    torch.testing.assert_close(converted(x), model(x))
    model.train(), converted.train()
    for a, b in zip(converted(x), model(x)):
        torch.testing.assert_close(a, b)
    assert len([m for m in lift_layers(converted) if m.last_regularization is not None]) == 2
    converted.eval()(x)
    assert liftswap.regularization_loss(converted).item() == 0.0


def test_refuses_wrapped_models_and_warns_when_nothing_changed():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2))
    with pytest.raises(TypeError, match=r"OptimizedModule-wrapped model; patch the inner module \(model._orig_mod\) first"):
        liftswap.patch(torch.compile(net), example_inputs=torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match=r"DataParallel-wrapped model; patch the inner module \(model.module\)"):
        liftswap.patch(nn.DataParallel(net), example_inputs=torch.randn(1, 3, 8, 8))
    with pytest.warns(UserWarning, match="changed nothing: 1 pooling site.*adaptive"):
        liftswap.patch(nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1)), example_inputs=torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="example_inputs is needed: Sequential declares no input size and is not a 2-D image"):
        liftswap.plan(nn.Sequential(nn.Conv1d(3, 4, 1), nn.MaxPool1d(2)))


def test_default_inputs_are_the_command_lines():
    """One rule for liftswap.plan and the CLI: a 2-D image model without a declared size plans at 224 px."""
    torchvision = pytest.importorskip("torchvision")
    from liftswap.surgery.inputs import default_input_size

    p = liftswap.plan(torchvision.models.resnet18())
    assert p.input_shapes == [(2, 3, 224, 224)] and [s.name for s in p.replaced] == ["maxpool"]
    assert default_input_size(nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2))) == (1, 224, 224)
    assert default_input_size(liftswap.build_model("torchvision:inception_v3", init_weights=False)) == (3, 299, 299)


def test_inplace_and_copy():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2))
    out = liftswap.patch(net, example_inputs=torch.randn(1, 3, 8, 8))
    assert out is not net and isinstance(net[1], nn.MaxPool2d)
    same = liftswap.patch(net, example_inputs=torch.randn(1, 3, 8, 8), inplace=True)
    assert same is net and type(net[1]).__name__ == "LiftPoolReplacement"


@pytest.mark.parametrize("training", [True, False])
def test_new_layers_take_the_models_mode(training):
    """A model converted in eval mode (for inference) gets its new layers in eval mode: they keep
    no regulariser and compute no costs; in training mode they train."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.MaxPool2d(2)).train(training)
    out = liftswap.patch(net, {"targets": ["pools", "convs"]}, example_inputs=torch.randn(1, 3, 16, 16))
    layers = [m for m in out.modules() if getattr(m, "_liftswap_layer", False)]
    assert len(layers) >= 4 and all(m.training == training for m in layers)
    out(torch.randn(2, 3, 16, 16))
    assert all((m.last_regularization is not None) == training for m in lift_layers(out))


def test_small_inputs_and_strides_are_skipped_with_reasons():
    net = nn.Sequential(nn.MaxPool2d(3, 3), nn.Conv2d(3, 3, 1), nn.AvgPool2d(2), nn.MaxPool2d(2, ceil_mode=True))
    p = liftswap.plan(net, example_inputs=torch.randn(1, 3, 6, 6))
    reasons = [s.reason.split(":")[0] if s.action == "skip" else "replace" for s in p.sites]
    assert reasons == ["stride 3", "replace", "input smaller than 2 along a stride-2 axis (1)"]


# ---------------------------------------------------------------- paper mode, training


def test_paper_mode_trains_with_regulariser_reaching_every_layer():
    model = SegNetFunctional()
    x = torch.randn(2, 3, 16, 16)
    converted = liftswap.patch(nn.Sequential(ReusedPool(), nn.Flatten()), recipe="paper", example_inputs=x)
    layers = lift_layers(converted)
    assert len(layers) == 3 and all(m.init == "paper" and m.output == "sum" for m in layers)
    converted.train()
    loss = converted(x).square().mean()
    reg = liftswap.regularization_loss(converted)
    assert reg.item() > 0
    reg.backward()
    for m in layers:  # the regulariser alone reaches P and U of every new layer
        assert m.predict.dw.weight.grad.abs().sum() > 0 and m.update.pw.weight.grad.abs().sum() > 0
    opt = torch.optim.SGD(converted.parameters(), lr=0.1)
    before = [p.detach().clone() for p in layers[0].parameters()]
    (converted(x).square().mean() + liftswap.regularization_loss(converted)).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, layers[0].parameters()))
    del model, loss


# ---------------------------------------------------------------- recipes


def test_recipe_rules_precedence_and_errors():
    net = ReusedPool()
    x = torch.randn(2, 3, 16, 16)
    recipe = {
        "layer": {"kernel_size": 5},
        "rules": [
            {"match": "pool_*", "layer": {"kernel_size": 7, "lambda_p": 0.5}},
            {"match": "re:pool_(1|2)", "action": "skip"},
            {"match": "pool_2", "action": "replace"},
        ],
    }
    p = liftswap.plan(net, recipe=recipe, example_inputs=x)
    assert [s.action for s in p.sites] == ["replace", "skip", "replace"]
    assert p.sites[0].layer["kernel_size"] == 7 and p.sites[0].layer["lambda_p"] == 0.5
    assert p.sites[0].layer["lambda_u"] == 0.01
    assert p.sites[1].reason == "skipped by the recipe"
    with pytest.raises(liftswap.RecipeError, match=r"recipe rule 1 \(match: 'layer4.\*'\) matches no pooling site"):
        liftswap.plan(net, recipe={"rules": [{"match": "layer4.*", "action": "skip"}]}, example_inputs=x)
    with pytest.raises(liftswap.RecipeError, match="unknown key 'rules.0.acton'"):
        liftswap.plan(net, recipe={"rules": [{"match": "x", "acton": "skip"}]}, example_inputs=x)
    with pytest.raises(liftswap.RecipeError, match="bad value for 'layer.kernel_size': must be an odd"):
        liftswap.load_recipe({"layer": {"kernel_size": 4}})
    with pytest.raises(liftswap.RecipeError, match="bad value for 'mode'"):
        liftswap.load_recipe({"mode": "fast"})
    with pytest.raises(liftswap.RecipeError, match="recipe file not found: nope.yaml"):
        liftswap.load_recipe("nope.yaml")


def test_shipped_recipes_load_and_yaml_round_trips(tmp_path):
    for name in ("default", "paper", "resnet50", "vgg13", "segnet"):
        r = liftswap.load_recipe(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(r.to_yaml())
        assert liftswap.load_recipe(str(path)) == r
    assert liftswap.load_recipe("default") == liftswap.Recipe()
    converted = liftswap.patch(ReusedPool(), recipe=liftswap.load_recipe("paper"), example_inputs=torch.randn(1, 3, 8, 8))
    assert converted.liftswap_plan.recipe.mode == "paper"


def test_patched_model_traces_compiles_and_deepcopies():
    model = MixedFunctional().eval()
    x = torch.randn(2, 3, 16, 16)
    converted = liftswap.patch(model, example_inputs=x).eval()
    gm = torch.fx.symbolic_trace(converted)
    torch.testing.assert_close(gm(x), converted(x))
    twin = copy.deepcopy(converted)
    with torch.no_grad():
        twin.c1.weight.add_(1.0)
    assert not torch.allclose(twin(x), converted(x))  # the copy's forward uses the copy's weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.compile(converted, backend="eager")
        torch.testing.assert_close(compiled(x), converted(x))


def test_timm_same_pools_skipped_unless_a_rule_asks():
    layers = pytest.importorskip("timm.layers.pool2d_same")
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        layers.MaxPool2dSame(3, 2),
        layers.AvgPool2dSame(3, 2),
        layers.AvgPool2dSame(2, 2),
    )
    x = torch.randn(2, 3, 32, 32)
    p = liftswap.plan(model, example_inputs=x)
    assert all(s.action == "skip" and "'same'-padding" in s.reason for s in p.sites)
    recipe = {"rules": [{"match": "*", "action": "replace"}]}
    model.eval()
    converted = liftswap.patch(model, recipe=recipe, example_inputs=x).eval()
    assert [s.action for s in converted.liftswap_plan.sites] == ["replace"] * 3
    with torch.no_grad():
        for size in ((32, 32), (31, 29), (7, 10), (5, 5)):
            xi = torch.randn(1, 3, *size)
            a, b = model(xi), converted(xi)
            assert a.shape == b.shape and rel_err(b, a) <= 1e-4, size
