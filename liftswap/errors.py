"""The error users see: one line naming the problem and what to do."""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["LiftswapError", "short_repr"]


class LiftswapError(ValueError):
    """Bad input to liftswap (unknown model, missing or corrupt file, wrong checkpoint, bad recipe).

    The command line prints its message on one line and exits with status 2.
    """


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a 5000-digit int raises (and is slow before that)
            return f"<an integer of about {int(x.bit_length() * 0.30103)} digits>"
        return super().repr_int(x, level)


_repr = _Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict, _repr.maxset = 3, 4, 4, 4, 4
_repr.maxstring, _repr.maxother, _repr.maxlong = 60, 60, 40


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` bounded in work and length: a message never builds the repr of a huge value.

    Example:
        >>> bomb = ["lol"] * 10
        >>> for _ in range(8): bomb = [bomb] * 10  # 10**9 leaves, a few hundred bytes
        >>> short_repr(bomb)
        '[[[[...], [...], [...], [...], ...], [[...], [...], [...], [...], ...], [[......'
        >>> short_repr(10**5000)
        '<an integer of about 5000 digits>'
    """
    text = _repr.repr(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
