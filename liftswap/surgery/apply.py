"""Applying a plan: swap module sites in place, rewrite the forward of the smallest module that
makes a call which cannot be swapped (functional pools, a pool module called several times).

The original module tree is kept: modules keep their class, attributes, hooks and state_dict
keys. A rewritten module keeps its identity too; only its ``forward`` is replaced, by the code
torch.fx generates for it (one version per train/eval mode when the two differ).
"""

from __future__ import annotations

import copy
import types
import warnings
from typing import Any

import torch
from torch import fx, nn

from ..errors import LiftswapError, short_repr
from ..layers.regularization import clear_regularization
from .callers import match_nodes, sub, trace_caller
from .convs import build_conv_replacement
from .plan import Plan, plan, refuse_wrapped
from .replacements import build_pool_replacement, build_unpool_replacement
from .sites import CONV_KINDS, Site, module_mismatch

__all__ = ["patch", "apply"]


def _attr_of(site: Site) -> str:
    return site.name[len(site.caller) + 1 :] if site.caller else site.name


def _bind_forward(caller: nn.Module, gms: dict[bool, fx.GraphModule]) -> None:
    fns = {}
    for training, gm in gms.items():
        gm.graph.lint()
        gm.recompile()
        fns[training] = type(gm).forward
        # constants torch.fx lifted out of the code (e.g. tensors built in forward)
        for node in gm.graph.nodes:
            if node.op == "get_attr" and not _has_path(caller, node.target):
                setattr(caller, node.target, getattr(gm, node.target))
    if gms[True].code == gms[False].code:
        caller.forward = types.MethodType(fns[True], caller)
    else:
        train_fn, eval_fn = fns[True], fns[False]

        def forward(self, *args, **kwargs):
            return (train_fn if self.training else eval_fn)(self, *args, **kwargs)

        caller.forward = types.MethodType(forward, caller)


def _has_path(m: nn.Module, path: str) -> bool:
    try:
        for part in path.split("."):
            m = getattr(m, part)
        return True
    except AttributeError:
        return False


def _rewrite_node(node: fx.Node, site: Site, attr: str) -> None:
    args, kwargs = list(node.args), dict(node.kwargs)
    x = args[0] if args else kwargs.get("input")
    node.op, node.target = "call_module", attr
    if site.kind in CONV_KINDS:
        return  # the replacement takes the module's own arguments (ConvTranspose: output_size)
    if site.kind == "unpool":
        indices = args[1] if len(args) > 1 else kwargs.get("indices")
        pos = 2 if site.module is not None else 5  # MaxUnpool.forward(x, idx, output_size) / F.max_unpool(x, idx, k, s, p, output_size)
        output_size = args[pos] if len(args) > pos else kwargs.get("output_size")
        node.args, node.kwargs = (x, indices), ({"output_size": output_size} if output_size is not None else {})
    else:
        node.args, node.kwargs = (x,), {}


