"""Planning: what to do with each pooling site and downsampling convolution, changing nothing (SPEC 5, 6, 6.1)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import LiftswapError, short_repr
from ..limits import MAX_INPUT_ELEMENTS, check_data_size
from ..recipe import Recipe, RecipeError, load_recipe
from .callers import unreachable
from .inputs import example_inputs_for
from .convs import conv_macs_added
from .sites import CONV_KINDS, Site, discover

__all__ = ["Plan", "plan", "example_inputs_for", "refuse_wrapped"]

# What each mode puts in a replaced site, by the kind of op (init, output).
_MODE_LAYER = {
    ("preserve", "haar_direct"): ("haar", "gated"),
    ("preserve", "prepool"): ("lazy", "gated"),
    ("preserve", "pair"): ("haar", "LL"),
    ("paper", "haar_direct"): ("paper", "sum"),
    ("paper", "prepool"): ("paper", "sum"),
    ("paper", "pair"): ("paper", "sum"),
}


@dataclass
class Plan:
    """Every pooling site (and, with ``targets: [.., convs]``, downsampling convolution) of a model
    and what :func:`liftswap.patch` does with it.

    ``str(plan)`` is a table; ``plan.sites`` the rows (:class:`Site`).
    """

    sites: list[Site]
    recipe: Recipe
    input_shapes: list[tuple]
    notes: list[str] = field(default_factory=list)

    @property
    def replaced(self) -> list[Site]:
        return [s for s in self.sites if s.action == "replace"]

    @property
    def skipped(self) -> list[Site]:
        return [s for s in self.sites if s.action == "skip"]

    @property
    def preserves_function(self) -> bool:
        """True when the converted model computes the original function at init."""
        return all(s.preserves for s in self.replaced)

    def skip_reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            key = s.reason.split(" (")[0].split(":")[0]
            out[key] = out.get(key, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {
            "recipe": self.recipe.to_dict(),
            "input_shapes": [list(s) for s in self.input_shapes],
            "sites": [s.to_dict() for s in self.sites],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Any) -> "Plan":
        """A plan from :meth:`to_dict`'s output, read from a file: checked as untrusted data."""
        check_data_size(d, "stored plan")
        if not isinstance(d, dict) or set(d) - {"recipe", "input_shapes", "sites", "notes"}:
            raise LiftswapError("stored plan: not a mapping of recipe, input_shapes, sites and notes")
        sites, shapes, notes = d.get("sites"), d.get("input_shapes"), d.get("notes", [])
        if not isinstance(sites, list) or not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise LiftswapError("stored plan: 'sites' and 'notes' must be lists")
        if not isinstance(shapes, list) or not shapes or not all(_input_shape_ok(s) for s in shapes):
            raise LiftswapError(f"stored plan: bad input_shapes {short_repr(shapes)} (lists of positive sizes, batch first)")
        return cls(
            sites=[Site.from_dict(s) for s in sites],
            recipe=load_recipe(d.get("recipe")),
            input_shapes=[tuple(s) for s in shapes],
            notes=list(notes),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def table(self) -> "Any":
        """The plan as a rich Table: one row per site."""
        from rich.table import Table

        targets = "" if self.recipe.targets == ["pools"] else f", targets {'+'.join(self.recipe.targets)}"
        t = Table(title=f"liftswap plan ({self.recipe.mode} mode{targets}): {len(self.replaced)} replaced, {len(self.skipped)} skipped")
        for col in ("site", "op", "k/s/p", "in -> out", "action", "what / why"):
            t.add_column(col, overflow="fold")
        for s in self.sites:
            what = s.reason
            if s.action == "replace" and s.kind in CONV_KINDS:
                lay = s.layer
                if s.kind == "convT":
                    what = f"transposed conv per phase + inverse lift {lay['init']} k{lay['kernel_size']}"
                elif lay["placement"] == "after":
                    what = f"conv at stride 1 + lift {lay['init']}/{lay['output']} k{lay['kernel_size']}"
                else:
                    what = f"lift {lay['init']} k{lay['kernel_size']} + conv per band"
                if s.macs_added is not None:
                    what += f", +{_macs(s.macs_added)} MACs"
                if not s.preserves:
                    what += " (changes function)"
            elif s.action == "replace" and s.kind != "unpool":
                lay = s.layer
                what = f"{'stride-1 pool + ' if lay.get('prepool') else ''}lift {lay['init']}/{lay['output']} k{lay['kernel_size']}"
                if s.pair:
                    what += f", pairs with {s.pair}"
                if not s.preserves:
                    what += " (changes function)"
            geometry = "/".join(_fmt(v) for v in (s.kernel_size, s.stride, s.padding)) if s.kernel_size else ""
            if s.ceil_mode:
                geometry += " ceil"
            if s.groups != 1:
                geometry += f" g{s.groups}"
            shapes = f"{_fmt(s.input_shape[2:]) if s.input_shape else '?'} -> {_fmt(s.output_shape[2:]) if s.output_shape else '?'}"
            t.add_row(s.name or "(model)", s.op, geometry, shapes, s.action + (" (train)" if s.train_only else ""), what)
        return t

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=140, color_system=None)
        with console.capture() as cap:
            console.print(self.table())
            for n in self.notes:
                console.print(f"note: {n}")
        return cap.get()


