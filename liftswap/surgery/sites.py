"""Finding sites: record every pooling call and every downsampling convolution that running the model makes.

A site is one call of a pooling op (SPEC 5) or of a ``Conv``/``ConvTranspose`` module whose stride
is not 1 (SPEC 6.1; the plan keeps them only when the recipe targets ``convs``). Sites are found by running the example inputs
once in eval mode and once in train mode (buffers and RNG restored), with forward hooks on every
module to know which module's code is executing, and a ``TorchFunctionMode`` that sees the
functional pooling calls. Recording what runs, rather than tracing the whole model with
torch.fx, also finds pools inside modules that tracers treat as leaves, pools in forwards that
torch.fx cannot trace, and train-only pools (auxiliary heads). torch.fx is used later, only on
the smallest module whose own code makes a call that must be rewritten.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import LiftswapError, short_repr

__all__ = ["Site", "discover", "POOL_MODULES", "UNPOOL_MODULES", "CONV_MODULES", "CONVT_MODULES", "CONV_KINDS"]

POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
ADAPTIVE_MODULES = (
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
UNPOOL_MODULES = (nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)
CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVT_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
CONV_KINDS = ("conv", "convT")

# Positional parameter names of the functional pooling ops, after the input.
_MAX_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
_UNPOOL_ARGS = ("indices", "kernel_size", "stride", "padding", "output_size")


def _function_family(func: Any) -> tuple[str, str, int] | None:
    """(kind, label, dims) of a pooling function, or None for anything else."""
    name = getattr(func, "__name__", None)
    module = getattr(func, "__module__", None) or ""
    if not isinstance(name, str) or not (module.startswith("torch") or module == ""):
        return None
    prefix = "torch." if module == "torch" else "F."
    for kind, stem in (
        ("max", "max_pool"),
        ("avg", "avg_pool"),
        ("unpool", "max_unpool"),
        ("adaptive", "adaptive_max_pool"),
        ("adaptive", "adaptive_avg_pool"),
    ):
        for dims in (1, 2, 3):
            if name in (f"{stem}{dims}d", f"{stem}{dims}d_with_indices"):
                return kind, prefix + name, dims
    return None


def _tuple(v: Any, dims: int) -> tuple:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        v = tuple(int(i) for i in v)
        return v if len(v) == dims else (v * dims if len(v) == 1 else v)
    return (int(v),) * dims


@dataclass
class Site:
    """One call of a pooling op, what was seen when it ran, and what the plan does with it."""

    name: str
    op: str  # "MaxPool2d", "F.max_pool2d", "torch.avg_pool1d", "MaxUnpool2d", "AdaptiveAvgPool2d", "Conv2d", ...
    kind: str  # "max" | "avg" | "unpool" | "adaptive" | "conv" | "convT"
    dims: int
    kernel_size: Optional[tuple] = None
    stride: Optional[tuple] = None
    padding: Optional[tuple] = None
    dilation: Optional[tuple] = None
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None
    return_indices: bool = False
    input_shape: Optional[tuple] = None
    output_shape: Optional[tuple] = None
    caller: str = ""  # module whose forward code makes the call ("" = the root model)
    module: Optional[str] = None  # the pool module, for module sites
    call_index: int = 0  # order among the caller's calls of the same module or function
    same_padding: bool = False  # timm's *Same pools: padding computed from the input size
    train_only: bool = False
    pair: Optional[str] = None  # the unpool fed by this pool's indices, or the pool feeding this unpool
    indices_used: bool = False  # the indices went somewhere (a max_unpool or not)
    rewrite: bool = False  # needs the caller's forward rewritten (functional, or module called several times)
    action: str = "skip"
    reason: str = ""
    preserves: bool = True  # the replacement keeps the function at init
    layer: dict = field(default_factory=dict)  # resolved LiftDownPool settings when replaced
    # convolutions (SPEC 6.1)
    groups: int = 1
    padding_mode: str = "zeros"
    output_padding: Optional[tuple] = None  # ConvTranspose
    unsupported: str = ""  # why this module cannot be converted whatever the recipe says
    macs_added: Optional[int] = None  # multiply-adds per sample the replacement adds (plan)

    @property
    def channels(self) -> int | None:
        return None if self.input_shape is None or len(self.input_shape) < 2 else self.input_shape[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "Site":
        """A site from :meth:`to_dict`'s output, read from a file: every field is checked."""
        if not isinstance(d, dict):
            raise LiftswapError(f"stored plan: a site is {type(d).__name__}, not a mapping")
        known = {f.name: f.type for f in fields(cls)}
        unknown = [k for k in d if k not in known]
        if unknown:
            raise LiftswapError(f"stored plan: unknown site field {short_repr(unknown[0])}")
        missing = [k for k in ("name", "op", "kind", "dims") if k not in d]
        if missing:
            raise LiftswapError(f"stored plan: a site has no {missing[0]!r}")
        d = dict(d)
        for k, v in d.items():
            if not _field_ok(known[k], v):
                raise LiftswapError(f"stored plan: bad value for site field {k!r}: {short_repr(v)}")
            if isinstance(v, list):
                d[k] = tuple(v)
        if d.get("action", "skip") not in ("replace", "skip"):
            raise LiftswapError(f"stored plan: bad value for site field 'action': {short_repr(d['action'])}")
        return cls(**d)


