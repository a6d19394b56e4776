"""The modules whose forward code makes a call that must be rewritten (functional pools, a module
called several times): traced with torch.fx, and the call's node found in the trace. The plan
uses this to decide which rewrites are possible; apply uses it to make them."""

from __future__ import annotations

from torch import fx, nn

from .sites import Site, _function_family

__all__ = ["trace_caller", "match_nodes", "unreachable"]


class _CallerTracer(fx.Tracer):
    """Traces one module's own code: every submodule call is a single node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


def trace_caller(caller: nn.Module) -> dict[bool, fx.GraphModule]:
    """The caller's forward traced in train and in eval mode: {training: GraphModule}."""
    modes = {m: m.training for m in caller.modules()}
    out = {}
    try:
        for training in (True, False):
            caller.train(training)
            graph = _CallerTracer().trace(caller)
            out[training] = fx.GraphModule(caller, graph, class_name=type(caller).__name__)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return out


def sub(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def match_nodes(gm: fx.GraphModule, sites: list[Site], model: nn.Module) -> dict[str, fx.Node]:
    """Site name -> its node in the caller's graph (the i-th call of that function or module)."""
    by_key: dict[tuple, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_function":
            fam = _function_family(node.target)
            if fam is not None:
                by_key.setdefault(("f", fam[1].split(".", 1)[1]), []).append(node)
        elif node.op == "call_module":
            by_key.setdefault(("m", id(gm.get_submodule(node.target))), []).append(node)
    out = {}
    for s in sites:
        if s.module is None:
            key = ("f", s.op.split(".", 1)[1])
        else:
            key = ("m", id(model.get_submodule(s.module)))
        nodes = by_key.get(key, [])
        if s.call_index < len(nodes):
            out[s.name] = nodes[s.call_index]
    return out


def unreachable(model: nn.Module, sites: list[Site]) -> dict[str, str]:
    """Site name -> why its rewrite cannot be made, for the replaced ``sites`` that need one."""
    groups: dict[str, list[Site]] = {}
    for s in sites:
        if s.action == "replace" and s.rewrite:
            groups.setdefault(s.caller, []).append(s)
    failed: dict[str, str] = {}
    for caller_path, group in groups.items():
        try:
            gms = trace_caller(sub(model, caller_path))
        except Exception as e:  # noqa: BLE001 - any tracing failure means: not reachable
            msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            why = f"not reachable: the forward of {caller_path or 'the model'!r} cannot be traced by torch.fx ({type(e).__name__}: {msg})"
            failed.update({s.name: why for s in group})
            continue
        found = set()
        for gm in gms.values():
            found |= set(match_nodes(gm, group, model))
        for s in group:
            if s.name not in found:
                failed[s.name] = f"not reachable: the call is not in the traced forward of {caller_path or 'the model'!r}"
    return failed
