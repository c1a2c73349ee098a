"""Loading, overriding, validating and saving recipes.

Precedence: `--set` overrides > recipe file > defaults. Every failure becomes one `RecipeError` that names
the file, the key path, what was given and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
import tomllib
from pydantic import BaseModel, ValidationError

from llmtui.config.recipe import Recipe
from llmtui.errors import RecipeError


def load_recipe(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file (or start from defaults when `path` is None) and apply `section.key=value` overrides.

    A recipe file that names no run is named after the file, so two recipes never share a run folder.
    """
    where = "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        where = str(path)
        data = _read_toml(path)
    given: dict[tuple[str, ...], str] = {}  # key path → the --set that gave it (errors name it, not the file)
    for override in overrides:
        given[tuple(_apply_override(data, override))] = f"--set {override}"
    run = data.get("run", {})
    if path is not None and isinstance(run, dict) and "name" not in run:
        data["run"] = {**run, "name": run_name_from_file(path)}
    return recipe_from_dict(data, where=where, overrides=given)


def run_name_from_file(path: Path) -> str:
    """The run name a recipe file without `[run] name` gets: its stem made a valid name (`my text.toml` ->
    `my-text`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).lstrip("._-")
    return name or "untitled"


def names_run_from_file(path: str | Path) -> bool:
    """Whether the recipe file leaves the run name to its file name (for saying so to the person)."""
    try:
        run = _read_toml(Path(path)).get("run", {})
    except RecipeError:
        return False
    return isinstance(run, dict) and "name" not in run


def recipe_from_dict(
    data: dict[str, Any], where: str = "recipe", overrides: dict[tuple[str, ...], str] | None = None
) -> Recipe:
    """Validate a plain dictionary (as parsed from TOML) into a `Recipe`.

    A RecipeError carries every problem in `errors` ({key path: message}); its message lists the first
    `SHOWN_PROBLEMS` of them, each after the file or `--set` it came from, and counts the rest.
    """
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        errors, sources = _validation_errors(exc, where, overrides or {})
        raise RecipeError(_error_lines(errors, sources), errors=errors) from None
    except (TypeError, ValueError, RecursionError) as exc:  # pydantic may leak these for odd inputs
        raise RecipeError(f"{where}: invalid recipe: {exc}", errors={"": f"invalid recipe: {exc}"}) from None


def check_field(section: type[BaseModel], name: str, value: Any) -> Any:
    """Check one value by the rules of a recipe field (the command-line options that stand for recipe fields
    use this, so an option and its field cannot disagree); RecipeError saying what is wrong otherwise."""
    try:
        setattr(section(), name, value)  # sections validate on assignment: the field's own rules, nothing else
    except ValidationError as exc:
        problem = _describe_one(exc.errors()[0], [name])
        raise RecipeError(problem, errors={name: problem}) from None
    return value


def parse_toml_value(text: str) -> Any:
    """`text` read as a TOML value (`3`, `1e-3`, `true`, `["a", "b"]`); text that is not TOML stays a string, so
    bare words (`adamw`, `runs/x`) need no quotes and the recipe's rules say what is wrong with anything else.

    The one reader of typed-in values: `--set` overrides and the wizard's list fields."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RecipeError(
            f"recipe not found: {path}", hint="give the path of a .toml recipe, e.g. recipes/quickstart.toml"
        )
    if path.is_dir():
        raise RecipeError(f"recipe path is a folder, not a file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{path}: not a UTF-8 text file (byte {exc.start} is {raw[exc.start]:#04x})",
            hint="a recipe is a TOML text file",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise RecipeError(f"{path}: malformed TOML: {exc}") from None


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split `section.key=value` into its key path and a TOML-typed value (bare words become strings)."""
    key, sep, value_text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {override!r}: expected section.key=value, e.g. --set train.steps=100")
    parts = key.split(".")
    if any(not p.strip() for p in parts) or len(parts) < 2:
        raise RecipeError(f"--set {override!r}: expected section.key=value, e.g. --set train.steps=100")
    return [p.strip() for p in parts], parse_toml_value(value_text)


def _apply_override(data: dict[str, Any], override: str) -> list[str]:
    parts, value = parse_override(override)
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"--set {override!r}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value
    return parts


SHOWN_PROBLEMS = 6  # lines of a recipe error a terminal shows; RecipeError.errors keeps them all


def _validation_errors(
    exc: ValidationError, where: str, overrides: dict[tuple[str, ...], str]
) -> tuple[dict[str, str], dict[str, str]]:
    """({key path: what is wrong}, {key path: the file or --set that gave it}); "" is the recipe as a whole.

    Problems pydantic reports twice for one key (one per member of a union) are joined, not dropped."""
    errors: dict[str, str] = {}
    sources: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        text = _describe_one(err, loc)
        if key not in errors:
            errors[key] = text
            sources[key] = next((given for path, given in overrides.items() if tuple(loc[: len(path)]) == path), where)
        elif text not in errors[key]:
            errors[key] += f"; {text}"
    return errors, sources


def _error_lines(errors: dict[str, str], sources: dict[str, str]) -> str:
    """One line a problem, `source: key: what is wrong`, the first SHOWN_PROBLEMS of them and a count of the rest."""
    lines = [f"{sources[key]}: {key or '(top level)'}: {text}" for key, text in errors.items()]
    message = "\n".join(lines[:SHOWN_PROBLEMS])
    if len(lines) > SHOWN_PROBLEMS:
        message += f"\n... and {len(lines) - SHOWN_PROBLEMS} more problems"
    return message


def _describe_one(err: Mapping[str, Any], loc: list[str]) -> str:
    kind = err["type"]
    given = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        suggestion = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        hint = f"; did you mean '{suggestion[0]}'?" if suggestion else ""
        return f"unknown key{hint} (known keys here: {', '.join(known)})"
    if kind == "literal_error":
        return f"{_show(given)} is not allowed; choose one of {ctx.get('expected', '')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "")
        return f"{_show(given)} is out of range; it must be {op} {bound}"
    if kind in ("too_short", "string_too_short"):
        return f"{_show(given)} is too short; {err['msg'].lower()}"
    if kind == "string_pattern_mismatch":
        return f"{_show(given)} is not allowed; use letters, digits, '.', '_' and '-' (no slashes or spaces)"
    if kind == "finite_number":
        return f"expected a finite number, got {_show(given)}"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "model_type" or kind == "dict_type":
        return f"expected a table (section), got {_show(given)}"
    expected = {
        "int_type": "a whole number",
        "int_parsing": "a whole number",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
    }.get(kind)
    if expected:
        return f"expected {expected}, got {_show(given)}"
    return f"{err['msg']} (got {_show(given)})"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _known_keys(loc: list[str]) -> list[str]:
    """Field names of the section at `loc` (a key path of the recipe)."""
    model: type[BaseModel] = Recipe
    for part in loc:
        if part.isdigit():  # an item of a list of tables: already stepped into by the list's field
            continue
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *typing.get_args(annotation)]  # a section, or list[section]
        sections = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not sections:
            break
        model = sections[0]
    return list(model.model_fields)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")


def recipe_to_toml(recipe: Recipe) -> str:
    return tomli_w.dumps(recipe_to_dict(recipe))


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(recipe_to_toml(recipe), encoding="utf-8")


def recipe_schema() -> dict[str, Any]:
    """JSON Schema of the recipe, for editors (e.g. Taplo / Even Better TOML)."""
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmtui recipe"
    return schema