def _field_ok(typ: str, v: Any) -> bool:
    """Whether ``v`` is a valid value of a :class:`Site` field annotated ``typ`` (plain data only)."""
    optional = typ.startswith("Optional[")
    base = typ[len("Optional[") : -1] if optional else typ
    if v is None:
        return optional
    if base == "str":
        return isinstance(v, str) and len(v) <= 1000
    if base == "bool":
        return isinstance(v, bool)
    if base == "int":
        return _count(v)
    if base == "tuple":
        return isinstance(v, (list, tuple)) and len(v) <= 8 and all(_count(i) for i in v)
    if base == "dict":  # the resolved layer settings
        return isinstance(v, dict) and len(v) <= 64 and all(
            isinstance(k, str) and (x is None or isinstance(x, (str, bool, int, float))) and not (isinstance(x, str) and len(x) > 100)
            for k, x in v.items()
        )
    return False


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62


def _module_site_fields(m: nn.Module, dims: int) -> dict:
    if isinstance(m, UNPOOL_MODULES):
        return {
            "kind": "unpool",
            "kernel_size": _tuple(m.kernel_size, dims),
            "stride": _tuple(m.stride, dims),
            "padding": _tuple(m.padding, dims),
        }
    if isinstance(m, ADAPTIVE_MODULES):
        return {"kind": "adaptive"}
    kind = "max" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) else "avg"
    out = {
        "kind": kind,
        "kernel_size": _tuple(m.kernel_size, dims),
        "stride": _tuple(m.stride if m.stride is not None else m.kernel_size, dims),
        "padding": _tuple(m.padding, dims),
        "ceil_mode": bool(m.ceil_mode),
        "same_padding": type(m).__name__.endswith("Same"),
    }
    if kind == "max":
        out["dilation"] = _tuple(m.dilation, dims)
        out["return_indices"] = bool(m.return_indices)
    else:
        out["dilation"] = (1,) * dims
        out["count_include_pad"] = bool(m.count_include_pad)
        out["divisor_override"] = getattr(m, "divisor_override", None)
    return out


