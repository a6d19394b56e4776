"""Bounds on what liftswap reads from files, recipes and the command line: the one home of them.

Each bound is far above anything a real model, recipe or file needs, and low enough that a
hostile or damaged input is refused in milliseconds instead of hanging or exhausting memory.
"""

from __future__ import annotations

from typing import Any

from .errors import LiftswapError

__all__ = ["MAX_NODES", "MAX_DEPTH", "MAX_KERNEL_SIZE", "MAX_INPUT_ELEMENTS", "MAX_PICKLE_BYTES", "MAX_ZIP_RATIO", "check_data_size"]

MAX_NODES = 1_000_000  # values in a recipe or a stored plan, with YAML aliases / pickle memo references expanded
MAX_DEPTH = 64  # nesting of lists and mappings in the same
MAX_KERNEL_SIZE = 63  # taps of P and U: a lift's filter is local (the paper uses 3)
MAX_INPUT_ELEMENTS = 2**28  # C * H * W of one example input (a 3 x 9000 x 9000 image)
MAX_PICKLE_BYTES = 256 * 2**20  # the pickle inside a torch file (weights live beside it, not in it)
MAX_ZIP_RATIO = 16  # declared unpacked bytes of a torch file per packed byte (torch.save stores, never deflates)


def check_data_size(value: Any, what: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Refuse ``value`` if, with shared references expanded, it holds over ``max_nodes`` values or nests too deep.

    Walks at most ``max_nodes`` values with an explicit stack (no recursion), so a billion-laughs
    structure of a few kilobytes is refused at once.

    Example:
        >>> a = ["lol"] * 10
        >>> for _ in range(8): a = [a] * 10
        >>> check_data_size({"mode": a}, "recipe")
        Traceback (most recent call last):
        ...
        liftswap.errors.LiftswapError: recipe expands to over 1000000 values (shared YAML anchors or pickle references); refused
    """
    count = 0
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise LiftswapError(f"{what} expands to over {max_nodes} values (shared YAML anchors or pickle references); refused")
        if isinstance(v, dict):
            children = [*v.keys(), *v.values()]
        elif isinstance(v, (list, tuple, set, frozenset)):
            children = v
        else:
            continue
        if depth >= max_depth:
            raise LiftswapError(f"{what} is nested over {max_depth} levels deep; refused")
        if len(children) > max_nodes:
            raise LiftswapError(f"{what} expands to over {max_nodes} values (shared YAML anchors or pickle references); refused")
        stack.extend((c, depth + 1) for c in children)
