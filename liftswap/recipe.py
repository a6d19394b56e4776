"""Recipes: what the surgery does, as plain YAML validated against a schema (SPEC 6).

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

from .errors import LiftswapError

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
    init: Optional[Literal["haar", "lazy", "paper"]] = None
    output: Optional[Literal["LL", "sum", "gated"]] = None
    lambda_u: float = 0.01
    lambda_p: float = 0.1

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v < 1 or v % 2 == 0:
            raise ValueError(f"must be an odd positive integer, got {v}")
        return v

    @field_validator("lambda_u", "lambda_p", mode="before")
    @classmethod
    def _number(cls, v: Any) -> float | None:
        if v is None:
            return v  # an override that leaves the key alone; LayerConfig's type check refuses it
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"must be a number >= 0, got {v!r}")
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
        if v.startswith("re:"):
            try:
                re.compile(v[3:])
            except re.error as e:
                raise ValueError(f"invalid regular expression {v[3:]!r}: {e}") from None
        return v

    def matches(self, name: str) -> bool:
        if self.match.startswith("re:"):
            return re.fullmatch(self.match[3:], name) is not None
        return fnmatch.fnmatchcase(name, self.match)


class Recipe(_Strict):
    """A whole recipe. ``Recipe()`` is the default: preserve mode, kernel 3, no rules."""

    version: Literal[1] = 1
    mode: Literal["preserve", "paper"] = "preserve"
    layer: LayerConfig = Field(default_factory=LayerConfig)
    rules: list[Rule] = Field(default_factory=list)

    def to_dict(self) -> dict:
        out = self.model_dump(mode="json")
        # a rule lists only what it sets
        out["rules"] = [r.model_dump(mode="json", exclude_none=True) for r in self.rules]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _describe(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'"
    if e["type"] == "missing":
        return f"{source}: missing key '{loc}'"
    msg = e["msg"].removeprefix("Value error, ")
    return f"{source}: bad value for '{loc}': {msg} (got {e.get('input')!r})"


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
        try:
            recipe = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise RecipeError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
        recipe = {} if recipe is None else recipe
    if not isinstance(recipe, dict):
        raise RecipeError(f"{source}: expected a mapping at the top, got {type(recipe).__name__}")
    try:
        return Recipe.model_validate(recipe)
    except ValidationError as e:
        raise RecipeError(_describe(e, source)) from None