def _conv_site_fields(m: nn.Module, hooked: bool) -> dict:
    """A Conv/ConvTranspose module's site fields, and why it cannot be converted when it cannot."""
    base = next(c for c in type(m).__mro__ if c in CONV_MODULES + CONVT_MODULES)
    dims = int(base.__name__[-2])
    padding = m.padding
    if isinstance(padding, str):  # "valid" is zero padding; "same" has no stride-2 form
        padding = None if padding == "same" else (0,) * dims
    same = type(m).__name__.endswith("Same") and base is nn.Conv2d  # timm's Conv2dSame
    unsupported = ""
    if hooked:
        unsupported = "has forward hooks (weight_norm, spectral_norm, ...): its weight is computed at call time"
    elif getattr(m, "parametrizations", None) is not None:
        unsupported = "parametrized weight (torch.nn.utils.parametrize): its weight is computed at call time"
    elif not same and (type(m).forward is not base.forward or type(m)._conv_forward is not base._conv_forward):
        unsupported = f"{type(m).__name__} has its own forward (e.g. weight standardisation); only plain convolutions are converted"
    return {
        "kind": "convT" if base in CONVT_MODULES else "conv",
        "dims": dims,
        "kernel_size": _tuple(m.kernel_size, dims),
        "stride": _tuple(m.stride, dims),
        "padding": None if padding is None else _tuple(padding, dims),
        "dilation": _tuple(m.dilation, dims),
        "groups": int(m.groups),
        "padding_mode": str(m.padding_mode),
        "output_padding": _tuple(m.output_padding, dims) if base in CONVT_MODULES else None,
        "same_padding": same,
        "unsupported": unsupported,
    }


def module_mismatch(model: nn.Module, site: Site) -> str:
    """Why ``model`` does not have the module ``site`` records ('' when it does, or the site is a
    function call): its class and settings must be the ones seen when the plan was made."""
    if site.module is None:
        return ""
    try:
        m = model.get_submodule(site.module) if site.module else model
    except AttributeError:
        return f"{site.name}: no module {site.module!r}"
    if type(m).__name__ != site.op:
        return f"{site.name}: a {type(m).__name__}, the plan says {site.op}"
    if site.kind in ("conv", "convT"):
        if not isinstance(m, CONV_MODULES + CONVT_MODULES):
            return f"{site.name}: not a convolution"
        seen = _conv_site_fields(m, bool(m._forward_pre_hooks or m._forward_hooks))
    elif isinstance(m, POOL_MODULES + UNPOOL_MODULES + ADAPTIVE_MODULES):
        seen = _module_site_fields(m, site.dims)
    else:
        return f"{site.name}: {site.op} is not a pooling module"
    for key, value in seen.items():
        if getattr(site, key) != value:
            return f"{site.name}: {key} {value!r}, the plan says {getattr(site, key)!r}"
    return ""


def _function_site_fields(kind: str, label: str, dims: int, args: tuple, kwargs: dict) -> dict:
    names = {"max": _MAX_ARGS, "avg": _AVG_ARGS, "unpool": _UNPOOL_ARGS}.get(kind)
    if names is None:
        return {"kind": kind}
    bound = dict(zip(names, args[1:]))
    bound.update({k: v for k, v in kwargs.items() if k != "input"})
    if kind == "unpool":
        return {
            "kind": kind,
            "kernel_size": _tuple(bound.get("kernel_size"), dims),
            "stride": _tuple(bound.get("stride") or bound.get("kernel_size"), dims),
            "padding": _tuple(bound.get("padding", 0), dims),
        }
    stride = bound.get("stride")
    out = {
        "kind": kind,
        "kernel_size": _tuple(bound["kernel_size"], dims),
        "stride": _tuple(stride if stride not in (None, [], ()) else bound["kernel_size"], dims),
        "padding": _tuple(bound.get("padding", 0), dims),
        "ceil_mode": bool(bound.get("ceil_mode", False)),
    }
    if kind == "max":
        out["dilation"] = _tuple(bound.get("dilation", 1), dims)
        out["return_indices"] = label.endswith("_with_indices") or bool(bound.get("return_indices", False))
    else:
        out["dilation"] = (1,) * dims
        out["count_include_pad"] = bool(bound.get("count_include_pad", True))
        out["divisor_override"] = bound.get("divisor_override")
    return out


def _module_dims(m: nn.Module) -> int:
    base = next(c for c in type(m).__mro__ if c in POOL_MODULES + ADAPTIVE_MODULES + UNPOOL_MODULES)
    return int(base.__name__[-2])


