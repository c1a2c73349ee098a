"""The search space: recipe key paths checked against the recipe before any trial, and sampled per trial.

Only `model.*` and `train.*` fields can be searched (and, for a fine-tune, how it adapts the base:
`finetune.method`, `lora_rank`, `lora_alpha`, `freeze_layers`): every trial shares the run's data and
tokenizer, so a field that would change them (data, tokenizer, run.seed) cannot differ between trials.
"""

from __future__ import annotations

import itertools
import math
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llmtui.config.recipe import Recipe, SpaceParam
from llmtui.errors import RecipeError

SEARCHABLE = ("model", "train")
# A fine-tune keeps its base's architecture; what it may vary is how the base is adapted.
SEARCHABLE_FINETUNE = ("method", "lora_rank", "lora_alpha", "freeze_layers")
MAX_GRID = 100_000


@dataclass(frozen=True)
class Param:
    """One searched field: `kind` is "int", "float" or "choice"."""

    path: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def grid_values(self) -> list:
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low or 0), int(self.high or 0) + 1, int(self.step or 1)))
        low, high, step = self.low, self.high, self.step
        assert low is not None and high is not None and step is not None  # a float grid has all three (read_space)
        count = int(math.floor((high - low) / step + 1e-9)) + 1
        return [round(low + i * step, 12) for i in range(count)]

    def suggest(self, trial, grid: bool) -> Any:
        if grid:
            return trial.suggest_categorical(self.path, self.grid_values())
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)


def search_space(recipe: Recipe, where: str = "recipe") -> list[Param]:
    """The recipe's `[tune.space]` as checked parameters; any problem is one `RecipeError` naming the key."""
    tune = recipe.tune
    if not tune.space:
        raise RecipeError(
            f"{where}: tune.space is empty; nothing to search",
            hint='add a table per searched field, e.g. [tune.space."train.lr"] with low, high and log',
        )
    params = [_param(recipe, path, spec, where) for path, spec in tune.space.items()]
    if tune.method == "grid":
        for param in params:
            if param.kind == "float" and param.step is None:
                raise RecipeError(
                    f"{where}: tune.space.{param.path}: a grid needs a step (or choices) for a float range",
                    hint="add step = ..., or give choices = [...]",
                )
        size = grid_size(params)
        if size > tune.trials:
            raise RecipeError(
                f"{where}: the grid has {size} points but tune.trials is {tune.trials}",
                hint=f"set tune.trials = {size}, or search fewer values",
            )
    return params


def grid_size(params: list[Param]) -> int:
    size = 1
    for param in params:
        size *= len(param.grid_values())
        if size > MAX_GRID:
            return size
    return size


def grid_points(params: list[Param]) -> list[dict[str, Any]]:
    """Every point of the grid, as {key path: value}."""
    names = [p.path for p in params]
    return [dict(zip(names, values)) for values in itertools.product(*(p.grid_values() for p in params))]


def apply_values(recipe: Recipe, values: dict[str, Any], where: str = "trial") -> Recipe:
    """A copy of `recipe` with the key paths in `values` set (validated like a recipe file)."""
    from llmtui.config.loader import recipe_from_dict, recipe_to_dict

    data = recipe_to_dict(recipe)
    for path, value in values.items():
        section, key = path.split(".")
        data[section][key] = value
    return recipe_from_dict(data, where=where)


def _param(recipe: Recipe, path: str, spec: SpaceParam, where: str) -> Param:
    label = f"{where}: tune.space.{path}"
    parts = path.split(".")
    if len(parts) != 2 or parts[0] not in Recipe.model_fields:
        raise RecipeError(f"{label}: unknown key path; use section.key, e.g. train.lr or model.layers")
    section_name, key = parts
    finetune = bool(recipe.finetune.base)
    if finetune and section_name == "model":
        raise RecipeError(
            f"{label}: a fine-tune keeps its base run's architecture",
            hint=f"search train.* or finetune.{', finetune.'.join(SEARCHABLE_FINETUNE)}",
        )
    if not (section_name in SEARCHABLE or (finetune and section_name == "finetune" and key in SEARCHABLE_FINETUNE)):
        also = f", or finetune.{', finetune.'.join(SEARCHABLE_FINETUNE)}" if finetune else ""
        raise RecipeError(
            f"{label}: only model.* and train.* fields{also} can be searched "
            f"(every trial shares the run's data and tokenizer)"
        )
    section = getattr(recipe, section_name)
    fields = type(section).model_fields
    if key not in fields:
        import difflib

        close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
        hint = f"did you mean {section_name}.{close[0]}?" if close else f"known keys: {', '.join(fields)}"
        raise RecipeError(f"{label}: unknown key path: {section_name} has no field {key!r}", hint=hint)
    annotation = fields[key].annotation
    if spec.choices is not None:
        for value in spec.choices:
            _check_value(section, key, value, label)
        return Param(path, "choice", choices=tuple(spec.choices))
    assert spec.low is not None and spec.high is not None  # a range (the recipe asks for low and high without choices)
    if annotation is int:
        for bound in (spec.low, spec.high, spec.step):
            if bound is not None and float(bound) != int(bound):
                raise RecipeError(f"{label}: {path} is a whole number; low, high and step must be whole numbers")
        param = Param(path, "int", int(spec.low), int(spec.high), spec.log, int(spec.step) if spec.step else None)
    elif annotation is float:
        param = Param(path, "float", float(spec.low), float(spec.high), spec.log, spec.step)
    else:
        allowed = typing.get_args(annotation)
        hint = f"give choices = {list(allowed)!r}" if allowed else "give choices = [...]"
        raise RecipeError(f"{label}: {path} is not a number; search it with choices, not a range", hint=hint)
    for bound in (param.low, param.high):
        _check_value(section, key, bound, label)
    return param


def _check_value(section, key: str, value: Any, label: str) -> None:
    """Does the field accept `value` (given the rest of its section as the recipe has it)?"""
    from llmtui.config.loader import _describe_one

    try:
        type(section).model_validate({**section.model_dump(mode="json"), key: value})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RecipeError(
            f"{label}: the value {value!r} is rejected: {_describe_one(err, [str(p) for p in err['loc']])}"
        ) from None