def _apply_plan(model: nn.Module, the_plan: Plan) -> nn.Module:
    """Install the plan's replacements in ``model`` (in place) and return it; the plan is not changed.

    Raises LiftswapError where the model does not make a call the plan rewrites (a plan made
    for another model).
    """
    new: dict[str, nn.Module] = {}
    for s in the_plan.replaced:
        if s.kind in CONV_KINDS:  # takes over the module's weight and bias
            new[s.name] = build_conv_replacement(s, model.get_submodule(s.module))
        elif s.kind != "unpool":
            new[s.name] = build_pool_replacement(s, s.layer, the_plan.recipe.mode)
    for s in the_plan.replaced:
        if s.kind == "unpool":
            new[s.name] = build_unpool_replacement(s, new[s.pair])
    for m in new.values():  # the model's mode: a model converted for inference is not put in training
        m.train(model.training)
    p = next(model.parameters(), None)
    if p is not None:
        for m in new.values():
            m.to(device=p.device)
            if p.dtype == torch.float64:  # a float64 model (a precision check) gets float64 lifts
                m.to(dtype=p.dtype)
    # Module sites called once: swap the module wherever it is registered.
    for s in the_plan.replaced:
        if not s.rewrite and s.module == "":  # the model is the pool itself: the result is new
            new[s.name].liftswap_source = getattr(model, "liftswap_source", None)
            model = new[s.name]
        elif not s.rewrite:
            old = model.get_submodule(s.module)
            for parent in model.modules():
                for key, child in list(parent._modules.items()):
                    if child is old:
                        parent._modules[key] = new[s.name]
    # Everything else: rewrite the forward of the module whose code makes the call.
    groups: dict[str, list[Site]] = {}
    for s in the_plan.replaced:
        if s.rewrite:
            groups.setdefault(s.caller, []).append(s)
    for caller_path, sites in groups.items():
        caller = sub(model, caller_path)
        try:
            gms = trace_caller(caller)
        except Exception as e:  # noqa: BLE001 - the plan said this caller traces
            raise LiftswapError(f"the plan does not fit this model: it rewrites {caller_path or 'the model'!r}, which torch.fx "
                                f"cannot trace here ({type(e).__name__})") from None  # fmt: skip
        found = set()
        for gm in gms.values():
            nodes = match_nodes(gm, sites, model)
            found |= set(nodes)
            for s in sites:
                if s.name in nodes:
                    gm.add_submodule(_attr_of(s), new[s.name])
                    _rewrite_node(nodes[s.name], s, _attr_of(s))
        missing = [s.name for s in sites if s.name not in found]
        if missing:
            raise LiftswapError(f"the plan does not fit this model: it rewrites calls this model does not make ({', '.join(missing[:3])})")
        for s in sites:
            caller.add_module(_attr_of(s), new[s.name])
        _bind_forward(caller, gms)
    # Forget regulariser values of layers a forward does not run (train-only heads, say).
    if the_plan.replaced and not any(h is clear_regularization_hook for h in model._forward_pre_hooks.values()):
        model.register_forward_pre_hook(clear_regularization_hook)
    model.liftswap_plan = the_plan
    return model


def clear_regularization_hook(module: nn.Module, args: Any) -> None:
    clear_regularization(module)


def patch(model: nn.Module, recipe: Any = None, example_inputs: Any = None, inplace: bool = False) -> nn.Module:
    """Convert the pooling sites of ``model`` to LiftPool and return the converted model.

    Args:
        model: a timm, torchvision or own model; not wrapped in DDP / FSDP / torch.compile.
        recipe: None (default ``preserve`` recipe), a YAML path or shipped recipe name, a dict
            with the YAML's structure, or a :class:`liftswap.Recipe`.
        example_inputs: a tensor or tuple of the model's positional inputs (default: the model's
            declared input size with batch 2).
        inplace: change ``model`` itself instead of a deep copy.

    The plan (with the resolved recipe) is kept as ``model.liftswap_plan``.

    Example:
        >>> import torch, liftswap
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(8, 4, 1)).eval()
        >>> x = torch.randn(2, 3, 31, 31)
        >>> lifted = liftswap.patch(net, example_inputs=x)
        >>> torch.allclose(lifted(x), net(x), atol=1e-6)  # preserve mode: same function at init
        True
        >>> type(lifted[1]).__name__
        'LiftPoolReplacement'
    """
    refuse_wrapped(model, "patch")
    the_plan = plan(model, recipe, example_inputs)
    return apply(model, the_plan, inplace=inplace)


def apply(model: nn.Module, the_plan: Plan, inplace: bool = False) -> nn.Module:
    """Apply a plan made by :func:`liftswap.plan` for this model (``patch`` = ``plan`` + ``apply``).

    The plan is applied as it stands (it is not changed); a plan that does not fit the model
    (made for another model) is refused with a LiftswapError.
    """
    refuse_wrapped(model, "apply")
    problem = next((p for p in (module_mismatch(model, s) for s in the_plan.replaced) if p), "")
    if problem:
        raise LiftswapError(f"the plan does not fit this model ({short_repr(problem, 200)}): it was made for another one")
    if not inplace:
        model = copy.deepcopy(model)
    if not the_plan.replaced:
        warnings.warn(
            f"liftswap.patch changed nothing: {len(the_plan.sites)} pooling site(s) found, none replaced "
            f"({', '.join(sorted(the_plan.skip_reasons())) or 'no pooling sites'})",
            stacklevel=3,
        )
        model.liftswap_plan = the_plan
        return model
    return _apply_plan(model, the_plan)