def _shape(t: Any) -> tuple | None:
    if isinstance(t, Tensor):
        return tuple(t.shape)
    if isinstance(t, (tuple, list)) and t and isinstance(t[0], Tensor):
        return tuple(t[0].shape)
    return None


class _Recorder(TorchFunctionMode):
    """Records pooling calls: module calls through hooks, functional calls through this mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
        self.stack: list[nn.Module] = [model]
        self.sites: list[Site] = []
        self.counts: dict[tuple, int] = {}
        self.module_calls: dict[int, int] = {}  # id(pool module) -> calls seen in this pass
        self.indices: dict[int, tuple[Tensor, Site]] = {}  # id(indices) -> (tensor, producing site)
        self.handles: list = []
        # modules whose own hooks (weight_norm's, say) make their forward more than their class's
        self.hooked = {id(m) for m in model.modules() if m._forward_pre_hooks or m._forward_hooks}
        for m in model.modules():
            self.handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post, with_kwargs=True, always_call=True))

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    # -- modules
    def _caller(self) -> str:
        return self.names.get(id(self.stack[-1]), "")

    def _pre(self, m: nn.Module, args: tuple, kwargs: dict):
        if isinstance(m, POOL_MODULES + ADAPTIVE_MODULES + UNPOOL_MODULES):
            dims = _module_dims(m)
            site = self._module_site(m, args, kwargs, dims=dims, **_module_site_fields(m, dims))
            if site.kind == "unpool":
                self._pair(site, args[1] if len(args) > 1 else kwargs.get("indices"))
        elif isinstance(m, CONV_MODULES + CONVT_MODULES) and any(v != 1 for v in m.stride):
            self._module_site(m, args, kwargs, **_conv_site_fields(m, id(m) in self.hooked))
        self.stack.append(m)

    def _module_site(self, m: nn.Module, args: tuple, kwargs: dict, **fields) -> Site:
        """Record one call of module ``m`` (its output shape is added by the forward hook)."""
        name = self.names.get(id(m), "")
        key = ("module", self._caller(), name)
        index = self.counts.get(key, 0)
        self.counts[key] = index + 1
        self.module_calls[id(m)] = self.module_calls.get(id(m), 0) + 1
        site = Site(
            name=name,
            op=type(m).__name__,
            input_shape=_shape(args[0] if args else kwargs.get("input")),
            caller=self._caller(),
            module=name,
            call_index=index,
            **fields,
        )
        self.sites.append(site)
        m._liftswap_site = site
        return site

    def _post(self, m: nn.Module, args: tuple, kwargs: dict, out: Any):
        self.stack.pop()
        site = m.__dict__.pop("_liftswap_site", None)
        if site is not None:
            site.output_shape = _shape(out)
            if site.return_indices and isinstance(out, tuple) and len(out) == 2:
                self.indices[id(out[1])] = (out[1], site)

    # -- functions
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        family = _function_family(func)
        top = self.stack[-1]
        # calls made by a pool module's own forward (or by liftswap's layers) belong to that module
        inside_pool = isinstance(top, POOL_MODULES + ADAPTIVE_MODULES + UNPOOL_MODULES) or getattr(top, "_liftswap_layer", False)
        if family is None or inside_pool:
            if not inside_pool:
                self._note_indices_use(args, kwargs)
            return func(*args, **kwargs)
        kind, label, dims = family
        caller = self._caller()
        fname = label.split(".", 1)[1]
        key = ("function", caller, fname)
        index = self.counts.get(key, 0)
        self.counts[key] = index + 1
        site = Site(
            name=f"{caller}.{fname}_{index}" if caller else f"{fname}_{index}",
            op=label,
            dims=dims,
            input_shape=_shape(args[0] if args else kwargs.get("input")),
            caller=caller,
            call_index=index,
            rewrite=True,
            **_function_site_fields(kind, label, dims, args, kwargs),
        )
        if kind == "unpool":
            self._pair(site, args[1] if len(args) > 1 else kwargs.get("indices"))
        out = func(*args, **kwargs)
        site.output_shape = _shape(out)
        if site.return_indices and isinstance(out, tuple):
            self.indices[id(out[1])] = (out[1], site)
        self.sites.append(site)
        return out

    def _note_indices_use(self, args: tuple, kwargs: dict) -> None:
        # Indices consumed by anything other than max_unpool make the pool unpairable.
        for a in list(args) + list(kwargs.values()):
            hit = self.indices.get(id(a)) if isinstance(a, Tensor) else None
            if hit is not None and hit[0] is a:
                hit[1].indices_used = True

    def _pair(self, unpool: Site, indices: Any) -> None:
        hit = self.indices.get(id(indices)) if isinstance(indices, Tensor) else None
        if hit is not None and hit[0] is indices:
            pool = hit[1]
            if getattr(pool, "_partner", None) is not None:
                pool.indices_used = True  # one pool feeding two unpools: not a pair
            pool._partner, unpool._partner = unpool, pool


@contextlib.contextmanager
def _preserved_state(model: nn.Module):
    """Run the model without leaving a trace: buffers (BatchNorm statistics), RNG and mode restored."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    modes = {m: m.training for m in model.modules()}
    rng = torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(rng)
        for m, mode in modes.items():
            m.training = mode
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in buffers:
                    v.copy_(buffers[k])


