"""Recipes: what the surgery does, as plain YAML validated against a schema (SPEC 6).

``targets`` names what is converted (SPEC 6.1): ``[pools]`` (the default), ``[pools, convs]`` or
``[convs]``; ``convs`` adds stride-2 convolutions and transposed convolutions.

Precedence: the recipe's ``mode`` and ``layer`` are defaults for every site; ``rules`` are applied
in order and a later matching rule overrides an earlier one, key by key (a rule's ``layer`` keys
replace only the keys it names). A rule whose ``match`` names no site is an error.

Example:
    >>> r = load_recipe({"mode": "paper", "rules": [{"match": "layer4.*", "action": "skip"}]})
    >>> r.mode, r.rules[0].action
    ('paper', 'skip')
    >>> load_recipe({"layer": {"kernal_size": 5}})
    Traceback (most recent call last):
    ...
    liftswap.recipe.RecipeError: recipe: unknown key 'layer.kernal_size'
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import LiftswapError, short_repr
from .layers.lift_pool import INITS
from .limits import MAX_KERNEL_SIZE, check_data_size
from .ops.output_modes import OUTPUTS

__all__ = ["Recipe", "Rule", "LayerConfig", "RecipeError", "load_recipe", "recipe_path", "RECIPES_DIR"]

# Shipped recipes: the repository's recipes/ folder, installed as liftswap/recipes.
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


class RecipeError(LiftswapError):
    """A recipe that cannot be used; the message names the key, rule or file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LayerConfig(_Strict):
    """Settings of the new LiftDownPool layers. ``None`` for init/output: chosen by the mode."""

    kernel_size: int = 3
    init: Optional[Literal[INITS]] = None  # the layers' registries: one list of modes
    output: Optional[Literal[OUTPUTS]] = None
    lambda_u: float = 0.01
    lambda_p: float = 0.1

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v is not None and (v < 1 or v % 2 == 0 or v > MAX_KERNEL_SIZE):
            raise ValueError(f"must be an odd integer from 1 to {MAX_KERNEL_SIZE}")
        return v

    @field_validator("lambda_u", "lambda_p", mode="before")
    @classmethod
    def _number(cls, v: Any) -> float | None:
        if v is None:
            return v  # an override that leaves the key alone; LayerConfig's type check refuses it
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
            raise ValueError("must be a finite number >= 0")
        return float(v)


class LayerOverride(LayerConfig):
    """A rule's layer settings: only the keys given override."""

    kernel_size: Optional[int] = None  # type: ignore[assignment]
    lambda_u: Optional[float] = None  # type: ignore[assignment]
    lambda_p: Optional[float] = None  # type: ignore[assignment]


class Rule(_Strict):
    """Applies to every site whose name matches ``match`` (a glob, or a regex after ``re:``)."""

    match: str
    action: Optional[Literal["replace", "skip"]] = None
    layer: Optional[LayerOverride] = None

    @field_validator("match")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if len(v) > 500:
            raise ValueError(f"a pattern of {len(v)} characters is too long (at most 500)")
        if v.startswith("re:"):
            try:
                re.compile(v[3:])
            except (re.error, RecursionError, OverflowError) as e:
                raise ValueError(f"invalid regular expression {short_repr(v[3:])}: {e}") from None
            if _nested_repeat(v[3:]):
                raise ValueError(
                    f"regular expression {short_repr(v[3:])} repeats a repeated group (like (a+)+), which can take "
                    "exponential time; write it without the nested repeat"
                )
        return v

    def matches(self, name: str) -> bool:
        if self.match.startswith("re:"):
            return re.fullmatch(self.match[3:], name) is not None
        return fnmatch.fnmatchcase(name, self.match)


class Recipe(_Strict):
    """A whole recipe. ``Recipe()`` is the default: preserve mode, kernel 3, no rules."""

    version: Literal[1] = 1
    mode: Literal["preserve", "paper"] = "preserve"
    targets: list[Literal["pools", "convs"]] = Field(default_factory=lambda: ["pools"])
    layer: LayerConfig = Field(default_factory=LayerConfig)
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list) -> list:
        if not v:
            raise ValueError("name at least one of pools, convs")
        if len(set(v)) != len(v):
            raise ValueError("names a target twice")
        return v

    def to_dict(self) -> dict:
        out = self.model_dump(mode="json")
        # a rule lists only what it sets
        out["rules"] = [r.model_dump(mode="json", exclude_none=True) for r in self.rules]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _nested_repeat(pattern: str) -> bool:
    """Whether a repeat (``*``, ``+``, ``{m,n}`` with n > 1) contains another: the shape of catastrophic backtracking."""
    try:
        from re import _parser as sre_parse  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse  # type: ignore[no-redef]

    repeats = (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None))

    def walk(items, inside: bool) -> bool:
        for op, arg in items:
            if op in repeats and op is not None:
                lo, hi, body = arg
                many = hi is sre_parse.MAXREPEAT or hi > 1
                if many and inside:
                    return True
                if walk(body, inside or many):
                    return True
            elif op is sre_parse.SUBPATTERN:
                if walk(arg[-1], inside):
                    return True
            elif op is sre_parse.BRANCH:
                if any(walk(b, inside) for b in arg[1]):
                    return True
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                if walk(arg[1], inside):
                    return True
            elif op is getattr(sre_parse, "ATOMIC_GROUP", None) and op is not None:
                if walk(arg, inside):
                    return True
        return False

    return walk(sre_parse.parse(pattern), False)


def _describe(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'"
    if e["type"] == "missing":
        return f"{source}: missing key '{loc}'"
    msg = e["msg"].removeprefix("Value error, ")
    return f"{source}: bad value for '{loc}': {msg} (got {short_repr(e.get('input'))})"


def recipe_path(name: str) -> Path:
    """A shipped recipe by name (``paper``, ``resnet50``...), or the path itself."""
    shipped = RECIPES_DIR / f"{name}.yaml"
    return shipped if not os.path.exists(name) and shipped.exists() else Path(name)


def load_recipe(recipe: Union[None, str, os.PathLike, dict, Recipe]) -> Recipe:
    """A :class:`Recipe` from None (default), a YAML path or shipped name, a dict, or a Recipe."""
    if recipe is None:
        return Recipe()
    if isinstance(recipe, Recipe):
        return recipe
    source = "recipe"
    if isinstance(recipe, (str, os.PathLike)):
        path = recipe_path(str(recipe))
        source = f"recipe {path}"
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        recipe = _parse_yaml(path, source)
    try:
        check_data_size(recipe, source)
    except LiftswapError as e:
        raise RecipeError(str(e)) from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{source}: expected a mapping at the top, got {type(recipe).__name__}")
    try:
        return Recipe.model_validate(recipe)
    except ValidationError as e:
        raise RecipeError(_describe(e, source)) from None


def _parse_yaml(path: Path, source: str) -> Any:
    """The YAML document at ``path``: UTF-8 text of at most 1 MiB, plain data only (safe_load)."""
    with open(path, "rb") as f:
        data = f.read(2**20 + 1)
    if len(data) > 2**20:
        raise RecipeError(f"{source}: over 1 MiB; a recipe is a short YAML file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{source}: not UTF-8 text (byte {e.start}); save the recipe as UTF-8") from None
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise RecipeError(f"{source}: nested too deeply") from None
    except (ValueError, OverflowError) as e:  # e.g. an integer of thousands of digits
        raise RecipeError(f"{source}: unreadable value ({str(e).splitlines()[0][:120]})") from None
    return {} if recipe is None else recipe