def _input_shape_ok(shape: Any) -> bool:
    if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 8:
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in shape):
        return False
    return shape[0] <= 64 and math.prod(shape[1:]) <= MAX_INPUT_ELEMENTS


def _macs(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _fmt(v) -> str:
    if v is None:
        return ""
    v = tuple(v)
    return str(v[0]) if len(set(v)) == 1 else "x".join(str(i) for i in v)


WRAPPERS = ("DistributedDataParallel", "DataParallel", "FullyShardedDataParallel", "OptimizedModule")


def refuse_wrapped(model: nn.Module, what: str) -> None:
    """Refuse DDP / FSDP / torch.compile wrappers: surgery must see the real module tree."""
    names = [c.__name__ for c in type(model).__mro__]
    hit = next((w for w in WRAPPERS if w in names), None)
    if hit is None and any(n.startswith("FSDP") for n in names):
        hit = "FSDP"
    if hit is not None:
        inner = "model._orig_mod" if hit == "OptimizedModule" else "model.module"
        raise TypeError(
            f"{what} got a {hit}-wrapped model; {what} the inner module ({inner}) first, then wrap the result"
        )


def _conv_skip(s: Site) -> str | None:
    """Why a convolution site cannot be replaced whatever the recipe says, or None."""
    if s.unsupported:
        return s.unsupported
    if s.padding is None:
        return "padding='same': the padding depends on the input size and has no stride-2 form"
    if s.padding_mode != "zeros":
        return f"padding_mode={s.padding_mode!r}: only zero-padded convolutions are converted"
    if any(v != 1 for v in s.dilation):
        return f"dilation {_fmt(s.dilation)}: only undilated convolutions are converted"
    if s.kind == "convT" and s.output_shape is not None and s.output_shape[1] % s.groups:
        return "output channels not a multiple of groups"
    return None


def _structural_skip(s: Site) -> str | None:
    """Why a site cannot be replaced whatever the recipe says, or None."""
    if s.kind in CONV_KINDS:
        why = _conv_skip(s)
        if why:
            return why
    if s.kind == "adaptive":
        return "adaptive or global pool: output size fixed, not a stride-2 pool"
    if s.kind == "unpool":
        return None if s.pair else "max_unpool whose indices do not come from a recorded pool"
    if s.input_shape is None or s.channels is None:
        return "input is not a tensor of shape (N, C, ...)"
    if len(s.input_shape) != s.dims + 2:
        return f"unbatched input of shape {s.input_shape}"
    if s.return_indices and (s.pair is None or s.indices_used):
        return "indices used by something other than one max_unpool"
    if all(v == 1 for v in s.stride):
        return "stride 1 everywhere (same-size pooling)"
    if any(v not in (1, 2) for v in s.stride):
        return f"stride {_fmt(s.stride)}: LiftPool halves an axis, only strides 1 and 2 are converted"
    if s.kind == "convT":
        return None  # its input is the small side; the lift runs over its output
    small = [s.input_shape[2 + a] for a, v in enumerate(s.stride) if v == 2 and s.input_shape[2 + a] < 2]
    if small:
        return f"input smaller than 2 along a stride-2 axis ({_fmt(s.input_shape[2:])})"
    return None


def _shape_of_replacement(s: Site) -> str:
    """haar_direct | prepool | pair: which replacement geometry the site needs."""
    if s.pair is not None:
        return "pair"
    direct = (
        s.kind == "avg"
        and s.divisor_override is None
        and all(p == 0 for p in s.padding)
        and all((k == 2 and st == 2) or (k == 1 and st == 1) for k, st in zip(s.kernel_size, s.stride))
    )
    return "haar_direct" if direct else "prepool"


def _skip_unreachable(model: nn.Module, sites: list[Site]) -> None:
    """Skip (with the reason) replaced sites whose caller cannot be rewritten, and their partners:
    the plan is final, apply makes exactly what it says."""
    failed = unreachable(model, sites)
    by_name = {s.name: s for s in sites}
    for name, why in failed.items():
        s = by_name[name]
        s.action, s.reason, s.layer = "skip", why, {}
        if s.pair and by_name[s.pair].action == "replace":
            p = by_name[s.pair]
            p.action, p.reason, p.layer = "skip", f"its partner {s.name} is not reachable", {}


def _resolve(sites: list[Site], recipe: Recipe) -> None:
    used = [False] * len(recipe.rules)
    by_name = {s.name: s for s in sites}
    for s in sites:
        if s.kind == "unpool":
            continue  # follows its pool
        layer = recipe.layer.model_dump()
        action = None
        for i, rule in enumerate(recipe.rules):
            if rule.matches(s.name):
                used[i] = True
                action = rule.action or action
                if rule.layer is not None:
                    layer.update({k: v for k, v in rule.layer.model_dump().items() if v is not None})
        why = _structural_skip(s)
        if why is None and s.same_padding and action != "replace":
            what = "conv" if s.kind in CONV_KINDS else "pool"
            why = f"timm 'same'-padding {what} (padding depends on the input size); a rule with action: replace converts it"
        if why is None and action == "skip":
            why = "skipped by the recipe"
        if why is not None:
            s.action, s.reason, s.layer = "skip", why, {}
            continue
        if s.kind in CONV_KINDS:
            _resolve_conv(s, layer, recipe.mode)
            continue
        geometry = _shape_of_replacement(s)
        init, output = _MODE_LAYER[(recipe.mode, geometry)]
        init = layer["init"] or init
        output = layer["output"] or output
        s.action = "replace"
        s.layer = {**layer, "init": init, "output": output, "prepool": recipe.mode == "preserve" and geometry == "prepool"}
        s.preserves = recipe.mode == "preserve" and geometry != "pair" and output in ("LL", "gated") and (
            init == ("haar" if geometry == "haar_direct" else "lazy")
        )
        s.reason = "pooled with indices feeding a max_unpool: unpooling by indices cannot be preserved" if geometry == "pair" else ""
    for s in sites:
        if s.kind == "unpool" and s.pair is not None:
            pool = by_name.get(s.pair)
            if pool is not None and pool.action == "replace":
                s.action, s.preserves, s.layer = "replace", False, dict(pool.layer)
                s.reason = f"LiftUpPool sharing {pool.name}'s LiftDownPool"
            else:
                s.action, s.reason = "skip", f"its pool {s.pair} is not replaced"
    for i, hit in enumerate(used):
        if not hit:
            what = " or ".join({"pools": "pooling site", "convs": "convolution site"}[t] for t in recipe.targets)
            raise RecipeError(f"recipe rule {i + 1} (match: {recipe.rules[i].match!r}) matches no {what}")


def _resolve_conv(s: Site, layer: dict, mode: str) -> None:
    """A replaced convolution: polyphase (preserve) or stride 1 + lift (paper); transposed: polyphase."""
    placement = "after" if mode == "paper" and s.kind == "conv" else "polyphase"
    init = layer["init"] or ("lazy" if mode == "preserve" else "paper")
    # polyphase reads every band, so the output mode does not apply; LL is what its up pool undoes
    output = (layer["output"] or "sum") if placement == "after" else "LL"
    s.action = "replace"
    s.layer = {**layer, "init": init, "output": output, "placement": placement}
    s.preserves = placement == "polyphase" and init == "lazy"
    s.macs_added = conv_macs_added(s, placement, layer["kernel_size"])
    s.reason = ""


def _keep_targets(sites: list[Site], targets: list[str]) -> list[Site]:
    return [s for s in sites if ("convs" if s.kind in CONV_KINDS else "pools") in targets]


def plan(model: nn.Module, recipe: Any = None, example_inputs: Any = None) -> Plan:
    """Find every pooling site of ``model`` and decide what to do with it; changes nothing.

    Args:
        model: the model to convert (not wrapped in DDP / FSDP / torch.compile).
        recipe: None (default recipe), a YAML path or shipped recipe name, a dict, or a Recipe.
        example_inputs: a tensor or tuple of the model's positional inputs; by default random
            inputs of the model's declared input size (timm's ``pretrained_cfg``) with batch 2.

    Example:
        >>> import liftswap
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1))
        >>> p = liftswap.plan(net, example_inputs=torch.randn(2, 3, 32, 32))
        >>> [(s.name, s.action) for s in p.sites]
        [('1', 'replace'), ('2', 'skip')]
    """
    refuse_wrapped(model, "plan")
    recipe = load_recipe(recipe)
    inputs = example_inputs_for(model, example_inputs)
    sites, notes = discover(model, inputs)
    sites = _keep_targets(sites, recipe.targets)
    _resolve(sites, recipe)
    _skip_unreachable(model, sites)
    return Plan(sites=sites, recipe=recipe, input_shapes=[tuple(t.shape) for t in inputs], notes=notes)