def _record(model: nn.Module, example_inputs: tuple, training: bool) -> list[Site]:
    rec = _Recorder(model)
    try:
        model.train(training)
        with torch.no_grad(), rec:
            model(*example_inputs)
    finally:
        rec.close()
    for s in rec.sites:
        if s.module is not None:
            calls = rec.module_calls.get(id(model.get_submodule(s.module)), 1)
            if calls > 1:
                s.rewrite = True
    return rec.sites


def discover(model: nn.Module, example_inputs: tuple) -> tuple[list[Site], list[str]]:
    """All pooling sites of ``model`` on ``example_inputs``, in call order (eval pass first).

    Returns the sites and notes about the passes (a train-mode pass that failed, say).
    A module called several times gets one site per call, named ``<caller>.<attr>_<i>``.
    """
    notes: list[str] = []
    with _preserved_state(model):
        try:
            sites = _record(model, example_inputs, training=False)
        except LiftswapError:
            raise
        except Exception as e:  # noqa: BLE001 - the model itself rejects the inputs
            shapes = ", ".join("x".join(map(str, t.shape)) for t in example_inputs if isinstance(t, Tensor))
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise LiftswapError(
                f"the model cannot run on example inputs of shape {shapes} ({type(e).__name__}: {first}); "
                "give inputs it accepts (example_inputs=, or --input-size C H W)"
            ) from e
        try:
            train_sites = _record(model, example_inputs, training=True)
        except Exception as e:  # noqa: BLE001 - a model may need targets in train mode
            notes.append(f"train-mode pass failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); train-only pools are not seen")
            train_sites = []
    sites = _name_sites(sites)
    seen = {s.name for s in sites}
    for s in _name_sites(train_sites):
        if s.name not in seen:
            s.train_only = True
            sites.append(s)
            seen.add(s.name)
    return sites, notes


def _name_sites(sites: list[Site]) -> list[Site]:
    """Name each call of a module called several times after the new layer it gets in its caller,
    then record pairs by the final names."""
    for s in sites:
        if s.module is not None and s.rewrite:
            leaf = s.module[len(s.caller) + 1 :] if s.caller and s.module.startswith(s.caller + ".") else s.module
            new = f"{leaf.replace('.', '_')}_{s.call_index}"
            s.name = f"{s.caller}.{new}" if s.caller else new
    for s in sites:
        partner = s.__dict__.pop("_partner", None)
        s.pair = partner.name if partner is not None else None
    return sites
